"""The generator's own truth for actions: P(case) of an order shipped another way.

For an order, the true probability of a case (and per case-type family) if it were shipped
DDP, or with another carrier service, keeping every hidden variable (customer, items, quality,
lane quality, scenario) and every cause the same: the stages ``make_transit``, ``line_risks``,
``order_risks`` and ``make_truth`` recomputed with the changed carriage or incoterm. Nothing
here draws from the world's generator, so the world itself is unchanged.

The candidate carriers of an order are the services seen shipping to its destination in the
history (the ones a seller could switch to, with that lane's history), other than its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from returnrisk.synth.catalog import Catalog
from returnrisk.synth.demand import Lines, Orders, Prices
from returnrisk.synth.logistics import Carriage, Charges, make_transit
from returnrisk.synth.risk import line_risks, make_truth, order_risks
from returnrisk.synth.scenarios import LANE_COLLAPSE_LOSS, LANE_COLLAPSE_TRANSIT
from returnrisk.synth.setting import Calendar, Geography
from returnrisk.synth.shift import Shift
from returnrisk.synth.static import CARRIERS, LEVELS

# family -> truth columns whose union is the family (P of at least one case of the family)
FAMILY_CAUSES = {
    "logistics": ("p_not_received", "p_damaged"),
    "duties": ("p_duty_dispute",),
    "product": ("p_not_as_described", "p_wrong_item"),
    "return_refund": ("p_return", "p_refund"),
    "other": ("p_other",),
}
CARRIER_IDS = np.array([c[0] for c in CARRIERS], dtype=object)
CARRIER_LEVEL = np.array([LEVELS.index(c[2]) for c in CARRIERS])


@dataclass(frozen=True)
class Stages:
    """What the truth of an order depends on: the world's stages up to the charges."""

    days: int
    cal: Calendar
    geo: Geography
    cat: Catalog
    orders: Orders
    lines: Lines
    prices: Prices
    car: Carriage
    shift: Shift
    charges: Charges
    scenario_day: int


def family_truth(truth: pd.DataFrame) -> pd.DataFrame:
    """Per family: P(at least one case of the family) from a truth frame's causes.

    The causes are not exclusive, so the families need not add up to ``p_case``.
    """
    out = {}
    for fam, cols in FAMILY_CAUSES.items():
        none = np.ones(len(truth))
        for c in cols:
            none = none * (1 - truth[c].to_numpy())
        out[f"p_{fam}"] = 1 - none
    return pd.DataFrame(out, index=truth.index)


def _shift_for(st: Stages, car: Carriage) -> Shift:
    """The scenario's change for orders shipped with ``car``: a collapsed lane follows the
    carrier, every other change stays with the order."""
    sh = st.shift
    info = sh.info
    if "carrier_id" not in info or "countries" not in info:
        return sh
    c = [cid for cid, *_ in CARRIERS].index(info["carrier_id"])
    lanes = np.flatnonzero(np.isin(st.geo.cc, info["countries"]))
    hit = (car.o_car == c) & np.isin(st.orders.o_dest, lanes) & (st.orders.o_day >= st.scenario_day)
    return replace(
        sh,
        loss=np.where(hit, LANE_COLLAPSE_LOSS, 0.0),
        transit=np.where(hit, LANE_COLLAPSE_TRANSIT, 1.0),
    )


def truth_under(st: Stages, car: Carriage, charges: Charges) -> pd.DataFrame:
    """``make_truth``'s frame for every order shipped with ``car`` and ``charges``."""
    shift = _shift_for(st, car) if car is not st.car else st.shift
    transit = make_transit(st.days, st.orders, car, shift)
    lr = line_risks(st.cal, st.geo, st.cat, st.orders, st.lines, st.prices, car, shift)
    risks = order_risks(st.orders, st.lines, st.prices, car, transit, charges, lr, shift)
    return make_truth(risks, transit)


def _rows(truth: pd.DataFrame, idx: np.ndarray, order_ids: pd.Series, action: str, car: np.ndarray):
    fam = family_truth(truth.iloc[idx])
    return pd.DataFrame(
        {
            "order_id": order_ids.to_numpy()[idx],
            "action": action,
            "carrier_id": CARRIER_IDS[car[idx]],
            "p_case_true": truth["p_case"].to_numpy()[idx],
            **{c: fam[c].to_numpy() for c in fam.columns},
        }
    )


def action_truth(st: Stages, order_ids: pd.Series, mask: np.ndarray) -> pd.DataFrame:
    """Per order in ``mask``: one row per action the generator can replay, with its truth.

    Rows: ``ship`` (as it is), ``ship_ddp`` (incoterm DDP: no duties due on arrival) and one
    ``switch_carrier`` row per other service seen shipping to the destination in the history
    (the service's own level, transit and loss, the order's own lane). Sorted by order, then
    action, then carrier.
    """
    o, car = st.orders, st.car
    idx = np.flatnonzero(mask)
    parts = [_rows(truth_under(st, car, st.charges), idx, order_ids, "ship", car.o_car)]
    ddp = replace(st.charges, ddu=np.zeros(o.n, dtype=bool))
    parts.append(_rows(truth_under(st, car, ddp), idx, order_ids, "ship_ddp", car.o_car))
    hist = ~o.o_new
    seen = np.zeros((st.geo.n_cty, len(CARRIERS)), dtype=bool)
    seen[o.o_dest[hist], car.o_car[hist]] = True
    for k in range(len(CARRIERS)):  # a handful of services, vectorised over orders
        take = idx[seen[o.o_dest[idx], k] & (car.o_car[idx] != k)]
        if len(take) == 0:
            continue
        o_car = np.full(o.n, k)
        alt = replace(car, o_car=o_car, o_lvl=np.full(o.n, CARRIER_LEVEL[k]))
        parts.append(
            _rows(truth_under(st, alt, st.charges), take, order_ids, "switch_carrier", o_car)
        )
    out = pd.concat(parts, ignore_index=True)
    rank = out["action"].map({"ship": 0, "ship_ddp": 1, "switch_carrier": 2})
    order = np.lexsort(
        (out["carrier_id"].to_numpy(dtype=str), rank, out["order_id"].to_numpy(dtype=str))
    )
    out = out.iloc[order].reset_index(drop=True)
    for c in ("order_id", "action", "carrier_id"):
        out[c] = out[c].astype("str")
    return out
