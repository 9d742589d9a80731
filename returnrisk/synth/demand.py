"""Stages "orders" and "order lines": when orders come, from whom, with what in the basket."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from returnrisk.synth.catalog import Catalog
from returnrisk.synth.config import DAY, SynthConfig
from returnrisk.synth.setting import Calendar, Geography
from returnrisk.synth.static import (
    CHANNEL_DISCOUNT,
    CHANNEL_MIX,
    CHANNEL_PRICE,
    CHANNELS,
    DISCOUNT_P,
    DISCOUNT_RATES,
    PAYMENT_MIX,
    PAYMENTS,
)
from returnrisk.synth.util import choice_rows, pick_row, prefix_sample

HOUR_WEIGHT = (2, 1.5, 1, 1, 1, 1.2, 2, 3, 4, 4.5, 5, 5, 5, 5.5, 5.5, 5.5, 6, 6.5, 7, 7.5, 7.5,
               6.5, 5, 3.5)  # fmt: skip


@dataclass(frozen=True)
class Customers:
    """The customer pool (``c_*``), arriving over time, each with hidden traits."""

    n_pool: int
    arrive_day: np.ndarray  # sorted; negative: a customer from before the world starts
    c_b2b: np.ndarray
    c_w: np.ndarray  # activity weight
    c_serial: np.ndarray
    c_lat: np.ndarray  # hidden case tendency
    c_cty: np.ndarray
    c_chan: np.ndarray
    c_arrive_sec: np.ndarray


@dataclass(frozen=True)
class Orders:
    """One entry per order (``o_*``), sorted by time."""

    o_ts: np.ndarray  # epoch seconds
    o_day: np.ndarray
    o_new: np.ndarray  # in the last ``new_days``: to screen, no outcomes exported
    o_peak: np.ndarray
    o_cust: np.ndarray
    o_first: np.ndarray  # first-time buyer
    o_b2b: np.ndarray
    o_lat: np.ndarray
    o_dest: np.ndarray
    o_chan: np.ndarray
    o_pay: np.ndarray
    o_zone: np.ndarray
    o_region: np.ndarray

    @property
    def n(self) -> int:
        return len(self.o_ts)


@dataclass(frozen=True)
class Lines:
    """Order lines (``l_*``, merged per order x SKU) and the observed bracketing."""

    l_ord: np.ndarray
    l_prod: np.ndarray
    l_sku: np.ndarray
    qty: np.ndarray
    l_bracket: np.ndarray
    o_bracket: np.ndarray
    o_nlines: np.ndarray

    @property
    def n_l(self) -> int:
        return len(self.l_ord)


@dataclass(frozen=True)
class Prices:
    """Line unit prices and per-order discount, value and weight."""

    unit: np.ndarray
    d_rate: np.ndarray
    discount: np.ndarray
    value: np.ndarray
    o_weight: np.ndarray


def order_times(rng: np.random.Generator, cfg: SynthConfig, cal: Calendar) -> np.ndarray:
    """Order times in seconds since the start, ascending, following the daily volume."""
    per_day = rng.multinomial(cfg.n_orders, cal.vol / cal.vol.sum())
    o_day = np.repeat(np.arange(cfg.days), per_day)
    hour_w = np.array(HOUR_WEIGHT)
    hour = rng.choice(24, size=cfg.n_orders, p=hour_w / hour_w.sum())
    o_sec = o_day * DAY + hour * 3600 + rng.integers(0, 3600, cfg.n_orders)
    return np.sort(o_sec, kind="stable")  # days already ascending; sort within a day


def make_customers(
    rng: np.random.Generator, cfg: SynthConfig, cal: Calendar, geo: Geography
) -> Customers:
    """A pool of customers arriving over time, each with an activity weight."""
    n_pool = int(cfg.customers_per_order * cfg.n_orders) + 20
    pre = rng.random(n_pool) < 0.3
    arrive_day = np.where(
        pre,
        -rng.integers(1, 730, n_pool),
        rng.choice(cfg.days, size=n_pool, p=cal.vol / cal.vol.sum()),
    )
    arrive_day = np.sort(arrive_day)
    arrive_day[0] = min(arrive_day[0], -1)  # somebody exists on day 0
    c_b2b = rng.random(n_pool) < cfg.b2b_share
    c_w = np.exp(rng.normal(0, 1.0, n_pool)) * np.where(c_b2b, 1.5, 1.0)
    c_serial = rng.random(n_pool) < cfg.serial_share
    c_lat = np.where(c_serial, rng.normal(2.8, 0.5, n_pool), rng.normal(0.0, 0.6, n_pool))
    c_cty = rng.choice(geo.n_cty, size=n_pool, p=geo.mix)
    c_chan = rng.choice(len(CHANNELS), size=n_pool, p=CHANNEL_MIX)
    return Customers(
        n_pool=n_pool,
        arrive_day=arrive_day,
        c_b2b=c_b2b,
        c_w=c_w,
        c_serial=c_serial,
        c_lat=c_lat,
        c_cty=c_cty,
        c_chan=c_chan,
        c_arrive_sec=arrive_day * DAY + rng.integers(0, DAY, n_pool),
    )


def make_orders(
    rng: np.random.Generator,
    cfg: SynthConfig,
    cal: Calendar,
    geo: Geography,
    o_sec: np.ndarray,
    cust: Customers,
    closed: tuple[int, int] = (-1, 0),
) -> Orders:
    """Who orders when (repeat customers by activity), where to, on which channel, paying how.

    ``closed`` = (country, day): nothing is shipped there before that day (a gift to it goes
    to the buyer's own country instead).
    """
    n = cfg.n_orders
    o_day = o_sec // DAY
    c_avail = np.searchsorted(cust.arrive_day, np.arange(cfg.days), side="right")
    o_cust = prefix_sample(rng, np.cumsum(cust.c_w), c_avail[o_day])
    # first order of each customer (in the data) -> first-time buyer
    first_idx = np.unique(o_cust, return_index=True)[1]
    o_first = np.zeros(n, dtype=bool)
    o_first[first_idx] = True
    o_first &= cust.arrive_day[o_cust] >= 0  # pre-existing customers bought before the export
    o_b2b = cust.c_b2b[o_cust]
    o_dest = np.where(
        rng.random(n) < 0.02, rng.choice(geo.n_cty, size=n, p=geo.mix), cust.c_cty[o_cust]
    )
    if closed[0] >= 0:
        o_dest = np.where((o_dest == closed[0]) & (o_day < closed[1]), cust.c_cty[o_cust], o_dest)
    o_chan = np.where(
        rng.random(n) < 0.8,
        cust.c_chan[o_cust],
        rng.choice(len(CHANNELS), size=n, p=CHANNEL_MIX),
    )
    pay_p = np.broadcast_to(PAYMENT_MIX, (n, len(PAYMENTS))).copy()
    pay_p[geo.cty_is_cod[o_dest], 5] = 0.45
    pay_p[o_b2b, 4] = 1.5
    pay_p[o_b2b, 2] = 0.0
    return Orders(
        o_ts=cal.t0 + o_sec,
        o_day=o_day,
        o_new=o_day >= cal.cutoff_day,
        o_peak=cal.peak_day[o_day],
        o_cust=o_cust,
        o_first=o_first,
        o_b2b=o_b2b,
        o_lat=cust.c_lat[o_cust],
        o_dest=o_dest,
        o_chan=o_chan,
        o_pay=choice_rows(rng, pay_p),
        o_zone=geo.cty_zone[o_dest],
        o_region=geo.cty_region[o_dest],
    )


def _bracket_lines(
    rng: np.random.Generator,
    cat: Catalog,
    orders: Orders,
    l_ord: np.ndarray,
    l_prod: np.ndarray,
    l_size: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bracketing: orders adding the same product in a neighbouring size (sometimes two).

    Returns the extra lines' order, source line and size.
    """
    prod, n = cat.products, orders.n
    sized_line = prod.p_sized[l_prod]
    first_sized = pick_row(rng, l_ord, sized_line.astype(np.float64) + 1e-9, n)
    has_sized = np.zeros(n, dtype=bool)
    has_sized[l_ord[sized_line]] = True
    fs = np.where(has_sized, first_sized, 0)
    no_chart = prod.p_chart[l_prod[fs]] != 1
    br_logit = (
        -4.4
        + 0.8 * orders.o_lat
        + 0.5 * no_chart
        + 0.4 * (orders.o_chan == 0)
        + 0.8 * (orders.o_pay == 2)
        - 2.0 * orders.o_b2b
        + 0.3 * np.abs(prod.p_fit[l_prod[fs]])
    )
    brk = has_sized & (rng.random(n) < expit(br_logit))
    b_ord = np.flatnonzero(brk)
    b_src = fs[b_ord]
    n_extra = 1 + (rng.random(len(b_ord)) < 0.25)
    b_ord = np.repeat(b_ord, n_extra)
    b_src = np.repeat(b_src, n_extra)
    step = np.where(np.r_[True, b_ord[1:] != b_ord[:-1]], 1, -1)  # +1 then -1
    b_size = l_size[b_src] + step
    b_nsz = cat.p_nsz[l_prod[b_src]]
    b_size = np.where((b_size < 0) | (b_size >= b_nsz), l_size[b_src] - step, b_size)
    return b_ord, b_src, np.clip(b_size, 0, b_nsz - 1)


def _observed_bracketing(
    cat: Catalog, n: int, l_ord: np.ndarray, l_prod: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bracketing as observed: one product in 2+ sizes within an order (per line, per order)."""
    pk = l_ord * cat.products.n_prod + l_prod
    sized_l = cat.products.p_sized[l_prod]
    pk_s = pk[sized_l]
    upk, cnt = np.unique(pk_s, return_counts=True)
    l_bracket = np.zeros(len(l_ord), dtype=bool)
    l_bracket[sized_l] = np.isin(pk_s, upk[cnt >= 2])
    o_bracket = np.zeros(n, dtype=bool)
    o_bracket[l_ord[l_bracket]] = True
    return l_bracket, o_bracket


def make_lines(rng: np.random.Generator, cat: Catalog, orders: Orders) -> Lines:
    """Basket lines by popularity among launched products, bracketing, quantities, merged."""
    n = orders.n
    n_lines = 1 + np.where(orders.o_b2b, rng.poisson(1.5, n), rng.poisson(0.4, n))
    l_ord = np.repeat(np.arange(n), n_lines)
    l_prod = prefix_sample(rng, cat.pop_cum, cat.p_avail[orders.o_day[l_ord]])
    l_col = rng.integers(0, 1 << 30, len(l_ord)) % cat.p_ncol[l_prod]
    nsz = cat.p_nsz[l_prod]
    l_size = np.clip(np.round(rng.normal((nsz - 1) / 2, nsz / 4.5)), 0, nsz - 1).astype(np.int64)
    b_ord, b_src, b_size = _bracket_lines(rng, cat, orders, l_ord, l_prod, l_size)
    l_ord = np.r_[l_ord, b_ord]
    l_prod = np.r_[l_prod, l_prod[b_src]]
    l_col = np.r_[l_col, l_col[b_src]]
    l_size = np.r_[l_size, b_size]
    qty = np.where(
        orders.o_b2b[l_ord],
        1 + rng.poisson(3.0, len(l_ord)),
        1 + (rng.random(len(l_ord)) < 0.1) + (rng.random(len(l_ord)) < 0.03),
    )
    qty[len(qty) - len(b_ord) :] = 1
    l_sku = cat.p_sku0[l_prod] + l_col * cat.p_nsz[l_prod] + l_size
    # merge duplicate (order, sku) lines
    key = l_ord.astype(np.int64) * cat.n_sku + l_sku
    ukey, inv = np.unique(key, return_inverse=True)
    qty = np.bincount(inv, weights=qty).astype(np.int64)
    l_ord = ukey // cat.n_sku
    l_sku = ukey % cat.n_sku
    l_prod = cat.s_prod[l_sku]
    l_bracket, o_bracket = _observed_bracketing(cat, n, l_ord, l_prod)
    return Lines(
        l_ord=l_ord,
        l_prod=l_prod,
        l_sku=l_sku,
        qty=qty,
        l_bracket=l_bracket,
        o_bracket=o_bracket,
        o_nlines=np.bincount(l_ord, minlength=n),
    )


def make_prices(rng: np.random.Generator, cat: Catalog, orders: Orders, lines: Lines) -> Prices:
    """Channel prices per line; discounts (deeper at peak, by channel); order value, weight."""
    n, lo = orders.n, lines.l_ord
    unit = np.round(cat.products.p_price[lines.l_prod] * CHANNEL_PRICE[orders.o_chan[lo]], 2)
    gross = np.round(np.bincount(lo, weights=unit * lines.qty, minlength=n), 2)
    disc_logit = -0.9 + 1.3 * orders.o_peak + CHANNEL_DISCOUNT[orders.o_chan]
    has_disc = rng.random(n) < expit(disc_logit)
    d_rate = np.where(has_disc, rng.choice(DISCOUNT_RATES, size=n, p=DISCOUNT_P), 0.0)
    discount = np.round(gross * d_rate, 2)
    weight = cat.products.p_weight[lines.l_prod] * lines.qty
    return Prices(
        unit=unit,
        d_rate=d_rate,
        discount=discount,
        value=np.round(gross - discount, 2),
        o_weight=np.bincount(lo, weights=weight, minlength=n),
    )
