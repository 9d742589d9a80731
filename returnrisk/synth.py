"""A synthetic cross-border world: the built-in demo data and the test bed.

A seller ships from a hub outside all its destination markets (think Hong Kong) to 40
countries through several carrier services. Every cause of after-sales cases a cross-border
seller fights is simulated, and each one is observable only the way it is in real life:

* carrier x lane reliability (lost, damaged, late) -> through the history of shipments/cases;
* duties: DDU orders above the destination's de-minimis -> duty disputes and refused parcels;
* SKU quality / description mismatch (latent) -> partly visible as few images, no size chart,
  listings not in the buyer's language, and through the SKU's case history;
* size and fit for apparel and shoes, with bracketing (one product in 2+ sizes in one order);
* customers with a latent propensity to open cases (serial returners), only seen in history;
* price, discount, channel and payment effects; Zipf-like SKU popularity; repeat customers.

``truth`` holds, per order, the probability of at least one case within 90 days exactly as the
generator draws it (and the per-cause components), so models can be checked against the truth.
Everything is vectorised numpy with one seeded generator: same config, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from returnrisk.progress import QUIET, StepLog
from returnrisk.reference import load_countries

LABEL_WINDOW_DAYS = 90
NEW_TABLES = ("orders", "order_lines", "skus", "customers")
DAY = 86_400
CASE_CAUSES = (
    "return",
    "not_as_described",
    "damaged",
    "wrong_item",
    "not_received",
    "duty_dispute",
    "refund",
    "other",
)


@dataclass(frozen=True)
class SynthConfig:
    """What world to generate. ``n_orders`` counts history and new orders together."""

    n_orders: int = 20_000
    seed: int = 0
    start: date = date(2024, 1, 1)
    days: int = 540
    new_days: int = 1
    customers_per_order: float = 1.0
    serial_share: float = 0.08
    b2b_share: float = 0.05

    def __post_init__(self) -> None:
        if self.n_orders < 10:
            raise ValueError(f"n_orders must be >= 10, got {self.n_orders}")
        if self.days < 2:
            raise ValueError(f"days must be >= 2, got {self.days}")
        if not 0 <= self.new_days < self.days:
            raise ValueError(f"new_days must be in [0, days={self.days}), got {self.new_days}")
        if self.customers_per_order <= 0:
            raise ValueError("customers_per_order must be > 0")


@dataclass
class World:
    """The generated world: contract tables (history), truth, and new orders to screen."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    new: dict[str, pd.DataFrame] = field(default_factory=dict)
    config: SynthConfig | None = None


# ---------------------------------------------------------------------------------------------
# Static world: categories, carriers, channels, payments


@dataclass(frozen=True)
class _Category:
    name: str
    share: float  # of products
    price: float  # median list price, EUR
    weight: float  # median weight, g
    sizes: tuple[str, ...]
    ret: float  # base log-odds of a line being returned
    fragile: float  # log-odds shift of damage


CATEGORIES = (
    _Category("apparel", 0.30, 26.0, 350, ("XS", "S", "M", "L", "XL", "XXL"), -3.9, -1.6),
    _Category(
        "shoes", 0.10, 52.0, 900, ("38", "39", "40", "41", "42", "43", "44", "45"), -3.7, -1.0
    ),
    _Category("accessories", 0.12, 17.0, 120, (), -5.0, -0.4),
    _Category("electronics", 0.14, 42.0, 300, (), -4.8, 1.3),
    _Category("home", 0.12, 30.0, 1100, (), -5.1, 1.5),
    _Category("beauty", 0.08, 14.0, 200, (), -5.6, 0.6),
    _Category("toys", 0.07, 21.0, 500, (), -5.4, 0.3),
    _Category("sports", 0.07, 33.0, 700, (), -4.8, 0.0),
)
COLORS = ("black", "white", "navy", "grey", "red", "green", "beige", "blue", "pink")
COLOR_CODES = ("BLK", "WHT", "NVY", "GRY", "RED", "GRN", "BGE", "BLU", "PNK")
LISTING_EXTRA_LANGS = ("de", "fr", "es", "it", "nl", "ja", "pt", "pl", "sv", "ko")
LISTING_EXTRA_P = (0.40, 0.35, 0.35, 0.25, 0.15, 0.12, 0.12, 0.08, 0.08, 0.06)

# carrier_id, name, level, tracked, loss log-odds, damage shift, speed factor, long-lane penalty
CARRIERS = (
    ("gp_eco", "GlobalPost Economy", "economy", False, -4.0, 0.30, 1.10, 0.3),
    ("gp_reg", "GlobalPost Registered", "economy", True, -4.7, 0.20, 1.05, 0.3),
    ("yl_eco", "YunLane Economy Line", "economy", True, -4.6, 0.45, 1.00, 1.2),
    ("pb_std", "ParcelBridge Standard", "standard", True, -5.3, -0.10, 0.95, 0.2),
    ("cx_std", "CrossX Standard", "standard", True, -5.0, 0.00, 1.00, 0.4),
    ("ll_std", "LastLeg Standard", "standard", True, -5.2, 0.20, 1.05, 0.3),
    ("sa_exp", "SwiftAir Express", "express", True, -6.2, -0.30, 0.90, 0.1),
    ("nx_exp", "NorthStar Express", "express", True, -6.0, -0.15, 1.00, 0.2),
)
LEVELS = ("economy", "standard", "express")
LEVEL_DAYS = np.array([13.0, 8.0, 4.0])  # median transit days on a zone-2 lane
LEVEL_SIGMA = np.array([0.45, 0.35, 0.28])
ZONE_FACTOR = {1: 0.75, 2: 1.0, 3: 1.45}
REGION_ZONE = {
    "EU": 2,
    "Europe": 2,
    "North America": 2,
    "Latin America": 3,
    "Asia-Pacific": 1,
    "Middle East & Africa": 2,
}
ZONE_OVERRIDE = {"AU": 2, "NZ": 2, "IN": 2, "ZA": 3, "TR": 2}
# share of customers by country (synthetic market mix; unlisted countries get 0.004)
COUNTRY_MIX = {
    "US": 0.22, "GB": 0.11, "DE": 0.10, "FR": 0.06, "IT": 0.035, "ES": 0.035, "NL": 0.025,
    "CA": 0.045, "AU": 0.04, "JP": 0.025, "KR": 0.012, "CH": 0.012, "BR": 0.02, "MX": 0.015,
    "IN": 0.012, "SE": 0.012, "PL": 0.012, "BE": 0.012, "AT": 0.01, "IE": 0.01, "NZ": 0.01,
    "SG": 0.01, "AE": 0.01, "NO": 0.008, "DK": 0.008, "SA": 0.008, "IL": 0.008,
}  # fmt: skip
COD_COUNTRIES = ("IN", "AE", "SA", "TR", "MX", "CO", "CL", "MY", "TH")
CHANNELS = ("amazon", "ebay", "aliexpress", "shopify", "own_site")
CHANNEL_MIX = np.array([0.34, 0.15, 0.10, 0.21, 0.20])
CHANNEL_PRICE = np.array([1.08, 1.00, 0.92, 1.00, 0.97])
CHANNEL_RETURN = np.array([0.35, 0.0, -0.15, 0.05, -0.25])  # easy marketplace returns
CHANNEL_NR = np.array([0.0, 0.35, 0.45, 0.0, -0.2])  # buyer-protection claims
CHANNEL_DISCOUNT = np.array([-0.5, -0.2, 0.3, 0.4, 0.5])
PAYMENTS = ("card", "paypal", "klarna", "apple_pay", "bank_transfer", "cod")
PAYMENT_MIX = np.array([0.46, 0.28, 0.09, 0.15, 0.02, 0.0])
DISCOUNT_RATES = np.array([0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50])
DISCOUNT_P = np.array([0.30, 0.20, 0.20, 0.10, 0.10, 0.06, 0.04])


def carriers_table() -> pd.DataFrame:
    """The carrier services of the synthetic world (contract table ``carriers``)."""
    return pd.DataFrame(
        {
            "carrier_id": pd.array([c[0] for c in CARRIERS], dtype="str"),
            "carrier_name": pd.array([c[1] for c in CARRIERS], dtype="str"),
            "service_level": pd.array([c[2] for c in CARRIERS], dtype="str"),
            "tracked": pd.array([c[3] for c in CARRIERS], dtype="boolean"),
        }
    )


# ---------------------------------------------------------------------------------------------
# Small vectorised helpers


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows need not be normalised)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _prefix_sample(
    rng: np.random.Generator, cum_weight: np.ndarray, n_avail: np.ndarray
) -> np.ndarray:
    """Sample index i < n_avail[k] with probability proportional to weight, per draw k."""
    total = cum_weight[n_avail - 1]
    idx = np.searchsorted(cum_weight, rng.random(len(n_avail)) * total, side="right")
    return np.minimum(idx, n_avail - 1)


def _group_any_prob(group: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """P(at least one event) per group from independent per-row probabilities."""
    return -np.expm1(np.bincount(group, weights=np.log1p(-np.clip(p, 0, 0.999999)), minlength=n))


def _pick_row(
    rng: np.random.Generator, group: np.ndarray, weight: np.ndarray, n: int
) -> np.ndarray:
    """Per group, one row index drawn with probability proportional to ``weight`` (Gumbel max).

    ``group`` must be sorted ascending. Groups without rows get -1.
    """
    key = np.log(np.maximum(weight, 1e-300)) + rng.gumbel(size=len(weight))
    order = np.lexsort((key, group))
    g_sorted = group[order]
    last = np.flatnonzero(np.r_[g_sorted[1:] != g_sorted[:-1], True])
    out = np.full(n, -1, dtype=np.int64)
    out[g_sorted[last]] = order[last]
    return out


def _ids(prefix: str, n: int, width: int) -> pd.Series:
    """``prefix`` + zero-padded running number, as a "str" Series."""
    return prefix + pd.Series(np.arange(n)).astype("str").str.zfill(width)


def _take(s: pd.Series, idx: np.ndarray, mask: np.ndarray | None = None) -> pd.Series:
    """``s`` at positions ``idx`` (a cheap Arrow take), missing where ``mask``."""
    out = s.iloc[idx].reset_index(drop=True)
    return out.where(~mask) if mask is not None else out


def _ts(seconds: np.ndarray) -> pd.Series | pd.DatetimeIndex:
    """Integer epoch seconds (float NaN = missing) -> tz-aware UTC timestamps, ns unit."""
    s = pd.to_datetime(pd.Series(seconds), unit="s", utc=True)
    return s.astype("datetime64[ns, UTC]")


def _str(values: np.ndarray, mask: np.ndarray | None = None) -> pd.Series:
    s = pd.Series(values, dtype="str")
    if mask is not None:
        s = s.where(~mask)
    return s


# ---------------------------------------------------------------------------------------------
# Generation


def _calendar(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily order-volume weight, logistics peak intensity (0..1) and gift season per day."""
    dates = pd.date_range(pd.Timestamp(cfg.start), periods=cfg.days, freq="D")
    k = np.arange(cfg.days)
    growth = np.exp(np.log(1.6) * k / 365.0)
    weekly = np.array([1.0, 1.02, 1.0, 0.98, 0.94, 0.86, 1.06])[dates.day_of_week]
    month, dom = dates.month.to_numpy(), dates.day.to_numpy()
    season = np.ones(cfg.days)
    season[month == 1] = 0.85
    season[(month == 7) | (month == 8)] = 0.92
    season[month == 11] = 1.35
    season[(month == 12) & (dom <= 20)] = 1.6
    season[(month == 12) & (dom > 20)] = 1.1
    # Black Friday .. Cyber Monday: the Friday after the fourth Thursday of November
    is_nov = month == 11
    thursdays = is_nov & (dates.day_of_week == 3)
    fourth_thu = np.zeros(cfg.days, dtype=bool)
    for year in np.unique(dates.year):  # at most a handful of years, not a loop over orders
        sel = np.flatnonzero(thursdays & (dates.year == year))
        if len(sel) >= 4:
            fourth_thu[sel[3]] = True
    bf = np.flatnonzero(fourth_thu)
    for b in bf:
        season[b + 1 : b + 5] = 2.6
    peak = np.zeros(cfg.days)
    peak[(month == 11) & (dom >= 15)] = 1.0
    peak[month == 12] = 1.0
    peak[(month == 11) & (dom < 15)] = 0.4
    peak[(month == 1) & (dom <= 10)] = 0.5
    gift = ((month == 11) & (dom >= 20)) | ((month == 12) & (dom <= 24))
    return growth * weekly * season, peak, gift.astype(np.float64)


def generate_world(cfg: SynthConfig, *, log: StepLog = QUIET) -> World:
    """Generate the whole world for ``cfg`` (deterministic in ``cfg``)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_orders
    t0 = int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    t_end = t0 + cfg.days * DAY  # export time
    cutoff_day = cfg.days - cfg.new_days

    countries = load_countries()
    cc = countries["country_code"].to_numpy(dtype=object)
    n_cty = len(cc)
    dm = countries["duty_de_minimis"].to_numpy(dtype=np.float64)
    default_ddu = (countries["default_incoterm"] == "DDU").to_numpy()
    regions = sorted(countries["region"].unique())
    cty_region = np.searchsorted(regions, countries["region"].to_numpy(dtype=object))
    cty_zone = np.array(
        [
            ZONE_OVERRIDE.get(c, REGION_ZONE.get(r, 2))
            for c, r in zip(cc, countries["region"], strict=True)
        ]
    )
    cty_is_cod = np.isin(cc, COD_COUNTRIES)
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
    mix /= mix.sum()

    vol, peak_day, gift_day = _calendar(cfg)

    # --- catalogue -------------------------------------------------------------------------
    with log.step("catalogue"):
        n_prod = int(np.clip(round(3.0 * n**0.6), 40, 40_000))
        cat_share = np.array([c.share for c in CATEGORIES])
        p_cat = rng.choice(len(CATEGORIES), size=n_prod, p=cat_share / cat_share.sum())
        cat_price = np.array([c.price for c in CATEGORIES])
        cat_weight = np.array([c.weight for c in CATEGORIES])
        cat_nsizes = np.array([max(len(c.sizes), 1) for c in CATEGORIES])
        cat_sized = np.array([len(c.sizes) > 0 for c in CATEGORIES])
        launch = np.where(
            rng.random(n_prod) < 0.65,
            -rng.integers(1, 400, n_prod),
            rng.integers(0, cfg.days, n_prod),
        )
        order_p = np.argsort(launch, kind="stable")  # product index = launch order
        p_cat, launch = p_cat[order_p], launch[order_p]
        p_sized = cat_sized[p_cat]
        n_sup = max(8, n_prod // 60)
        sup_q = rng.normal(0.0, 0.6, n_sup)
        p_sup = rng.integers(0, n_sup, n_prod)
        p_q = sup_q[p_sup] + rng.normal(0.0, 0.8, n_prod)  # latent quality problem
        p_m = rng.normal(0.0, 1.0, n_prod)  # latent description mismatch
        p_fit = rng.normal(0.0, 1.0, n_prod) * np.where(p_cat == 1, 0.8, 1.0)  # runs small/large
        p_price = np.round(cat_price[p_cat] * np.exp(rng.normal(0, 0.55, n_prod)), 0) - 0.01
        p_price = np.maximum(p_price, 1.99)
        p_weight = np.round(cat_weight[p_cat] * np.exp(rng.normal(0, 0.4, n_prod)), 0)
        p_nimg = np.clip(rng.poisson(np.exp(1.65 - 0.35 * p_m)), 1, 15)
        # sellers with sloppy listings skip the size chart more often
        chart_p = expit(0.4 - 0.7 * p_m - 0.3 * np.abs(p_fit))
        p_chart = np.where(p_sized, (rng.random(n_prod) < chart_p).astype(np.int8), -1)
        p_lang = np.full(n_prod, lang_bit["en"], dtype=np.uint64)
        lang_p = np.array(LISTING_EXTRA_P)[None, :] * expit(0.5 - 0.5 * p_m)[:, None] * 2
        has_lang = rng.random((n_prod, len(LISTING_EXTRA_LANGS))) < lang_p
        for j, lg in enumerate(LISTING_EXTRA_LANGS):  # 10 languages, vectorised over products
            p_lang |= np.where(has_lang[:, j], lang_bit[lg], np.uint64(0))
        p_ncol = np.where(rng.random(n_prod) < 0.3, 1, rng.integers(1, 5, n_prod))
        p_col0 = rng.integers(0, len(COLORS), n_prod)
        p_nsz = cat_nsizes[p_cat]
        p_nsku = p_ncol * p_nsz
        p_sku0 = np.r_[0, np.cumsum(p_nsku)[:-1]]
        n_sku = int(p_nsku.sum())
        s_prod = np.repeat(np.arange(n_prod), p_nsku)
        within = np.arange(n_sku) - p_sku0[s_prod]
        s_col = within // p_nsz[s_prod]
        s_size = within % p_nsz[s_prod]
        rank = rng.permutation(n_prod)
        pop = 1.0 / (rank + 6.0) ** 1.1  # Zipf-Mandelbrot: top 20% of products ~75% of sales
        pop_cum = np.cumsum(pop)
        p_avail = np.searchsorted(launch, np.arange(cfg.days), side="right")
        p_avail = np.maximum(p_avail, 1)
        # per-SKU deviations (one colour's photos are off, one size is cut badly) and a few
        # products hit by a bad production batch for ~2 months: visible only in case history
        s_q = p_q[s_prod] + rng.normal(0.0, 0.35, n_sku)
        s_m = p_m[s_prod] + rng.normal(0.0, 0.35, n_sku)
        p_bad = rng.random(n_prod) < 0.03
        p_bad_from = rng.integers(0, cfg.days, n_prod)

    # --- orders in time ----------------------------------------------------------------------
    with log.step("orders"):
        per_day = rng.multinomial(n, vol / vol.sum())
        o_day = np.repeat(np.arange(cfg.days), per_day)
        hour_w = np.array([2, 1.5, 1, 1, 1, 1.2, 2, 3, 4, 4.5, 5, 5, 5, 5.5, 5.5, 5.5, 6, 6.5, 7,
                           7.5, 7.5, 6.5, 5, 3.5])  # fmt: skip
        hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
        o_sec = o_day * DAY + hour * 3600 + rng.integers(0, 3600, n)
        o_sec = np.sort(o_sec, kind="stable")  # days already ascending; sort within a day
        o_day = o_sec // DAY
        o_ts = t0 + o_sec
        o_new = o_day >= cutoff_day
        o_peak = peak_day[o_day]

        # customers: a pool arriving over time, each with an activity weight
        n_pool = int(cfg.customers_per_order * n) + 20
        pre = rng.random(n_pool) < 0.3
        arrive_day = np.where(
            pre,
            -rng.integers(1, 730, n_pool),
            rng.choice(cfg.days, size=n_pool, p=vol / vol.sum()),
        )
        arrive_day = np.sort(arrive_day)
        arrive_day[0] = min(arrive_day[0], -1)  # somebody exists on day 0
        c_b2b = rng.random(n_pool) < cfg.b2b_share
        c_w = np.exp(rng.normal(0, 1.0, n_pool)) * np.where(c_b2b, 1.5, 1.0)
        c_serial = rng.random(n_pool) < cfg.serial_share
        c_lat = np.where(c_serial, rng.normal(2.8, 0.5, n_pool), rng.normal(0.0, 0.6, n_pool))
        c_cty = rng.choice(n_cty, size=n_pool, p=mix)
        c_chan = rng.choice(len(CHANNELS), size=n_pool, p=CHANNEL_MIX)
        c_arrive_sec = arrive_day * DAY + rng.integers(0, DAY, n_pool)
        c_avail = np.searchsorted(arrive_day, np.arange(cfg.days), side="right")
        o_cust = _prefix_sample(rng, np.cumsum(c_w), c_avail[o_day])
        # first order of each customer (in the data) -> first-time buyer
        first_idx = np.unique(o_cust, return_index=True)[1]
        o_first = np.zeros(n, dtype=bool)
        o_first[first_idx] = True
        o_first &= arrive_day[o_cust] >= 0  # pre-existing customers bought before the export
        o_b2b = c_b2b[o_cust]
        o_lat = c_lat[o_cust]
        o_dest = np.where(rng.random(n) < 0.02, rng.choice(n_cty, size=n, p=mix), c_cty[o_cust])
        o_chan = np.where(
            rng.random(n) < 0.8, c_chan[o_cust], rng.choice(len(CHANNELS), size=n, p=CHANNEL_MIX)
        )
        pay_p = np.broadcast_to(PAYMENT_MIX, (n, len(PAYMENTS))).copy()
        pay_p[cty_is_cod[o_dest], 5] = 0.45
        pay_p[o_b2b, 4] = 1.5
        pay_p[o_b2b, 2] = 0.0
        o_pay = _choice_rows(rng, pay_p)
        o_zone = cty_zone[o_dest]
        o_region = cty_region[o_dest]

    # --- order lines --------------------------------------------------------------------------
    with log.step("order lines"):
        n_lines = 1 + np.where(o_b2b, rng.poisson(1.5, n), rng.poisson(0.4, n))
        l_ord = np.repeat(np.arange(n), n_lines)
        l_prod = _prefix_sample(rng, pop_cum, p_avail[o_day[l_ord]])
        l_col = rng.integers(0, 1 << 30, len(l_ord)) % p_ncol[l_prod]
        nsz = p_nsz[l_prod]
        l_size = np.clip(np.round(rng.normal((nsz - 1) / 2, nsz / 4.5)), 0, nsz - 1).astype(
            np.int64
        )
        # bracketing: the same product in a neighbouring size (sometimes two)
        sized_line = p_sized[l_prod]
        first_sized = _pick_row(rng, l_ord, sized_line.astype(np.float64) + 1e-9, n)
        has_sized = np.zeros(n, dtype=bool)
        has_sized[l_ord[sized_line]] = True
        fs = np.where(has_sized, first_sized, 0)
        no_chart = p_chart[l_prod[fs]] != 1
        br_logit = (
            -4.4
            + 0.8 * o_lat
            + 0.5 * no_chart
            + 0.4 * (o_chan == 0)
            + 0.8 * (o_pay == 2)
            - 2.0 * o_b2b
            + 0.3 * np.abs(p_fit[l_prod[fs]])
        )
        brk = has_sized & (rng.random(n) < expit(br_logit))
        b_ord = np.flatnonzero(brk)
        b_src = fs[b_ord]
        n_extra = 1 + (rng.random(len(b_ord)) < 0.25)
        b_ord = np.repeat(b_ord, n_extra)
        b_src = np.repeat(b_src, n_extra)
        step = np.where(np.r_[True, b_ord[1:] != b_ord[:-1]], 1, -1)  # +1 then -1
        b_size = l_size[b_src] + step
        b_nsz = p_nsz[l_prod[b_src]]
        b_size = np.where((b_size < 0) | (b_size >= b_nsz), l_size[b_src] - step, b_size)
        b_size = np.clip(b_size, 0, b_nsz - 1)
        l_ord = np.r_[l_ord, b_ord]
        l_prod = np.r_[l_prod, l_prod[b_src]]
        l_col = np.r_[l_col, l_col[b_src]]
        l_size = np.r_[l_size, b_size]
        qty = np.where(
            o_b2b[l_ord],
            1 + rng.poisson(3.0, len(l_ord)),
            1 + (rng.random(len(l_ord)) < 0.1) + (rng.random(len(l_ord)) < 0.03),
        )
        qty[len(qty) - len(b_ord) :] = 1
        l_sku = p_sku0[l_prod] + l_col * p_nsz[l_prod] + l_size
        # merge duplicate (order, sku) lines
        key = l_ord.astype(np.int64) * n_sku + l_sku
        ukey, inv = np.unique(key, return_inverse=True)
        qty = np.bincount(inv, weights=qty).astype(np.int64)
        l_ord = ukey // n_sku
        l_sku = ukey % n_sku
        l_prod = s_prod[l_sku]
        n_l = len(l_ord)
        # bracketing as observed: one product in 2+ sizes within an order
        pk = l_ord * n_prod + l_prod
        sized_l = p_sized[l_prod]
        pk_s = pk[sized_l]
        upk, cnt = np.unique(pk_s, return_counts=True)
        br_keys = upk[cnt >= 2]
        l_bracket = np.zeros(n_l, dtype=bool)
        l_bracket[sized_l] = np.isin(pk_s, br_keys)
        o_bracket = np.zeros(n, dtype=bool)
        o_bracket[l_ord[l_bracket]] = True
        o_nlines = np.bincount(l_ord, minlength=n)

        # prices and discounts
        unit = np.round(p_price[l_prod] * CHANNEL_PRICE[o_chan[l_ord]], 2)
        gross = np.round(np.bincount(l_ord, weights=unit * qty, minlength=n), 2)
        disc_logit = -0.9 + 1.3 * o_peak + CHANNEL_DISCOUNT[o_chan]
        has_disc = rng.random(n) < expit(disc_logit)
        d_rate = np.where(has_disc, rng.choice(DISCOUNT_RATES, size=n, p=DISCOUNT_P), 0.0)
        discount = np.round(gross * d_rate, 2)
        value = np.round(gross - discount, 2)
        o_weight = np.bincount(l_ord, weights=p_weight[l_prod] * qty, minlength=n)

    # --- logistics choice --------------------------------------------------------------------
    with log.step("shipping"):
        lvl_p = np.empty((n, 3))
        lvl_p[:, 2] = expit(-2.7 + 0.7 * np.log(np.maximum(value, 1) / 40) + 1.6 * o_b2b)
        lvl_p[:, 1] = (1 - lvl_p[:, 2]) * expit(-0.2 + 0.5 * np.log(np.maximum(value, 1) / 30))
        lvl_p[:, 0] = 1 - lvl_p[:, 1] - lvl_p[:, 2]
        o_lvl = _choice_rows(rng, lvl_p)
        car_lvl = np.array([LEVELS.index(c[2]) for c in CARRIERS])
        n_car = len(CARRIERS)
        # each region has its preferred carriers within a service level
        reg_pref = rng.dirichlet(np.ones(n_car), size=len(regions))
        car_p = reg_pref[o_region] * (car_lvl[None, :] == o_lvl[:, None])
        # untracked economy is not offered above 30 EUR
        car_p[:, 0] *= np.where(value > 30, 0.05, 1.0)
        o_car = _choice_rows(rng, car_p + 1e-12 * (car_lvl[None, :] == o_lvl[:, None]))
        car_loss = np.array([c[4] for c in CARRIERS])
        car_dmg = np.array([c[5] for c in CARRIERS])
        car_speed = np.array([c[6] for c in CARRIERS])
        car_long = np.array([c[7] for c in CARRIERS])
        car_tracked = np.array([c[3] for c in CARRIERS])
        lane = rng.normal(0, 0.45, (n_car, len(regions)))  # latent carrier x region quality
        # a mid-period deterioration: one standard carrier's long lanes break down
        event_day = int(cfg.days * 0.55)
        event = (o_car == 5) & (o_zone == 3) & (o_day >= event_day)
        zf = np.array([ZONE_FACTOR.get(z, 1.0) for z in range(4)])[o_zone]
        promised = np.ceil(LEVEL_DAYS[o_lvl] * zf * 1.9).astype(np.int64)
        med_transit = (
            LEVEL_DAYS[o_lvl]
            * zf
            * car_speed[o_car]
            * (1 + 0.35 * o_peak)
            * np.where(o_zone == 3, 1 + 0.2 * car_long[o_car], 1.0)
            * np.where(event, 1.35, 1.0)
        )
        sigma = LEVEL_SIGMA[o_lvl]
        late_thr = np.maximum(promised - 1.5, 1.0)
        p_late = 1 - ndtr((np.log(late_thr) - np.log(med_transit)) / sigma)
        loss_logit = (
            car_loss[o_car]
            - 0.25
            + lane[o_car, o_region]
            + 0.45 * (o_zone - 2)
            + car_long[o_car] * (o_zone == 3)
            + 0.7 * o_peak
            + 1.3 * event
        )
        p_lost = expit(loss_logit)
        free = (value >= 25) & (o_lvl < 2) & (rng.random(n) < 0.6)
        fee = np.round(
            np.array([3.5, 6.0, 14.0])[o_lvl] * zf + 0.004 * o_weight * (o_lvl + 1) / 2, 2
        )
        fee = np.where(free, 0.0, fee)
        ddu = np.where(rng.random(n) < 0.82, default_ddu[o_dest], ~default_ddu[o_dest])
        ddu = np.where((o_chan == 0) & ~default_ddu[o_dest], False, ddu)  # marketplace collects
        incoterm_null = rng.random(n) < 0.07
        ddu = np.where(incoterm_null, default_ddu[o_dest], ddu)
        o_dm = dm[o_dest]
        above = value > o_dm
        tracked = car_tracked[o_car]

    # --- risks: per-cause probabilities within the label window -----------------------------
    with log.step("risk model"):
        lo = l_ord
        cat_l = p_cat[l_prod]
        lang_mis = (p_lang[l_prod] & cty_lang[o_dest[lo]]) == 0
        chart_l = p_chart[l_prod]
        fit_term = np.where(
            p_sized[l_prod],
            0.3 + 0.6 * np.abs(p_fit[l_prod]) * np.where(chart_l == 1, 0.45, 1.0),
            0.0,
        )
        rel_price = np.log(unit / cat_price[cat_l])
        age = o_day[lo] - p_bad_from[l_prod]
        q_l = s_q[l_sku] + 1.8 * (p_bad[l_prod] & (age >= 0) & (age < 60))
        cat_ret = np.array([c.ret for c in CATEGORIES])
        cat_frag = np.array([c.fragile for c in CATEGORIES])
        ret_l = expit(
            cat_ret[cat_l]
            - 1.0
            + fit_term
            + 0.35 * lang_mis
            + 1.0 * o_lat[lo]
            + CHANNEL_RETURN[o_chan[lo]]
            + 0.35 * (o_pay[lo] == 2)
            + 1.2 * d_rate[lo]
            + 0.25 * rel_price
            - 0.9 * o_b2b[lo]
            + 0.25 * o_first[lo]
            + 0.3 * gift_day[o_day[lo]]
            + 0.35 * q_l
        )
        p_br = np.where(o_bracket, expit(0.5 + 0.4 * o_lat), 0.0)
        p_return = 1 - (1 - _group_any_prob(lo, ret_l, n)) * (1 - p_br)
        nad_l = expit(
            -5.4
            + 0.9 * s_m[l_sku]
            + 0.4 * q_l
            + 0.6 * lang_mis
            + 0.45 * o_lat[lo]
            + 0.3 * (o_chan[lo] == 2)
            + 0.15 * rel_price
            + 0.2 * o_first[lo]
        )
        p_nad = _group_any_prob(lo, nad_l, n)
        dmg_l = expit(
            -6.4
            + cat_frag[cat_l]
            + car_dmg[o_car[lo]]
            + 0.3 * (o_zone[lo] - 2)
            + 0.35 * o_peak[lo]
            + 0.3 * q_l
            + 0.2 * np.log(p_weight[l_prod] * qty / 500)
        )
        p_dmg = _group_any_prob(lo, dmg_l, n)
        q_mean = np.bincount(lo, weights=q_l, minlength=n) / o_nlines
        p_wrong = expit(-6.0 + 0.3 * (o_nlines - 1) + 0.7 * o_peak)
        p_refund = expit(-5.6 + 0.4 * o_lat + 1.5 * p_late + 0.25 * q_mean)
        p_misc = expit(-6.3 + 0.4 * o_lat)
        q_late = expit(-2.0 + 0.6 * o_lat + 0.4 * (o_pay == 1) + CHANNEL_NR[o_chan])
        q_fraud = expit(
            -7.2 + 1.1 * o_lat + 1.9 * ~tracked + 0.4 * (o_pay == 1) + CHANNEL_NR[o_chan]
        )
        p_nr_nl = p_late * q_late + (1 - p_late) * q_fraud
        excess = np.maximum(value - o_dm, 0)
        p_duty = np.where(
            ddu & above,
            expit(-1.9 + 0.5 * np.log1p(excess / 40) - 1.5 * o_b2b + 0.5 * o_lat + 0.3 * o_first),
            expit(-7.5 + 0.3 * o_lat),
        )
        p_cod = np.where(o_pay == 5, expit(-2.6 + 0.5 * o_lat + 0.5 * o_first), 0.0)
        claim_lost = 0.88
        item_none = (1 - p_return) * (1 - p_nad) * (1 - p_dmg) * (1 - p_wrong) * (1 - p_refund)
        p_none = p_lost * (1 - claim_lost) * (1 - p_misc) + (1 - p_lost) * (1 - p_nr_nl) * (
            1 - p_duty
        ) * (1 - p_cod) * item_none * (1 - p_misc)
        p_case = 1 - p_none
        refuse_share = 0.5
        deliv = (1 - p_lost) * (1 - refuse_share * p_duty) * (1 - p_cod)
        truth = pd.DataFrame(
            {
                "order_id": None,  # filled below
                "p_case": p_case,
                "p_return": deliv * p_return,
                "p_not_as_described": deliv * p_nad,
                "p_damaged": deliv * p_dmg,
                "p_wrong_item": deliv * p_wrong,
                "p_refund": deliv * p_refund,
                "p_not_received": p_lost * claim_lost + (1 - p_lost) * p_nr_nl,
                "p_duty_dispute": (1 - p_lost) * p_duty,
                "p_other": 1 - (1 - p_misc) * (1 - (1 - p_lost) * p_cod),
                "p_lost": p_lost,
                "p_late": p_late,
            }
        )

    # --- outcomes ---------------------------------------------------------------------------
    with log.step("outcomes"):
        handling = np.exp(rng.normal(np.log(0.9 + 0.7 * o_peak), 0.5)) * DAY
        shipped = o_ts + handling
        u_t = rng.random(n)
        transit_days = med_transit * np.exp(sigma * ndtri(np.clip(u_t, 1e-9, 1 - 1e-9)))
        late = transit_days > late_thr
        arrive = shipped + transit_days * DAY
        lost = rng.random(n) < p_lost
        nr = np.where(
            lost, rng.random(n) < claim_lost, rng.random(n) < np.where(late, q_late, q_fraud)
        )
        duty_case = ~lost & (rng.random(n) < p_duty)
        duty_refused = duty_case & (rng.random(n) < refuse_share)
        cod_refused = ~lost & (rng.random(n) < p_cod)
        delivered = ~lost & ~duty_refused & ~cod_refused
        misc = rng.random(n) < p_misc
        # item-level causes happen only to delivered parcels; choose the line they are about
        u_ret = rng.random(n) < p_return
        u_nad = rng.random(n) < p_nad
        u_dmg = rng.random(n) < p_dmg
        u_wrong = rng.random(n) < p_wrong
        u_ref = rng.random(n) < p_refund
        ret = delivered & u_ret
        nad = delivered & u_nad
        dmg = delivered & u_dmg
        wrong = delivered & u_wrong
        refund = delivered & u_ref
        ret_line = _pick_row(rng, lo, ret_l + 3.0 * l_bracket * p_br[lo], n)
        nad_line = _pick_row(rng, lo, nad_l, n)
        dmg_line = _pick_row(rng, lo, dmg_l, n)
        wrong_line = _pick_row(rng, lo, np.ones(n_l), n)
        window_end = o_ts + LABEL_WINDOW_DAYS * DAY - 1

        prom_s = promised * DAY
        gamma = rng.gamma

        def _opened(mask: np.ndarray, base: np.ndarray, delay_days: np.ndarray) -> np.ndarray:
            t = base[mask] + delay_days[mask] * DAY
            t = np.minimum(t, window_end[mask] - rng.random(mask.sum()) * DAY)
            return np.maximum(t, o_ts[mask] + 60)

        line_value = unit * qty * (1 - d_rate[lo])
        specs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        def add(kind: str, mask: np.ndarray, opened: np.ndarray, line: np.ndarray, amount):
            specs.append((kind, np.flatnonzero(mask), opened, line, amount))

        m = nr & lost
        add("not_received", m, _opened(m, o_ts + prom_s, rng.exponential(6, n)), None,
            value[m] + fee[m])  # fmt: skip
        m = nr & ~lost & late
        add("not_received", m, _opened(m, o_ts + prom_s, rng.exponential(3, n)), None,
            value[m] + fee[m])  # fmt: skip
        m = nr & ~lost & ~late
        add("not_received", m, _opened(m, arrive, rng.uniform(1, 12, n)), None, value[m] + fee[m])
        m = duty_case
        at_customs = shipped + 0.85 * transit_days * DAY
        duty_amt = np.where(duty_refused, value + fee + 15.0, np.round(0.18 * value + 12.0, 2))
        add("duty_dispute", m, _opened(m, at_customs, rng.exponential(3, n)), None, duty_amt[m])
        m = cod_refused
        add("other", m, _opened(m, arrive, rng.uniform(0, 2, n)), None, fee[m] + 12.0)
        m = misc
        add("other", m, _opened(m, o_ts, rng.uniform(0.2, 80, n)), None,
            np.round(rng.uniform(0, 20, n), 2)[m])  # fmt: skip
        for kind, mk, line, delay, frac in (
            ("return", ret, ret_line, gamma(2.0, 3.5, n), np.ones(n)),
            ("not_as_described", nad, nad_line, gamma(1.5, 3.0, n), rng.uniform(0.4, 1.0, n)),
            ("damaged", dmg, dmg_line, rng.exponential(1.5, n), np.ones(n)),
            ("wrong_item", wrong, wrong_line, rng.exponential(2.0, n), np.ones(n)),
        ):
            amt = line_value[line[mk]] * frac[mk] + (6.0 if kind == "return" else 0.0)
            add(kind, mk, _opened(mk, arrive, delay), line[mk], amt)
        m = refund
        add("refund", m, _opened(m, arrive, gamma(2.0, 6.0, n)), None,
            value[m] * rng.uniform(0.1, 0.4, n)[m])  # fmt: skip
        # cases outside the label window: defects found late, late duty bills
        late_case = rng.random(n) < expit(-5.0 + 0.5 * q_mean + 0.3 * o_lat)
        late_kind = rng.choice(
            np.array(["refund", "not_as_described", "other", "duty_dispute"], dtype=object),
            size=n,
            p=[0.4, 0.3, 0.2, 0.1],
        )
        late_open = o_ts + (LABEL_WINDOW_DAYS + rng.uniform(0.05, 150, n)) * DAY
        for kind in ("refund", "not_as_described", "other", "duty_dispute"):
            m = late_case & (late_kind == kind)
            add(kind, m, late_open[m], None, value[m] * rng.uniform(0.2, 1.0, n)[m])

        c_ord = np.concatenate([s[1] for s in specs])
        c_kind = np.concatenate([np.full(len(s[1]), s[0], dtype=object) for s in specs])
        c_open = np.floor(np.concatenate([s[2] for s in specs])).astype(np.int64)
        c_line = np.concatenate(
            [s[3] if s[3] is not None else np.full(len(s[1]), -1) for s in specs]
        )
        c_amt = np.round(np.concatenate([np.asarray(s[4], dtype=np.float64) for s in specs]), 2)
        # the seller does not always know which line a case is about
        c_line = np.where(rng.random(len(c_line)) < 0.1, -1, c_line)
        keep = (~o_new[c_ord]) & (c_open < t_end)
        c_ord, c_kind, c_open, c_line, c_amt = (
            c_ord[keep], c_kind[keep], c_open[keep], c_line[keep], c_amt[keep]
        )  # fmt: skip
        corder = np.lexsort((c_kind, c_ord, c_open))  # case ids in opening order
        c_ord, c_kind, c_open, c_line, c_amt = (
            c_ord[corder], c_kind[corder], c_open[corder], c_line[corder], c_amt[corder]
        )  # fmt: skip

    # --- assemble tables -----------------------------------------------------------------------
    with log.step("tables"):
        order_ids = _ids("O", n, 8)
        cust_used = np.unique(o_cust)
        cust_code = np.full(n_pool, -1, dtype=np.int64)
        cust_code[cust_used] = np.arange(len(cust_used))
        cust_ids = _ids("C", len(cust_used), 7)
        prod_ids = _ids("P", n_prod, 6)
        w_sz = int(cat_nsizes.max())
        size_lbl = np.array(
            [(c.sizes[i] if i < len(c.sizes) else "") for c in CATEGORIES for i in range(w_sz)],
            dtype=object,
        ).reshape(len(CATEGORIES), w_sz)
        s_cat = p_cat[s_prod]
        col_idx = (p_col0[s_prod] + s_col) % len(COLORS)
        s_size_lbl = size_lbl[s_cat, s_size]
        sku_ids = (
            _take(prod_ids, s_prod)
            + "-"
            + pd.Series(np.array(COLOR_CODES, dtype=object)[col_idx], dtype="str")
            + np.where(p_sized[s_prod], "-" + pd.Series(s_size_lbl, dtype="str"), "")
        )
        # each supplier makes 1-3 brands, so a brand carries its supplier's quality
        n_brand = 3 * n_sup
        brand_of_prod = 3 * p_sup + np.minimum(
            rng.integers(0, 3, n_prod), rng.integers(0, 3, n_prod)
        )
        brands = _ids("brand_", n_brand, 3)
        sup_ids = _ids("SUP", n_sup, 3)
        s_launch = launch[s_prod]
        lang_names = np.array(langs, dtype=object)
        lang_bits = np.array([lang_bit[lg] for lg in langs], dtype=np.uint64)
        has = (p_lang[:, None] & lang_bits[None, :]) != 0
        # listing languages as text: en first, then the rest alphabetically
        en_i = langs.index("en")
        lang_txt = pd.Series(np.full(n_prod, "en", dtype=object), dtype="str")
        for j in np.argsort(lang_names):  # a few dozen languages, vectorised over products
            if j == en_i:
                continue
            lang_txt = lang_txt.where(~has[:, j], lang_txt + "," + lang_names[j])
        prod_lang_txt = lang_txt.to_numpy(dtype=object)
        nimg_null = rng.random(n_prod) < 0.04
        list_price = p_price[s_prod] * np.where(p_sized[s_prod] & (s_size >= 5), 1.05, 1.0)
        skus = pd.DataFrame(
            {
                "sku_id": sku_ids,
                "product_id": _take(prod_ids, s_prod),
                "category": _str(np.array([c.name for c in CATEGORIES], dtype=object)[s_cat]),
                "brand": _take(brands, brand_of_prod[s_prod]),
                "supplier_id": _take(sup_ids, p_sup[s_prod]),
                "list_price": np.round(list_price, 2),
                "weight_g": p_weight[s_prod].astype(np.float64),
                "size": _str(s_size_lbl, ~p_sized[s_prod]),
                "color": _str(np.array(COLORS, dtype=object)[col_idx]),
                "n_images": pd.Series(pd.array(p_nimg[s_prod], dtype="Int64")).where(
                    ~nimg_null[s_prod]
                ),
                "has_size_chart": pd.Series(pd.array(p_chart[s_prod] == 1, dtype="boolean")).where(
                    p_chart[s_prod] >= 0
                ),
                "listing_languages": _str(prod_lang_txt[s_prod]),
            }
        )
        sku_hist = s_launch < cutoff_day
        sku_new = (s_launch >= cutoff_day) & (s_launch < cfg.days)

        orders = pd.DataFrame(
            {
                "order_id": order_ids,
                "customer_id": _take(cust_ids, cust_code[o_cust]),
                "order_ts": _ts(o_ts),
                "channel": _str(np.array(CHANNELS, dtype=object)[o_chan]),
                "destination_country": _str(cc[o_dest]),
                "carrier_id": _str(
                    np.array([c[0] for c in CARRIERS], dtype=object)[o_car],
                    o_new & (rng.random(n) < 0.06),
                ),
                "incoterm": _str(np.where(ddu, "DDU", "DDP").astype(object), incoterm_null),
                "order_value": value,
                "shipping_fee": fee,
                "discount_value": discount,
                "payment_method": _str(np.array(PAYMENTS, dtype=object)[o_pay]),
                "promised_delivery_days": pd.Series(pd.array(promised, dtype="Int64")).where(
                    ~((o_chan >= 3) & (rng.random(n) < 0.05))
                ),
            }
        )
        lines = pd.DataFrame(
            {
                "order_id": _take(order_ids, l_ord),
                "sku_id": _take(sku_ids, l_sku),
                "quantity": qty,
                "unit_price": unit,
            }
        )
        first_ts = np.full(n_pool, np.iinfo(np.int64).max)
        # first order per customer: orders are time-sorted, so take the first occurrence
        uc, first_pos = np.unique(o_cust, return_index=True)
        first_ts[uc] = o_ts[first_pos]
        c_first_seen = np.minimum(t0 + c_arrive_sec, first_ts)
        c_hist_any = np.zeros(n_pool, dtype=bool)
        c_hist_any[o_cust[~o_new]] = True
        c_new_only = np.zeros(n_pool, dtype=bool)
        c_new_only[o_cust[o_new]] = True
        c_new_only &= ~c_hist_any
        segs = np.where(c_b2b, "b2b", "b2c").astype(object)

        def customers_of(mask: np.ndarray) -> pd.DataFrame:
            idx = np.flatnonzero(mask)
            return pd.DataFrame(
                {
                    "customer_id": _take(cust_ids, cust_code[idx]),
                    "first_seen_ts": _ts(c_first_seen[idx]),
                    "country_code": _str(cc[c_cty[idx]]),
                    "segment": _str(segs[idx]),
                }
            )

        hist_o = ~o_new
        ship_known = hist_o & (shipped < t_end)
        deliv_known = ship_known & delivered & (arrive < t_end)
        ship_idx = np.flatnonzero(ship_known)
        delivered_s = np.where(deliv_known, np.floor(arrive), np.nan)[ship_idx]
        shipments = pd.DataFrame(
            {
                "order_id": _take(order_ids, ship_idx),
                "shipped_ts": _ts(np.floor(shipped[ship_idx]).astype(np.int64)),
                "delivered_ts": _ts(delivered_s),
            }
        )
        sku_of_case = np.where(c_line >= 0, l_sku[np.maximum(c_line, 0)], -1)
        cases = pd.DataFrame(
            {
                "case_id": _ids("K", len(c_ord), 8),
                "order_id": _take(order_ids, c_ord),
                "opened_ts": _ts(c_open),
                "case_type": _str(c_kind),
                "sku_id": _take(sku_ids, np.maximum(sku_of_case, 0), sku_of_case < 0),
                "amount": c_amt,
            }
        )
        truth["order_id"] = order_ids
        truth["is_new"] = o_new
        countries_out = countries.reset_index(drop=True)
        tables = {
            "orders": orders.loc[hist_o].reset_index(drop=True),
            "order_lines": lines.loc[hist_o[l_ord]].reset_index(drop=True),
            "skus": skus.loc[sku_hist].reset_index(drop=True),
            "countries": countries_out,
            "carriers": carriers_table(),
            "customers": customers_of(c_hist_any),
            "after_sales_cases": cases,
            "shipments": shipments,
        }
        new = {}
        if o_new.any():
            new = {
                "orders": orders.loc[o_new].reset_index(drop=True),
                "order_lines": lines.loc[o_new[l_ord]].reset_index(drop=True),
                "skus": skus.loc[sku_new].reset_index(drop=True),
                "customers": customers_of(c_new_only),
            }
    log.info(
        f"{int(hist_o.sum()):,} history orders, {int(o_new.sum()):,} new, "
        f"{len(cases):,} cases, {len(skus):,} SKUs"
    )
    return World(tables=tables, truth=truth, new=new, config=cfg)


def write_world(world: World, out_dir: str | Path, *, log: StepLog = QUIET) -> Path:
    """Write every table as Parquet into ``out_dir`` (+ ``truth.parquet`` and ``new/``)."""
    out = Path(out_dir)
    with log.step(f"writing {out}"):
        out.mkdir(parents=True, exist_ok=True)
        for name, df in world.tables.items():
            df.to_parquet(out / f"{name}.parquet", index=False)
        world.truth.to_parquet(out / "truth.parquet", index=False)
        if world.new:
            (out / "new").mkdir(exist_ok=True)
            for name, df in world.new.items():
                df.to_parquet(out / "new" / f"{name}.parquet", index=False)
        else:  # no new orders: do not leave a previous run's new orders behind
            for name in NEW_TABLES:
                (out / "new" / f"{name}.parquet").unlink(missing_ok=True)
    return out
