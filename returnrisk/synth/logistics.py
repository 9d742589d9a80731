"""Stage "shipping": service level and carrier per order, transit, loss, fees and duties."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtr

from returnrisk.synth.demand import Orders, Prices
from returnrisk.synth.setting import Duties, Geography, in_force
from returnrisk.synth.shift import Shift
from returnrisk.synth.static import CARRIERS, LEVEL_DAYS, LEVEL_SIGMA, LEVELS, ZONE_FACTOR
from returnrisk.synth.util import choice_rows


@dataclass(frozen=True)
class Carriage:
    """The chosen service level and carrier per order, and the hidden lane quality."""

    o_lvl: np.ndarray
    o_car: np.ndarray
    lane: np.ndarray  # hidden carrier x region quality (log-odds of loss)


@dataclass(frozen=True)
class Transit:
    """Per order: promise, transit distribution, lateness and loss risk."""

    promised: np.ndarray  # days
    med_transit: np.ndarray  # days
    sigma: np.ndarray
    late_thr: np.ndarray
    p_late: np.ndarray
    p_lost: np.ndarray
    zf: np.ndarray  # zone factor


@dataclass(frozen=True)
class Charges:
    """Per order: shipping fee, effective incoterm and the duty position."""

    fee: np.ndarray
    ddu: np.ndarray  # effective incoterm is DDU
    incoterm_null: np.ndarray  # the order does not say (the country default applies)
    o_dm: np.ndarray  # de-minimis in force
    above: np.ndarray  # order value above it


def carrier_column(k: int) -> np.ndarray:
    """Column ``k`` of ``CARRIERS`` as an array indexed by carrier number."""
    return np.array([c[k] for c in CARRIERS])


def choose_carriage(
    rng: np.random.Generator, geo: Geography, orders: Orders, prices: Prices
) -> Carriage:
    """Service level by value (b2b buys express), then a carrier by the region's preference."""
    n, value = orders.n, prices.value
    lvl_p = np.empty((n, 3))
    lvl_p[:, 2] = expit(-2.7 + 0.7 * np.log(np.maximum(value, 1) / 40) + 1.6 * orders.o_b2b)
    lvl_p[:, 1] = (1 - lvl_p[:, 2]) * expit(-0.2 + 0.5 * np.log(np.maximum(value, 1) / 30))
    lvl_p[:, 0] = 1 - lvl_p[:, 1] - lvl_p[:, 2]
    o_lvl = choice_rows(rng, lvl_p)
    car_lvl = np.array([LEVELS.index(c[2]) for c in CARRIERS])
    n_car = len(CARRIERS)
    # each region has its preferred carriers within a service level
    reg_pref = rng.dirichlet(np.ones(n_car), size=len(geo.regions))
    same_lvl = car_lvl[None, :] == o_lvl[:, None]
    car_p = reg_pref[orders.o_region] * same_lvl
    # untracked economy is not offered above 30 EUR
    car_p[:, 0] *= np.where(value > 30, 0.05, 1.0)
    o_car = choice_rows(rng, car_p + 1e-12 * same_lvl)
    lane = rng.normal(0, 0.45, (n_car, len(geo.regions)))
    return Carriage(o_lvl=o_lvl, o_car=o_car, lane=lane)


def make_transit(days: int, orders: Orders, car: Carriage, shift: Shift) -> Transit:
    """Transit time (log-normal around the level's median), lateness and loss per order."""
    o_car, o_zone, o_peak, o_lvl = car.o_car, orders.o_zone, orders.o_peak, car.o_lvl
    car_long = carrier_column(7)
    # a mid-period deterioration: one standard carrier's long lanes break down
    event = (o_car == 5) & (o_zone == 3) & (orders.o_day >= int(days * 0.55))
    zf = np.array([ZONE_FACTOR.get(z, 1.0) for z in range(4)])[o_zone]
    promised = np.ceil(LEVEL_DAYS[o_lvl] * zf * 1.9).astype(np.int64)
    med_transit = (
        LEVEL_DAYS[o_lvl]
        * zf
        * carrier_column(6)[o_car]
        * (1 + 0.35 * o_peak)
        * np.where(o_zone == 3, 1 + 0.2 * car_long[o_car], 1.0)
        * np.where(event, 1.35, 1.0)
    )
    if shift.transit is not None:
        med_transit = med_transit * shift.transit
    sigma = LEVEL_SIGMA[o_lvl]
    late_thr = np.maximum(promised - 1.5, 1.0)
    p_late = 1 - ndtr((np.log(late_thr) - np.log(med_transit)) / sigma)
    loss_logit = (
        carrier_column(4)[o_car]
        - 0.25
        + car.lane[o_car, orders.o_region]
        + 0.45 * (o_zone - 2)
        + car_long[o_car] * (o_zone == 3)
        + 0.7 * o_peak
        + 1.3 * event
    )
    if shift.loss is not None:
        loss_logit = loss_logit + shift.loss
    return Transit(
        promised=promised,
        med_transit=med_transit,
        sigma=sigma,
        late_thr=late_thr,
        p_late=p_late,
        p_lost=expit(loss_logit),
        zf=zf,
    )


def make_charges(
    rng: np.random.Generator,
    geo: Geography,
    orders: Orders,
    prices: Prices,
    car: Carriage,
    transit: Transit,
    duties: Duties,
) -> Charges:
    """Shipping fee (often free), the effective incoterm and the de-minimis position, under the
    duty rule in force at each order's time (``duties``: the world's, scenario included)."""
    n, value, o_lvl, o_dest = orders.n, prices.value, car.o_lvl, orders.o_dest
    free = (value >= 25) & (o_lvl < 2) & (rng.random(n) < 0.6)
    fee = np.round(
        np.array([3.5, 6.0, 14.0])[o_lvl] * transit.zf + 0.004 * prices.o_weight * (o_lvl + 1) / 2,
        2,
    )
    o_dm, default_ddu = in_force(geo, duties, o_dest, orders.o_ts)
    ddu = np.where(rng.random(n) < 0.82, default_ddu, ~default_ddu)
    ddu = np.where((orders.o_chan == 0) & ~default_ddu, False, ddu)  # marketplace collects
    incoterm_null = rng.random(n) < 0.07
    return Charges(
        fee=np.where(free, 0.0, fee),
        ddu=np.where(incoterm_null, default_ddu, ddu),
        incoterm_null=incoterm_null,
        o_dm=o_dm,
        above=value > o_dm,
    )
