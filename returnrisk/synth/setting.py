"""The setting every stage shares: the destination markets, their duty rules, the calendar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from returnrisk.contract import SCHEMAS
from returnrisk.duties import DutyRules, duties_in_force, duty_rules_of
from returnrisk.reference import load_countries, load_duty_rules
from returnrisk.synth.config import DAY, SynthConfig
from returnrisk.synth.static import (
    COD_COUNTRIES,
    COUNTRY_MIX,
    LISTING_EXTRA_LANGS,
    REGION_ZONE,
    ZONE_OVERRIDE,
)


@dataclass(frozen=True)
class Geography:
    """The destination countries, indexed like ``countries``; languages as bit masks."""

    countries: pd.DataFrame
    cc: np.ndarray  # country codes (object)
    dm: np.ndarray  # duty de-minimis, EUR
    default_inc: np.ndarray  # the countries' default incoterm (object; None: missing)
    regions: list[str]
    cty_region: np.ndarray
    cty_zone: np.ndarray
    cty_is_cod: np.ndarray
    langs: list[str]
    lang_bit: dict[str, np.uint64]
    cty_lang: np.ndarray  # uint64 bit mask of the languages spoken
    mix: np.ndarray  # share of customers per country

    @property
    def n_cty(self) -> int:
        return len(self.cc)


@dataclass(frozen=True)
class Calendar:
    """Time frame in epoch seconds and per-day volume, logistics peak and gift season."""

    t0: int  # first second of the world
    t_end: int  # export time: the end of the last day
    cutoff_day: int  # first day whose orders are new (to screen)
    vol: np.ndarray
    peak_day: np.ndarray
    gift_day: np.ndarray


@dataclass(frozen=True)
class Duties:
    """The world's duty rules: the contract ``duty_rules`` table it writes, and the same table
    indexed (``returnrisk.duties``) for the hidden duty cause, so features and truth agree."""

    table: pd.DataFrame
    rules: DutyRules


def duties_of(table: pd.DataFrame) -> Duties:
    """``Duties`` of a contract ``duty_rules`` table (contract columns and dtypes, sorted)."""
    schema = SCHEMAS["duty_rules"]
    out = table[list(schema.column_names)].astype({c.name: c.dtype for c in schema.columns})
    out = out.sort_values(["country_code", "valid_from"], kind="stable", ignore_index=True)
    return Duties(table=out, rules=duty_rules_of(out))


def make_duties(cfg: SynthConfig, geo: Geography, cal: Calendar) -> Duties:
    """The reference duty rules (``returnrisk.reference.load_duty_rules``, each with its
    source) of the world's countries whose validity overlaps the world's window; none without
    ``cfg.duty_changes``."""
    ref = load_duty_rules()
    if not cfg.duty_changes:
        ref = ref.iloc[:0]
    t0 = pd.Timestamp(cal.t0, unit="s", tz="UTC")
    t_end = pd.Timestamp(cal.t_end, unit="s", tz="UTC")
    live = (ref["valid_from"] < t_end) & (ref["valid_to"].isna() | (ref["valid_to"] > t0))
    return duties_of(ref.loc[live & ref["country_code"].isin(geo.cc)])


def in_force(
    geo: Geography, duties: Duties, dest: np.ndarray, t_sec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per order (destination index ``dest``, epoch seconds ``t_sec``): the de-minimis (EUR)
    and whether the default incoterm is DDU under the rule in force then
    (``returnrisk.duties.duties_in_force``, as the features read them)."""
    rules = duties.rules
    pos = np.array([rules.position.get(c, -1) for c in geo.cc], dtype=np.int64)  # 40 countries
    dm, inc = duties_in_force(
        rules,
        pos[dest],
        np.asarray(t_sec, dtype=np.int64) * 10**9,
        geo.dm[dest],
        geo.default_inc[dest],
    )
    return dm, inc == "DDU"


def make_geography() -> Geography:
    """The 40 destination markets of the reference data, with zones and the market mix."""
    countries = load_countries()
    cc = countries["country_code"].to_numpy(dtype=object)
    regions = sorted(countries["region"].unique())
    cty_zone = np.array(
        [
            ZONE_OVERRIDE.get(c, REGION_ZONE.get(r, 2))
            for c, r in zip(cc, countries["region"], strict=True)
        ]
    )
    langs = sorted({lg for s in countries["languages"] for lg in s.split(",")} | {"en"})
    langs = sorted(set(langs) | set(LISTING_EXTRA_LANGS))
    lang_bit = {lg: np.uint64(1) << np.uint64(i) for i, lg in enumerate(langs)}
    cty_lang = np.array(
        [
            np.bitwise_or.reduce([lang_bit[lg] for lg in s.split(",")])
            for s in countries["languages"]
        ],
        dtype=np.uint64,
    )
    mix = np.array([COUNTRY_MIX.get(c, 0.004) for c in cc])
    return Geography(
        countries=countries,
        cc=cc,
        dm=countries["duty_de_minimis"].to_numpy(dtype=np.float64),
        default_inc=countries["default_incoterm"]
        .astype(object)
        .where(countries["default_incoterm"].notna(), None)
        .to_numpy(dtype=object),
        regions=regions,
        cty_region=np.searchsorted(regions, countries["region"].to_numpy(dtype=object)),
        cty_zone=cty_zone,
        cty_is_cod=np.isin(cc, COD_COUNTRIES),
        langs=langs,
        lang_bit=lang_bit,
        cty_lang=cty_lang,
        mix=mix / mix.sum(),
    )


def _season(dates: pd.DatetimeIndex) -> np.ndarray:
    """Volume multiplier per day: January dip, summer lull, Nov-Dec peak, BF-CM spike."""
    month, dom = dates.month.to_numpy(), dates.day.to_numpy()
    season = np.ones(len(dates))
    season[month == 1] = 0.85
    season[(month == 7) | (month == 8)] = 0.92
    season[month == 11] = 1.35
    season[(month == 12) & (dom <= 20)] = 1.6
    season[(month == 12) & (dom > 20)] = 1.1
    # Black Friday .. Cyber Monday: the Friday after the fourth Thursday of November
    thursdays = (month == 11) & (dates.day_of_week == 3)
    fourth_thu = np.zeros(len(dates), dtype=bool)
    for year in np.unique(dates.year):  # at most a handful of years, not a loop over orders
        sel = np.flatnonzero(thursdays & (dates.year == year))
        if len(sel) >= 4:
            fourth_thu[sel[3]] = True
    for b in np.flatnonzero(fourth_thu):
        season[b + 1 : b + 5] = 2.6
    return season


def make_calendar(cfg: SynthConfig) -> Calendar:
    """Daily order-volume weight, logistics peak intensity (0..1) and gift season per day."""
    dates = pd.date_range(pd.Timestamp(cfg.start), periods=cfg.days, freq="D")
    k = np.arange(cfg.days)
    growth = np.exp(np.log(1.6) * k / 365.0)
    weekly = np.array([1.0, 1.02, 1.0, 0.98, 0.94, 0.86, 1.06])[dates.day_of_week]
    month, dom = dates.month.to_numpy(), dates.day.to_numpy()
    peak = np.zeros(cfg.days)
    peak[(month == 11) & (dom >= 15)] = 1.0
    peak[month == 12] = 1.0
    peak[(month == 11) & (dom < 15)] = 0.4
    peak[(month == 1) & (dom <= 10)] = 0.5
    gift = ((month == 11) & (dom >= 20)) | ((month == 12) & (dom <= 24))
    t0 = int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    return Calendar(
        t0=t0,
        t_end=t0 + cfg.days * DAY,
        cutoff_day=cfg.days - cfg.new_days,
        vol=growth * weekly * _season(dates),
        peak_day=peak,
        gift_day=gift.astype(np.float64),
    )
