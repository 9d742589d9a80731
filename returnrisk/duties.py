"""Duties in force at an order's time: the one authority on which ``duty_rules`` row applies.

``duty_rules_of`` indexes a contract ``duty_rules`` table per country; ``duties_in_force`` gives
each order's de-minimis and default incoterm at its time (the rule in force replaces the
country's values). The features (``returnrisk.features``: batch and online) and the synthetic
world's hidden duty cause (``returnrisk.synth``) both use these, so what the features see is
what the generator's truth used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from returnrisk.arrays import NAT, ts_int

_TS_MAX = np.iinfo(np.int64).max


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


@dataclass(frozen=True)
class DutyRules:
    """The ``duty_rules`` of each country that has some, sorted by ``valid_from``: per country
    (``position``: code -> index) the rules' start and end (int64 ns; an open end is the
    largest int64), de-minimis (NaN: the country's) and default incoterm (None: the
    country's)."""

    countries: pd.Series  # "str": the codes, in index order
    position: dict[str, int]
    start: tuple[np.ndarray, ...]
    end: tuple[np.ndarray, ...]
    de_minimis: tuple[np.ndarray, ...]
    incoterm: tuple[np.ndarray, ...]


def duty_rules_of(rules: pd.DataFrame) -> DutyRules:
    """``DutyRules`` from a contract ``duty_rules`` table (checked: no overlaps)."""
    rules = rules.sort_values(["country_code", "valid_from"], kind="stable")
    codes_ = rules["country_code"].astype("str")
    parts = [g for _, g in rules.groupby(codes_, sort=True)]  # a loop over countries
    names = [str(g["country_code"].iloc[0]) for g in parts]
    end = [ts_int(g["valid_to"]) for g in parts]
    return DutyRules(
        countries=pd.Series(names, dtype="str"),
        position={c: j for j, c in enumerate(names)},
        start=tuple(ts_int(g["valid_from"]) for g in parts),
        end=tuple(np.where(e == NAT, _TS_MAX, e) for e in end),
        de_minimis=tuple(_as_float(g["duty_de_minimis"]) for g in parts),
        incoterm=tuple(
            g["default_incoterm"]
            .astype(object)
            .where(g["default_incoterm"].notna(), None)
            .to_numpy(dtype=object)
            for g in parts
        ),
    )


def duties_in_force(
    rules: DutyRules,
    rule_country: np.ndarray,
    ts: np.ndarray,
    de_minimis: np.ndarray,
    incoterm: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The destination's de-minimis and default incoterm at each order's time: the rule in
    force then (``valid_from <= t < valid_to``) replaces the country's values (a missing value
    of the rule keeps the country's). ``rule_country``: each order's destination as an index of
    ``rules.countries`` (-1: none has rules); ``incoterm``: object array (None: missing)."""
    dm, inc = np.array(de_minimis, dtype=np.float64), np.array(incoterm, dtype=object)
    if not rules.position:  # no rules (the table is optional)
        return dm, inc
    for j in np.unique(rule_country[rule_country >= 0]):  # a loop over countries, not orders
        rows = np.flatnonzero(rule_country == j)
        t = ts[rows]
        k = np.searchsorted(rules.start[j], t, side="right") - 1  # the last rule begun by t
        live = (k >= 0) & (t != NAT)
        live[live] &= t[live] < rules.end[j][k[live]]
        rows, k = rows[live], k[live]
        value = rules.de_minimis[j][k]
        dm[rows[~np.isnan(value)]] = value[~np.isnan(value)]
        term = rules.incoterm[j][k]
        given = np.asarray([x is not None for x in term], dtype=bool)
        inc[rows[given]] = term[given]
    return dm, inc
