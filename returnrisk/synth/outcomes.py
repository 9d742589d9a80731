"""Stage "outcomes": what happens to each order, and the after-sales cases it opens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtri

from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.synth.config import DAY
from returnrisk.synth.demand import Lines, Orders, Prices
from returnrisk.synth.logistics import Charges, Transit
from returnrisk.synth.risk import CLAIM_LOST, Risks
from returnrisk.synth.util import pick_row

LATE_KINDS = ("refund", "not_as_described", "other", "duty_dispute")


@dataclass(frozen=True)
class Events:
    """Per order: the drawn fate of the parcel, and which causes strike."""

    shipped: np.ndarray  # epoch seconds (float)
    arrive: np.ndarray
    transit_days: np.ndarray
    late: np.ndarray
    lost: np.ndarray
    nr: np.ndarray  # a "not received" claim
    duty_case: np.ndarray
    duty_refused: np.ndarray
    cod_refused: np.ndarray
    delivered: np.ndarray
    misc: np.ndarray
    ret: np.ndarray
    nad: np.ndarray
    dmg: np.ndarray
    wrong: np.ndarray
    refund: np.ndarray
    ret_line: np.ndarray  # per order: the line a return would be about
    nad_line: np.ndarray
    dmg_line: np.ndarray
    wrong_line: np.ndarray


@dataclass(frozen=True)
class Cases:
    """Exported cases in opening order: order, type, opened (s), line (-1: unknown), amount."""

    c_ord: np.ndarray
    c_kind: np.ndarray
    c_open: np.ndarray
    c_line: np.ndarray
    c_amt: np.ndarray


@dataclass(frozen=True)
class _Spec:
    kind: str
    orders: np.ndarray
    opened: np.ndarray
    line: np.ndarray | None
    amount: np.ndarray


def draw_events(
    rng: np.random.Generator, orders: Orders, lines: Lines, transit: Transit, r: Risks
) -> Events:
    """Handling and transit times, loss, claims, duty and COD refusals, item-level causes."""
    n, lo = orders.n, lines.l_ord
    handling = np.exp(rng.normal(np.log(0.9 + 0.7 * orders.o_peak), 0.5)) * DAY
    shipped = orders.o_ts + handling
    u_t = rng.random(n)
    transit_days = transit.med_transit * np.exp(transit.sigma * ndtri(np.clip(u_t, 1e-9, 1 - 1e-9)))
    late = transit_days > transit.late_thr
    lost = rng.random(n) < transit.p_lost
    nr = np.where(
        lost,
        rng.random(n) < CLAIM_LOST,
        rng.random(n) < np.where(late, r.q_late, r.q_fraud),
    )
    duty_case = ~lost & (rng.random(n) < r.p_duty)
    duty_refused = duty_case & (rng.random(n) < r.refuse)
    cod_refused = ~lost & (rng.random(n) < r.p_cod)
    delivered = ~lost & ~duty_refused & ~cod_refused
    misc = rng.random(n) < r.p_misc
    # item-level causes happen only to delivered parcels; choose the line they are about
    u = [rng.random(n) < p for p in (r.p_return, r.p_nad, r.p_dmg, r.p_wrong, r.p_refund)]
    ret_w = r.lines.ret_l + 3.0 * lines.l_bracket * r.p_br[lo]
    return Events(
        shipped=shipped,
        arrive=shipped + transit_days * DAY,
        transit_days=transit_days,
        late=late,
        lost=lost,
        nr=nr,
        duty_case=duty_case,
        duty_refused=duty_refused,
        cod_refused=cod_refused,
        delivered=delivered,
        misc=misc,
        ret=delivered & u[0],
        nad=delivered & u[1],
        dmg=delivered & u[2],
        wrong=delivered & u[3],
        refund=delivered & u[4],
        ret_line=pick_row(rng, lo, ret_w, n),
        nad_line=pick_row(rng, lo, r.lines.nad_l, n),
        dmg_line=pick_row(rng, lo, r.lines.dmg_l, n),
        wrong_line=pick_row(rng, lo, np.ones(lines.n_l), n),
    )


class _Opener:
    """Opening times of cases: after ``base`` by a delay, inside the label window."""

    def __init__(self, rng: np.random.Generator, o_ts: np.ndarray) -> None:
        self.rng, self.o_ts = rng, o_ts
        self.window_end = o_ts + LABEL_WINDOW_DAYS * DAY - 1

    def __call__(self, mask: np.ndarray, base: np.ndarray, delay_days: np.ndarray) -> np.ndarray:
        t = base[mask] + delay_days[mask] * DAY
        t = np.minimum(t, self.window_end[mask] - self.rng.random(mask.sum()) * DAY)
        return np.maximum(t, self.o_ts[mask] + 60)


def _order_case_specs(
    rng: np.random.Generator,
    orders: Orders,
    prices: Prices,
    transit: Transit,
    charges: Charges,
    ev: Events,
    opened: _Opener,
) -> list[_Spec]:
    """Cases about the whole order: not received, duty disputes, refused COD, other."""
    n, o_ts, value, fee = orders.n, orders.o_ts, prices.value, charges.fee
    prom_s = transit.promised * DAY
    specs = []
    m = ev.nr & ev.lost
    t = opened(m, o_ts + prom_s, rng.exponential(6, n))
    specs.append(_Spec("not_received", np.flatnonzero(m), t, None, value[m] + fee[m]))
    m = ev.nr & ~ev.lost & ev.late
    t = opened(m, o_ts + prom_s, rng.exponential(3, n))
    specs.append(_Spec("not_received", np.flatnonzero(m), t, None, value[m] + fee[m]))
    m = ev.nr & ~ev.lost & ~ev.late
    t = opened(m, ev.arrive, rng.uniform(1, 12, n))
    specs.append(_Spec("not_received", np.flatnonzero(m), t, None, value[m] + fee[m]))
    m = ev.duty_case
    at_customs = ev.shipped + 0.85 * ev.transit_days * DAY
    duty_amt = np.where(ev.duty_refused, value + fee + 15.0, np.round(0.18 * value + 12.0, 2))
    t = opened(m, at_customs, rng.exponential(3, n))
    specs.append(_Spec("duty_dispute", np.flatnonzero(m), t, None, duty_amt[m]))
    m = ev.cod_refused
    t = opened(m, ev.arrive, rng.uniform(0, 2, n))
    specs.append(_Spec("other", np.flatnonzero(m), t, None, fee[m] + 12.0))
    m = ev.misc
    t = opened(m, o_ts, rng.uniform(0.2, 80, n))
    specs.append(_Spec("other", np.flatnonzero(m), t, None, np.round(rng.uniform(0, 20, n), 2)[m]))
    return specs


def _line_case_specs(
    rng: np.random.Generator,
    orders: Orders,
    lines: Lines,
    prices: Prices,
    ev: Events,
    opened: _Opener,
) -> list[_Spec]:
    """Cases about one line (the line drawn by its risk), and refunds."""
    n, lo, gamma = orders.n, lines.l_ord, rng.gamma
    line_value = prices.unit * lines.qty * (1 - prices.d_rate[lo])
    specs = []
    for kind, mk, line, delay, frac in (
        ("return", ev.ret, ev.ret_line, gamma(2.0, 3.5, n), np.ones(n)),
        ("not_as_described", ev.nad, ev.nad_line, gamma(1.5, 3.0, n), rng.uniform(0.4, 1.0, n)),
        ("damaged", ev.dmg, ev.dmg_line, rng.exponential(1.5, n), np.ones(n)),
        ("wrong_item", ev.wrong, ev.wrong_line, rng.exponential(2.0, n), np.ones(n)),
    ):
        amt = line_value[line[mk]] * frac[mk] + (6.0 if kind == "return" else 0.0)
        specs.append(_Spec(kind, np.flatnonzero(mk), opened(mk, ev.arrive, delay), line[mk], amt))
    m = ev.refund
    t = opened(m, ev.arrive, gamma(2.0, 6.0, n))
    amt = prices.value[m] * rng.uniform(0.1, 0.4, n)[m]
    specs.append(_Spec("refund", np.flatnonzero(m), t, None, amt))
    return specs


def _late_case_specs(
    rng: np.random.Generator, orders: Orders, prices: Prices, r: Risks
) -> list[_Spec]:
    """Cases outside the label window: defects found late, late duty bills."""
    n, value = orders.n, prices.value
    late_case = rng.random(n) < expit(-5.0 + 0.5 * r.lines.q_mean + 0.3 * orders.o_lat)
    late_kind = rng.choice(np.array(LATE_KINDS, dtype=object), size=n, p=[0.4, 0.3, 0.2, 0.1])
    late_open = orders.o_ts + (LABEL_WINDOW_DAYS + rng.uniform(0.05, 150, n)) * DAY
    specs = []
    for kind in LATE_KINDS:
        m = late_case & (late_kind == kind)
        amt = value[m] * rng.uniform(0.2, 1.0, n)[m]
        specs.append(_Spec(kind, np.flatnonzero(m), late_open[m], None, amt))
    return specs


def _collect(rng: np.random.Generator, specs: list[_Spec], keep_order: np.ndarray, t_end: int):
    """Concatenate the specs; drop cases of new orders and after the export; sort by opening."""
    c_ord = np.concatenate([s.orders for s in specs])
    c_kind = np.concatenate([np.full(len(s.orders), s.kind, dtype=object) for s in specs])
    c_open = np.floor(np.concatenate([s.opened for s in specs])).astype(np.int64)
    c_line = np.concatenate(
        [s.line if s.line is not None else np.full(len(s.orders), -1) for s in specs]
    )
    c_amt = np.round(np.concatenate([np.asarray(s.amount, dtype=np.float64) for s in specs]), 2)
    # the seller does not always know which line a case is about
    c_line = np.where(rng.random(len(c_line)) < 0.1, -1, c_line)
    keep = keep_order[c_ord] & (c_open < t_end)
    c_ord, c_kind, c_open, c_line, c_amt = (
        c_ord[keep], c_kind[keep], c_open[keep], c_line[keep], c_amt[keep]
    )  # fmt: skip
    corder = np.lexsort((c_kind, c_ord, c_open))  # case ids in opening order
    return Cases(
        c_ord=c_ord[corder],
        c_kind=c_kind[corder],
        c_open=c_open[corder],
        c_line=c_line[corder],
        c_amt=c_amt[corder],
    )


def make_cases(
    rng: np.random.Generator,
    t_end: int,
    orders: Orders,
    lines: Lines,
    prices: Prices,
    transit: Transit,
    charges: Charges,
    r: Risks,
    ev: Events,
) -> Cases:
    """Every case the events open, with its opening time and amount; the exported ones."""
    opened = _Opener(rng, orders.o_ts)
    specs = _order_case_specs(rng, orders, prices, transit, charges, ev, opened)
    specs += _line_case_specs(rng, orders, lines, prices, ev, opened)
    specs += _late_case_specs(rng, orders, prices, r)
    return _collect(rng, specs, ~orders.o_new, t_end)
