"""Stage "risk model": per-cause probabilities within the label window, and the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from returnrisk.synth.catalog import Catalog, category_arrays
from returnrisk.synth.demand import Lines, Orders, Prices
from returnrisk.synth.logistics import Carriage, Charges, Transit, carrier_column
from returnrisk.synth.setting import Calendar, Geography
from returnrisk.synth.shift import Shift
from returnrisk.synth.static import CHANNEL_NR, CHANNEL_RETURN
from returnrisk.synth.util import group_any_prob

CLAIM_LOST = 0.88  # share of lost parcels the buyer claims
REFUSE_SHARE = 0.5  # share of duty disputes where the parcel is refused


@dataclass(frozen=True)
class LineRisks:
    """Per line: probabilities of a return, a not-as-described and a damage case."""

    ret_l: np.ndarray
    nad_l: np.ndarray
    dmg_l: np.ndarray
    q_mean: np.ndarray  # per order: mean hidden quality problem of its lines


@dataclass(frozen=True)
class Risks:
    """Per order: the probability of each cause (given delivery where it needs one)."""

    lines: LineRisks
    p_br: np.ndarray  # a bracketing order returns one size
    p_return: np.ndarray
    p_nad: np.ndarray
    p_dmg: np.ndarray
    p_wrong: np.ndarray
    p_refund: np.ndarray
    p_misc: np.ndarray
    q_late: np.ndarray  # "not received" claimed on a late parcel
    q_fraud: np.ndarray  # ... on a delivered, on-time parcel
    p_nr_nl: np.ndarray  # "not received" on a parcel not lost
    p_duty: np.ndarray
    p_cod: np.ndarray  # cash-on-delivery parcel refused
    refuse: float | np.ndarray  # share of duty disputes where the parcel is refused


def line_risks(
    cal: Calendar,
    geo: Geography,
    cat: Catalog,
    orders: Orders,
    lines: Lines,
    prices: Prices,
    car: Carriage,
    shift: Shift,
) -> LineRisks:
    """Return, not-as-described and damage log-odds of every line."""
    prod, ca, lo, l_prod = cat.products, category_arrays(), lines.l_ord, lines.l_prod
    cat_l = prod.p_cat[l_prod]
    lang_mis = (prod.p_lang[l_prod] & geo.cty_lang[orders.o_dest[lo]]) == 0
    fit_term = np.where(
        prod.p_sized[l_prod],
        0.3 + 0.6 * np.abs(prod.p_fit[l_prod]) * np.where(prod.p_chart[l_prod] == 1, 0.45, 1.0),
        0.0,
    )
    rel_price = np.log(prices.unit / ca["price"][cat_l])
    age = orders.o_day[lo] - cat.p_bad_from[l_prod]
    q_l = cat.s_q[lines.l_sku] + 1.8 * (cat.p_bad[l_prod] & (age >= 0) & (age < 60))
    m_l = cat.s_m[lines.l_sku]
    if shift.quality is not None:
        q_l = q_l + shift.quality
    if shift.mismatch is not None:
        m_l = m_l + shift.mismatch
    o_lat, o_chan, o_first = orders.o_lat[lo], orders.o_chan[lo], orders.o_first[lo]
    ret_l = expit(
        ca["ret"][cat_l]
        - 1.0
        + fit_term
        + 0.35 * lang_mis
        + 1.0 * o_lat
        + CHANNEL_RETURN[o_chan]
        + 0.35 * (orders.o_pay[lo] == 2)
        + 1.2 * prices.d_rate[lo]
        + 0.25 * rel_price
        - 0.9 * orders.o_b2b[lo]
        + 0.25 * o_first
        + 0.3 * cal.gift_day[orders.o_day[lo]]
        + 0.35 * q_l
    )
    nad_l = expit(
        -5.4
        + 0.9 * m_l
        + 0.4 * q_l
        + 0.6 * lang_mis
        + 0.45 * o_lat
        + 0.3 * (o_chan == 2)
        + 0.15 * rel_price
        + 0.2 * o_first
    )
    dmg_l = expit(
        -6.4
        + ca["fragile"][cat_l]
        + carrier_column(5)[car.o_car[lo]]
        + 0.3 * (orders.o_zone[lo] - 2)
        + 0.35 * orders.o_peak[lo]
        + 0.3 * q_l
        + 0.2 * np.log(prod.p_weight[l_prod] * lines.qty / 500)
    )
    q_mean = np.bincount(lo, weights=q_l, minlength=orders.n) / lines.o_nlines
    return LineRisks(ret_l=ret_l, nad_l=nad_l, dmg_l=dmg_l, q_mean=q_mean)


def order_risks(
    orders: Orders,
    lines: Lines,
    prices: Prices,
    car: Carriage,
    transit: Transit,
    charges: Charges,
    lr: LineRisks,
    shift: Shift,
) -> Risks:
    """Combine line risks per order and add the order-level causes."""
    n, lo, o_lat, o_pay, o_chan = orders.n, lines.l_ord, orders.o_lat, orders.o_pay, orders.o_chan
    p_br = np.where(lines.o_bracket, expit(0.5 + 0.4 * o_lat), 0.0)
    p_late = transit.p_late
    q_late = expit(-2.0 + 0.6 * o_lat + 0.4 * (o_pay == 1) + CHANNEL_NR[o_chan])
    tracked = carrier_column(3)[car.o_car]
    q_fraud = expit(-7.2 + 1.1 * o_lat + 1.9 * ~tracked + 0.4 * (o_pay == 1) + CHANNEL_NR[o_chan])
    excess = np.maximum(prices.value - charges.o_dm, 0)
    duty_logit = (
        -1.9 + 0.5 * np.log1p(excess / 40) - 1.5 * orders.o_b2b + 0.5 * o_lat + 0.3 * orders.o_first
    )
    return Risks(
        lines=lr,
        p_br=p_br,
        p_return=1 - (1 - group_any_prob(lo, lr.ret_l, n)) * (1 - p_br),
        p_nad=group_any_prob(lo, lr.nad_l, n),
        p_dmg=group_any_prob(lo, lr.dmg_l, n),
        p_wrong=expit(-6.0 + 0.3 * (lines.o_nlines - 1) + 0.7 * orders.o_peak),
        p_refund=expit(-5.6 + 0.4 * o_lat + 1.5 * p_late + 0.25 * lr.q_mean),
        p_misc=expit(-6.3 + 0.4 * o_lat),
        q_late=q_late,
        q_fraud=q_fraud,
        p_nr_nl=p_late * q_late + (1 - p_late) * q_fraud,
        p_duty=np.where(charges.ddu & charges.above, expit(duty_logit), expit(-7.5 + 0.3 * o_lat)),
        p_cod=np.where(o_pay == 5, expit(-2.6 + 0.5 * o_lat + 0.5 * orders.o_first), 0.0),
        refuse=REFUSE_SHARE if shift.refuse is None else shift.refuse,
    )


def make_truth(r: Risks, transit: Transit) -> pd.DataFrame:
    """Per order: P(at least one case within the window) and its per-cause components."""
    p_lost = transit.p_lost
    item_none = (1 - r.p_return) * (1 - r.p_nad) * (1 - r.p_dmg) * (1 - r.p_wrong)
    item_none = item_none * (1 - r.p_refund)
    p_none = p_lost * (1 - CLAIM_LOST) * (1 - r.p_misc) + (1 - p_lost) * (1 - r.p_nr_nl) * (
        1 - r.p_duty
    ) * (1 - r.p_cod) * item_none * (1 - r.p_misc)
    deliv = (1 - p_lost) * (1 - r.refuse * r.p_duty) * (1 - r.p_cod)
    return pd.DataFrame(
        {
            "order_id": None,  # filled when the tables are assembled
            "p_case": 1 - p_none,
            "p_return": deliv * r.p_return,
            "p_not_as_described": deliv * r.p_nad,
            "p_damaged": deliv * r.p_dmg,
            "p_wrong_item": deliv * r.p_wrong,
            "p_refund": deliv * r.p_refund,
            "p_not_received": p_lost * CLAIM_LOST + (1 - p_lost) * r.p_nr_nl,
            "p_duty_dispute": (1 - p_lost) * r.p_duty,
            "p_other": 1 - (1 - r.p_misc) * (1 - (1 - p_lost) * r.p_cod),
            "p_lost": p_lost,
            "p_late": transit.p_late,
        }
    )
