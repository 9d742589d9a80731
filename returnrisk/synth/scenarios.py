"""Scenarios: documented changes of the generator's hidden causes from a start day.

``stationary`` changes nothing. Every other scenario chooses what it affects (a carrier and
lanes, a country, a supplier) deterministically from the seed, with its own generator, so the
world's own draws are untouched: up to the risk model, a scenario world has the same orders,
baskets, prices and carriers as the stationary one, except what the scenario itself moves
(outcomes differ, as their draws follow the changed risks). Choices weighted by volume count
the history orders before the start day, so the change hits a slice that has a past to
compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.errors import ReturnriskError
from returnrisk.synth.catalog import Catalog
from returnrisk.synth.config import SynthConfig
from returnrisk.synth.demand import Customers, Lines, Orders, Prices
from returnrisk.synth.logistics import Carriage
from returnrisk.synth.risk import REFUSE_SHARE
from returnrisk.synth.setting import Duties, Geography, duties_of, in_force
from returnrisk.synth.shift import Shift
from returnrisk.synth.static import CARRIERS, COUNTRY_MIX

SCENARIO_STREAM = 0x5CE7A210  # second word of the scenario generator's seed

LANE_CARRIERS = tuple(  # tracked economy and standard services: the ones whose lanes collapse
    i for i, c in enumerate(CARRIERS) if c[3] and c[2] in ("economy", "standard")
)
LANE_COLLAPSE_LOSS = 3.0  # added log-odds of loss on the collapsed lanes
LANE_COLLAPSE_TRANSIT = 1.3  # factor on the median transit there
LANE_COUNT, LANE_POOL = 3, 8  # lanes drawn among the carrier's busiest destinations
DE_MINIMIS_REFUSE = 0.8  # share of duty disputes refused once the de minimis is gone
DE_MINIMIS_MARKET_SHARE = 0.03  # markets with at least this share of the orders are eligible
DE_MINIMIS_SOURCE = "synthetic: scenario de_minimis_drop (returnrisk synth)"
NEW_MARKET_SHARE = 0.3  # of customers arriving from the start day on
NEW_MARKET_LOSS = 2.5  # unproven lanes to the new market
NEW_MARKET_TRANSIT = 1.4
QUALITY_DROP_Q = 2.5  # added hidden quality problem of the supplier's goods
QUALITY_DROP_M = 1.5  # added description mismatch (the goods no longer match the listing)


class ScenarioError(ReturnriskError, ValueError):
    """A scenario cannot be set up in this world (e.g. no orders before its start)."""


@dataclass(frozen=True)
class Plan:
    """A scenario, its start day, its generator and what it chose so far."""

    name: str
    day: int
    rng: np.random.Generator
    start: pd.Timestamp  # the first instant of ``day`` (UTC)
    info: dict[str, Any] = field(default_factory=dict)
    market: int = -1  # new_market: the country index that opens on ``day``

    @property
    def stationary(self) -> bool:
        return self.name == "stationary"


def make_plan(cfg: SynthConfig, geo: Geography) -> Plan:
    """The scenario of ``cfg``; ``new_market`` chooses its country here (before customers)."""
    rng = np.random.default_rng([cfg.seed, SCENARIO_STREAM])
    first = cfg.start + timedelta(days=cfg.scenario_day)
    at, start = pd.Timestamp(first, tz="UTC").as_unit("ns"), first.isoformat()
    info: dict[str, Any] = {"scenario": cfg.scenario, "start": start, "day": cfg.scenario_day}
    if cfg.scenario != "new_market":
        return Plan(cfg.scenario, cfg.scenario_day, rng, at, info)
    # a market the seller never targeted (the 0.4 % default share of the market mix)
    candidates = np.flatnonzero(~np.isin(geo.cc, list(COUNTRY_MIX)))
    market = int(rng.choice(candidates))
    return Plan(
        cfg.scenario, cfg.scenario_day, rng, at, {**info, "country": str(geo.cc[market])}, market
    )


def open_market(plan: Plan, geo: Geography, cust: Customers) -> Customers:
    """``new_market``: nobody there before the start day; some later arrivals live there."""
    if plan.market < 0:
        return cust
    rng, c_cty = plan.rng, cust.c_cty.copy()
    before = cust.arrive_day < plan.day
    moved = before & (c_cty == plan.market)
    others = geo.mix.copy()
    others[plan.market] = 0.0
    c_cty[moved] = rng.choice(len(others), size=int(moved.sum()), p=others / others.sum())
    joins = ~before & (rng.random(cust.n_pool) < NEW_MARKET_SHARE)
    c_cty[joins] = plan.market
    return replace(cust, c_cty=c_cty)


def _weighted_pick(
    rng: np.random.Generator, weights: np.ndarray, what: str, k: int = 1
) -> np.ndarray:
    """``k`` distinct indices drawn with probability proportional to ``weights`` (> 0 only)."""
    idx = np.flatnonzero(weights > 0)
    if len(idx) == 0:
        raise ScenarioError(
            f"scenario: no {what} to choose: too few orders before the "
            "scenario's start (start it later or generate more orders)"
        )
    w = weights[idx].astype(np.float64)
    return rng.choice(idx, size=min(k, len(idx)), replace=False, p=w / w.sum())


def _lane_collapse(plan: Plan, geo: Geography, orders: Orders, car: Carriage) -> Shift:
    before = ~orders.o_new & (orders.o_day < plan.day)
    per_car = np.bincount(car.o_car[before], minlength=len(CARRIERS))
    weights = np.zeros(len(CARRIERS))
    weights[list(LANE_CARRIERS)] = per_car[list(LANE_CARRIERS)]
    c = int(_weighted_pick(plan.rng, weights, "carrier")[0])
    per_cty = np.bincount(orders.o_dest[before & (car.o_car == c)], minlength=geo.n_cty)
    busiest = np.argsort(-per_cty, kind="stable")[:LANE_POOL]
    pool = np.zeros(geo.n_cty)
    pool[busiest] = per_cty[busiest]
    lanes = np.sort(_weighted_pick(plan.rng, pool, "lane", LANE_COUNT))
    info = {**plan.info, "carrier_id": CARRIERS[c][0], "countries": [str(x) for x in geo.cc[lanes]]}
    hit = (car.o_car == c) & np.isin(orders.o_dest, lanes) & (orders.o_day >= plan.day)
    return Shift(
        loss=np.where(hit, LANE_COLLAPSE_LOSS, 0.0),
        transit=np.where(hit, LANE_COLLAPSE_TRANSIT, 1.0),
        affected=hit,
        info=info,
    )


def rule_from(
    table: pd.DataFrame, country: str, start: pd.Timestamp, de_minimis: float, rule_id: str
) -> pd.DataFrame:
    """``table`` (contract ``duty_rules``) with a new open-ended rule for ``country`` from
    ``start``: that country's rules from ``start`` on are removed and the one in force then ends
    at ``start``, so the rules of one country still do not overlap. A new frame."""
    there = (table["country_code"] == country).to_numpy(dtype=bool)
    later = there & (table["valid_from"] >= start).to_numpy(dtype=bool)
    ends = table["valid_to"].isna() | (table["valid_to"] > start)
    out = table.loc[~later].copy()
    out.loc[there[~later] & ends.to_numpy(dtype=bool)[~later], "valid_to"] = start
    values = {
        "rule_id": rule_id,
        "country_code": country,
        "valid_from": start,
        "valid_to": pd.NaT,
        "duty_de_minimis": de_minimis,
        "default_incoterm": None,  # the country's
        "source": DE_MINIMIS_SOURCE,
    }
    row = pd.DataFrame({c: pd.Series([v], dtype=out[c].dtype) for c, v in values.items()})
    return pd.concat([out, row], ignore_index=True)


def _de_minimis_drop(
    plan: Plan, geo: Geography, duties: Duties, orders: Orders, value: np.ndarray
) -> Shift:
    before = ~orders.o_new & (orders.o_day < plan.day)
    per_cty = np.bincount(orders.o_dest[before], minlength=geo.n_cty)
    dm_o, _ = in_force(geo, duties, orders.o_dest, orders.o_ts)
    below = before & (value <= dm_o)  # the orders the drop would expose
    weights = np.bincount(orders.o_dest[below], minlength=geo.n_cty).astype(np.float64)
    # DDU markets that had a de minimis just before the start (under the rule then in force)
    just_before = np.full(geo.n_cty, int(plan.start.timestamp()) - 1, dtype=np.int64)
    dm_c, ddu_c = in_force(geo, duties, np.arange(geo.n_cty), just_before)
    eligible = ddu_c & (dm_c > 0)
    big = eligible & (per_cty >= DE_MINIMIS_MARKET_SHARE * per_cty.sum())
    weights[~(big if big.any() else eligible)] = 0.0
    k = int(_weighted_pick(plan.rng, weights, "country")[0])
    country, rule_id = str(geo.cc[k]), f"scenario-de_minimis_drop-{geo.cc[k]}"
    info = {
        **plan.info,
        "country": country,
        "de_minimis_before": float(dm_c[k]),
        "duty_rule": rule_id,
    }
    hit = (orders.o_dest == k) & (orders.o_day >= plan.day)
    return Shift(
        duties=duties_of(rule_from(duties.table, country, plan.start, 0.0, rule_id)),
        refuse=np.where(hit, DE_MINIMIS_REFUSE, REFUSE_SHARE),
        affected=hit,
        info=info,
    )


def _new_market(plan: Plan, orders: Orders) -> Shift:
    hit = orders.o_dest == plan.market
    return Shift(
        loss=np.where(hit, NEW_MARKET_LOSS, 0.0),
        transit=np.where(hit, NEW_MARKET_TRANSIT, 1.0),
        affected=hit,
        info=plan.info,
    )


def _quality_drop(plan: Plan, cat: Catalog, orders: Orders, lines: Lines) -> Shift:
    p_sup = cat.products.p_sup
    l_before = ~orders.o_new[lines.l_ord] & (orders.o_day[lines.l_ord] < plan.day)
    per_sup = np.bincount(p_sup[lines.l_prod[l_before]], minlength=cat.products.n_sup)
    s = int(_weighted_pick(plan.rng, per_sup, "supplier")[0])
    info = {**plan.info, "supplier_id": f"SUP{s:03d}"}
    l_hit = (p_sup[lines.l_prod] == s) & (orders.o_day[lines.l_ord] >= plan.day)
    affected = np.zeros(orders.n, dtype=bool)
    affected[lines.l_ord[l_hit]] = True
    return Shift(
        quality=np.where(l_hit, QUALITY_DROP_Q, 0.0),
        mismatch=np.where(l_hit, QUALITY_DROP_M, 0.0),
        affected=affected,
        info=info,
    )


def make_shift(
    plan: Plan,
    geo: Geography,
    duties: Duties,
    cat: Catalog,
    orders: Orders,
    lines: Lines,
    prices: Prices,
    car: Carriage,
) -> Shift:
    """The scenario's change of the hidden causes, per order and line (after the carriers)."""
    if plan.name == "lane_collapse":
        return _lane_collapse(plan, geo, orders, car)
    if plan.name == "de_minimis_drop":
        return _de_minimis_drop(plan, geo, duties, orders, prices.value)
    if plan.name == "new_market":
        return _new_market(plan, orders)
    if plan.name == "quality_drop":
        return _quality_drop(plan, cat, orders, lines)
    return Shift()
