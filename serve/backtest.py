"""``returnrisk backtest``: what screening policies would have saved over a past window.

The window's mature orders are replayed day by day, out of time:

1. a model is trained with the project's training code (``train.pipeline.fit_and_evaluate``)
   on the tables cut at the window's start (``cut_tables``: nothing after it exists), with its
   case-type model (``train.case_types``); ``--model`` replays a registered model instead, and
   only when its training and calibration window ends before the window starts;
2. for each day: the tables cut at the day's start are the history (``prepare_history``), the
   day's orders are scored as new orders with what-if actions (``serve.decisions``) — the
   decision of a day reads nothing after it (the cut-at-T test);
3. each policy flags orders per day (capacity top N %, threshold, or expected cost, after its
   ordered rules) and takes an action on each (the recommended one, or a fixed one);
4. only then are the outcomes read: avoided cost = what really happened to each flagged order
   (its cases in the label window, their families and amounts + handling) x the action's
   efficacy, minus the action's cost.

Scorers side by side on the same days and actions: ``model``, ``lookback`` (the BI heuristic
of ``train.evaluate``, fitted on what was known at the window's start), ``truth`` (the
generator's ``truth.parquet``, when there is one) and ``hindsight`` (the realised cost, with
the best realised action: the ceiling).

Why one file over ~700 lines: the replay, its policies and their money are one computation over
one day-by-day frame; the page is a small part at the end.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.costs import ACTIONS, CASE_FAMILY, FAMILIES, CostModel
from returnrisk.errors import ReturnriskError
from returnrisk.progress import QUIET, StepLog

LABEL_WINDOW_DAYS = 90
MIN_WINDOW_DAYS = 7
CURVE_CAPACITIES = tuple(round(0.01 * i, 2) for i in range(21))  # 0 .. 20 %
BOOTSTRAP_REPS = 1000
FLAG_RULES = ("capacity", "threshold", "expected_cost")
RULE_FIELDS = (
    "channel",
    "destination_country",
    "carrier_id",
    "incoterm",
    "payment_method",
    "customer_segment",
    "risk_level",
)
RULE_BOUNDS = ("order_value_above", "order_value_below", "p_case_above", "p_case_below")
RISK_LEVEL_CUTS = (20.0, 40.0)  # the score policy's default levels (risk score = 100 x p)
_POLICY_KEYS = ("name", "flag", "rules", "action")


class BacktestError(ReturnriskError, ValueError):
    """The backtest cannot run: the message names the file/option, the key and the value."""


# ---------------------------------------------------------------------------------------------
# policies


@dataclass(frozen=True)
class Rule:
    """``when`` every condition holds, ``then``: ``allow`` (never flag) or an action."""

    when: tuple[tuple[str, Any], ...]
    then: str


@dataclass(frozen=True)
class Policy:
    name: str = "capacity 5 %"
    rule: str = "capacity"  # capacity | threshold | expected_cost
    value: float = 0.05  # share of the day's orders | P(case) | EUR
    action: str = "recommended"  # or one of ACTIONS
    rules: tuple[Rule, ...] = ()


def _policy_error(source: str, key: str, value: Any, why: str) -> BacktestError:
    return BacktestError(f"{source}: {key}: {why}, got {value!r}")


def _non_negative(source: str, key: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        raise _policy_error(source, key, value, "must be a number >= 0")
    return float(value)


def _parse_rule(item: Any, where: str, source: str) -> Rule:
    if not isinstance(item, Mapping) or set(item) != {"when", "then"}:
        raise _policy_error(source, where, item, "must have exactly `when` and `then`")
    then = item["then"]
    if then != "allow" and then not in ACTIONS:
        raise _policy_error(
            source, f"{where}.then", then, f"use allow or one of {', '.join(ACTIONS)}"
        )
    when = item["when"]
    if not isinstance(when, Mapping) or not when:
        raise _policy_error(source, f"{where}.when", when, "must be a non-empty mapping")
    conds = []
    for k, v in when.items():
        if k in RULE_BOUNDS:
            v = _non_negative(source, f"{where}.when.{k}", v)
        elif k not in RULE_FIELDS:
            known = ", ".join((*RULE_FIELDS, *RULE_BOUNDS))
            raise _policy_error(source, f"{where}.when", k, f"unknown field; use {known}")
        elif not isinstance(v, str):
            raise _policy_error(source, f"{where}.when.{k}", v, "must be a text value")
        conds.append((str(k), v))
    return Rule(tuple(conds), str(then))


def _parse_rules(items: Any, source: str) -> tuple[Rule, ...]:
    if not isinstance(items, list):
        raise _policy_error(source, "rules", items, "must be a list")
    return tuple(_parse_rule(item, f"rules[{i}]", source) for i, item in enumerate(items))


def parse_policy(raw: Any, source: str = "policy") -> Policy:
    """A policy from its parsed YAML; ``BacktestError`` names the file, the key and the value."""
    if not isinstance(raw, Mapping):
        raise _policy_error(source, "(top level)", raw, "must be a mapping")
    for key in raw:
        if key not in _POLICY_KEYS:
            raise _policy_error(
                source, str(key), key, f"unknown key; use {', '.join(_POLICY_KEYS)}"
            )
    flag = raw.get("flag", {"capacity": 0.05})
    if not isinstance(flag, Mapping) or len(flag) != 1:
        raise _policy_error(source, "flag", flag, f"must be one of {', '.join(FLAG_RULES)}: VALUE")
    ((rule, value),) = flag.items()
    if rule not in FLAG_RULES:
        raise _policy_error(source, "flag", rule, f"unknown flag rule; use {', '.join(FLAG_RULES)}")
    value = _non_negative(source, f"flag.{rule}", value)
    if rule in ("capacity", "threshold") and value > 1:
        raise _policy_error(source, f"flag.{rule}", value, "must be in [0, 1]")
    action = raw.get("action", "recommended")
    if action != "recommended" and action not in ACTIONS:
        raise _policy_error(
            source, "action", action, f"unknown action; use recommended, {', '.join(ACTIONS)}"
        )
    rules = _parse_rules(raw.get("rules", []) or [], source)
    name = raw.get("name", f"{rule} {value:g}")
    return Policy(str(name), rule, value, str(action), rules)


def read_policy_file(path: str | Path) -> Policy:
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as err:
        raise BacktestError(f"{p}: cannot read: {err.strerror or err}") from None
    except yaml.YAMLError:
        raise BacktestError(f"{p}: not valid YAML") from None
    return parse_policy(raw if raw is not None else {}, str(p))


# ---------------------------------------------------------------------------------------------
# the tables as they were


def cut_tables(tables: Any, t: pd.Timestamp) -> Any:
    """The tables as known just before ``t``: orders placed, cases opened, parcels shipped and
    delivered before it (a later delivery is not known yet); reference tables kept whole,
    customers only those who ordered before ``t``. One cut: ``Cutter(tables).at(t)`` (the replay
    keeps its ``Cutter`` to cut many days)."""
    return Cutter(tables).at(t)


class Cutter:
    """``cut_tables(tables, t)`` for many ``t`` (the replay's days): each line's, case's and
    shipment's order time and each customer's first order time looked up once, so a cut is
    boolean masks only (checked against a cut written out row by key in the tests)."""

    def __init__(self, tables: Any):
        self.tables = tables
        o = tables.orders
        index = pd.Index(o["order_id"])
        placed = o["order_ts"].array

        def order_time(ids: pd.Series) -> Any:
            return placed.take(index.get_indexer(ids), allow_fill=True)

        self.line_ts = order_time(tables.order_lines["order_id"])
        self.case_ts = order_time(tables.after_sales_cases["order_id"])
        self.ship_ts = order_time(tables.shipments["order_id"])
        first = o.groupby("customer_id", observed=True, sort=False)["order_ts"].min()
        pos = pd.Index(first.index).get_indexer(tables.customers["customer_id"])
        self.customer_ts = first.array.take(pos, allow_fill=True)

    def at(self, t: pd.Timestamp) -> Any:
        tb = self.tables
        o = tb.orders
        cases = tb.after_sales_cases
        sh = tb.shipments
        sh = sh[(sh["shipped_ts"] < t).to_numpy() & (self.ship_ts < t)]
        sh = sh.assign(delivered_ts=sh["delivered_ts"].where(sh["delivered_ts"] < t))
        return tb.replace(
            orders=o[o["order_ts"] < t].reset_index(drop=True),
            order_lines=tb.order_lines[self.line_ts < t].reset_index(drop=True),
            after_sales_cases=cases[
                (cases["opened_ts"] < t).to_numpy() & (self.case_ts < t)
            ].reset_index(drop=True),
            shipments=sh.reset_index(drop=True),
            customers=tb.customers[self.customer_ts < t].reset_index(drop=True),
        )


@dataclass(frozen=True)
class Window:
    start: pd.Timestamp  # first day, 00:00 UTC
    end: pd.Timestamp  # the day after the last one, 00:00 UTC

    @property
    def days(self) -> int:
        return int((self.end - self.start) / pd.Timedelta(days=1))


DEFAULT_WEEKS = 12


def choose_window(
    tables: Any, date_from: str | None, date_to: str | None, weeks: int = DEFAULT_WEEKS
) -> Window:
    """The window (default: the last ``weeks`` weeks whose orders are all mature; ``--from``
    overrides the start); one-line errors."""
    as_of = tables.as_of()
    last_mature = (as_of - pd.Timedelta(days=LABEL_WINDOW_DAYS)).floor("D")  # days before it
    dates = {}
    for option, text in (("--from", date_from), ("--to", date_to)):
        if text is None:
            continue
        try:
            dates[option] = pd.Timestamp(text, tz="UTC").floor("D")
        except ValueError:
            raise BacktestError(f"{option}: not a date in YYYY-MM-DD form: {text!r}") from None
    end = dates["--to"] + pd.Timedelta(days=1) if "--to" in dates else last_mature
    start = dates.get("--from", end - pd.Timedelta(weeks=weeks))
    if end > last_mature:
        raise BacktestError(
            f"--to {(end - pd.Timedelta(days=1)).date()}: orders of that day are not mature "
            f"(outcomes known {LABEL_WINDOW_DAYS} days on; data as of {as_of:%Y-%m-%d %H:%M}): "
            f"the last day with mature orders is {(last_mature - pd.Timedelta(days=1)).date()}"
        )
    w = Window(start, end)
    if w.days < MIN_WINDOW_DAYS:
        raise BacktestError(
            f"--from {start.date()} --to {(end - pd.Timedelta(days=1)).date()}: the window is "
            f"{max(w.days, 0)} day(s); a backtest needs at least {MIN_WINDOW_DAYS}"
        )
    ts = tables.orders["order_ts"]
    if not ((ts >= start) & (ts < end)).any():
        raise BacktestError(
            f"--from {start.date()} --to {(end - pd.Timedelta(days=1)).date()}: "
            "no mature orders in the window"
        )
    return w


# ---------------------------------------------------------------------------------------------
# the model as of the window's start


@dataclass
class Replayer:
    """What the replay scores with: the risk model, its case-type model (or None), costs."""

    risk_model: Any
    case_types: Any
    costs: CostModel
    source: str  # "trained as of ..." or the model URI
    lookback_fit: pd.DataFrame  # labelled orders known at the window's start


def train_as_of(tables: Any, start: pd.Timestamp, costs: CostModel, *, seed: int = 0,
                log: StepLog = QUIET) -> Replayer:  # fmt: skip
    """Train with the project's training code on the tables cut at ``start``."""
    from returnrisk.train.case_types import fit_case_types
    from returnrisk.train.pipeline import (
        TrainConfig,
        TrainDataError,
        fit_and_evaluate,
        prepare_data,
        time_split,
    )

    cut = cut_tables(tables, start)
    try:
        prepared = prepare_data(cut, as_of=start, log=log)
        cfg = TrainConfig(seed=seed, baselines=False, figures=False, register=False)
        result = fit_and_evaluate(prepared, cfg, log=log)
        parts = time_split(prepared.features, cfg.split)
    except TrainDataError as err:
        msg = f"--from {start.date()}: cannot train on the history before: {err}"
        raise BacktestError(msg) from None
    ct = getattr(result.model, "case_types_", None)  # the training code fits it
    if ct is None:
        ct = fit_case_types(
            parts["train"], parts["valid"], cut, prepared.feature_names, prepared.categorical,
            seed=seed,
        )  # fmt: skip
    fit = prepared.features[prepared.features["mature"].astype(bool)]
    return Replayer(result.model, ct, costs, f"trained as of {start.date()}", fit)


def check_model_window(data_window: Mapping[str, Any], uri: str, start: pd.Timestamp) -> None:
    """Refuse a model whose training or calibration orders reach into the window."""
    given = [data_window.get(k) for k in ("train_end", "valid_end")]
    ends = [pd.Timestamp(e) for e in given if e]
    if not ends:
        raise BacktestError(f"--model {uri}: the model records no training window; cannot check")
    last = max(ends)
    last = last.tz_localize("UTC") if last.tzinfo is None else last
    if last >= start:
        raise BacktestError(
            f"--model {uri}: trained and calibrated on orders up to {last:%Y-%m-%d %H:%M}, "
            f"which overlaps the window starting {start.date()}: choose --from after "
            f"{last.date()} or let the backtest train its own model"
        )


# ---------------------------------------------------------------------------------------------
# replay: the decisions, day by day


def replay(tables: Any, window: Window, rep: Replayer, *, log: StepLog = QUIET) -> pd.DataFrame:
    """Per order of the window: day, P(case) of the model, the what-if table's recommendation
    and every action's modelled saving (``saving_<action>``, the best over carriers for
    ``switch_carrier``). Day D reads only the tables cut at D's start and D's orders."""
    from returnrisk.features import prepare_history

    from .decisions import Decider, family_shares, history_lanes, recommend

    o = tables.orders
    days = pd.date_range(window.start, window.end, freq="D", inclusive="left")
    cutter = Cutter(tables)  # each day's cut_tables, from row times looked up once
    out = []
    with log.step(f"replay {len(days)} days"):
        for day in days:  # one day at a time: the history grows; each day vectorised
            nxt = day + pd.Timedelta(days=1)
            day_orders = o[(o["order_ts"] >= day) & (o["order_ts"] < nxt)]
            if not len(day_orders):
                continue
            cut = cutter.at(day)
            ids = pd.Index(day_orders["order_id"])
            lines = tables.order_lines
            new = {
                "orders": day_orders.reset_index(drop=True),
                "order_lines": lines[ids.get_indexer(lines["order_id"]) >= 0],
            }
            known = pd.Index(cut.customers["customer_id"])
            cust = tables.customers
            cust = cust[
                (pd.Index(day_orders["customer_id"].unique()).get_indexer(cust["customer_id"]) >= 0)
                & (known.get_indexer(cust["customer_id"]) < 0)
            ]
            if len(cust):
                new["customers"] = cust
            history = prepare_history(cut, as_of=day)
            dec = Decider(
                history, rep.risk_model, rep.costs, rep.case_types,
                history_lanes(cut.orders), family_shares(cut),
            )  # fmt: skip
            table = dec.action_table(new, as_of=max(day, day_orders["order_ts"].max()))
            rec = recommend(table)
            best = table.groupby(["order_id", "action"], sort=False)["saving"].max().unstack()
            best = best.reindex(columns=list(ACTIONS))
            rec = rec.join(best.add_prefix("saving_"), on="order_id")
            rec.insert(1, "day", day)
            out.append(rec)
    return pd.concat(out, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# outcomes and evaluation


def realised_costs(tables: Any, order_ids: pd.Series, costs: CostModel) -> pd.DataFrame:
    """Per order: the realised cost of its cases in the label window, per family (amount +
    handling; a case without an amount costs its type's cost), and the number of cases."""
    o = tables.orders[["order_id", "order_ts"]]
    c = tables.after_sales_cases.merge(o, on="order_id", how="inner")
    c = c[(c["opened_ts"] - c["order_ts"]) <= pd.Timedelta(days=LABEL_WINDOW_DAYS)]
    ctype = c["case_type"].astype("str")
    fallback = ctype.map(costs.case_cost)
    amount = (c["amount"] + costs.handling_cost).where(c["amount"].notna(), fallback)
    fam = ctype.map(CASE_FAMILY)
    frame = pd.DataFrame({"order_id": c["order_id"].astype("str"), "family": fam, "cost": amount})
    cost = frame.pivot_table(index="order_id", columns="family", values="cost", aggfunc="sum")
    count = frame.pivot_table(index="order_id", columns="family", values="cost", aggfunc="size")
    ids = pd.Index(pd.Series(order_ids).astype("str"))
    cost = cost.reindex(index=ids, columns=list(FAMILIES)).fillna(0.0)
    count = count.reindex(index=ids, columns=list(FAMILIES)).fillna(0).astype(np.int64)
    out = pd.concat([cost.add_prefix("cost_"), count.add_prefix("n_")], axis=1)
    return out.reset_index(names="order_id")


def _realised_savings(outcome: pd.DataFrame, value: np.ndarray, costs: CostModel) -> np.ndarray:
    """(n, len(ACTIONS)) realised saving of each action: cost avoided - action cost."""
    cost_f = outcome[[f"cost_{f}" for f in FAMILIES]].to_numpy(dtype=np.float64)
    avoided = cost_f @ costs.efficacy_matrix().T
    v = np.where(np.isfinite(value), value, 0.0)
    action_cost = np.column_stack([costs.costs_of(a, v) for a in ACTIONS])
    return avoided - action_cost


def _rule_masks(policy: Policy, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per order: the first matching rule's index (-1: none) and its outcome (allow/action)."""
    n = len(frame)
    hit = np.full(n, -1)
    for i, rule in enumerate(policy.rules):
        m = np.ones(n, dtype=bool)
        for k, v in rule.when:
            if k == "order_value_above":
                m &= frame["order_value"].to_numpy(dtype=np.float64) > v
            elif k == "order_value_below":
                m &= frame["order_value"].to_numpy(dtype=np.float64) < v
            elif k == "p_case_above":
                m &= frame["p_case"].to_numpy() > v
            elif k == "p_case_below":
                m &= frame["p_case"].to_numpy() < v
            else:
                m &= (frame[k].astype("str") == v).fillna(False).to_numpy(dtype=bool)
        hit = np.where((hit < 0) & m, i, hit)
    then = np.array([r.then for r in policy.rules] + [""], dtype=object)[hit]
    return hit, then


def _flags(
    rule: str, value: float, score: np.ndarray, exp_cost: np.ndarray, day: np.ndarray,
    order_id: np.ndarray,
) -> np.ndarray:  # fmt: skip
    if rule == "threshold":
        return score >= value
    if rule == "expected_cost":
        return exp_cost >= value
    # capacity: the top ceil(value x n_day) of each day by score, ties by order_id
    order = np.lexsort((order_id, -score, day))
    d = day[order]
    starts = np.r_[0, np.flatnonzero(d[1:] != d[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(d)])
    rank = np.arange(len(d)) - np.repeat(starts, sizes)
    k = np.ceil(np.repeat(sizes, sizes) * value - 1e-9)
    out = np.zeros(len(score), dtype=bool)
    out[order] = rank < k
    return out


def _bootstrap_ci(per_day: np.ndarray, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    n = len(per_day)
    sums = per_day[rng.integers(0, n, size=(BOOTSTRAP_REPS, n))].sum(axis=1)
    return [float(np.quantile(sums, 0.05)), float(np.quantile(sums, 0.95))]


@dataclass(frozen=True)
class Evaluated:
    """One (policy, scorer): which orders are flagged, with which action, and their saving."""

    flagged: np.ndarray
    action: np.ndarray  # index into ACTIONS (rules' actions applied)
    net: np.ndarray  # realised net saving per order (0 when not flagged)
    per_day: np.ndarray  # net saving per day, in day order

    @property
    def net_saving(self) -> float:
        return float(self.net.sum())


def _evaluate(
    policy: Policy,
    frame: pd.DataFrame,
    score: np.ndarray,
    action_idx: np.ndarray,
    saving: np.ndarray,
    mean_case_cost: float,
    *,
    capacity: float | None = None,
    hindsight: bool = False,
) -> Evaluated:
    """Flags per day (the rules first, then the flag rule), the chosen actions' saving."""
    # each day as its rank among the days (an int: sorting the days' Timestamps as Python
    # objects made the 84 evaluations of a 12-week backtest on 200k orders take 20 s)
    day = pd.factorize(frame["day"], sort=True)[0]
    ids = frame["order_id"].to_numpy(dtype=str)
    hit, then = _rule_masks(policy, frame)
    rule, value = ("capacity", capacity) if capacity is not None else (policy.rule, policy.value)
    free = hit < 0
    flagged = np.zeros(len(frame), dtype=bool)
    if hindsight and rule != "capacity":  # perfect hindsight: exactly the orders worth it
        flagged[free] = score[free] > 0
    else:
        flagged[free] = _flags(
            rule, value, score[free], score[free] * mean_case_cost, day[free], ids[free]
        )
    by_rule = (hit >= 0) & (then != "allow")
    flagged |= by_rule
    act = np.where(by_rule, pd.Index(ACTIONS).get_indexer(then.astype(str)), action_idx)
    net = np.where(flagged, saving[np.arange(len(frame)), act], 0.0)
    per_day = np.bincount(day, weights=net, minlength=int(day.max(initial=-1)) + 1)
    return Evaluated(flagged, act, net, per_day)


def evaluate(
    tables: Any,
    decisions: pd.DataFrame,
    policies: Sequence[Policy],
    costs: CostModel,
    scorers: Mapping[str, np.ndarray],
    *,
    mean_case_cost: float,
    seed: int = 0,
    truth_table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every policy under every scorer, from the decisions and what really happened; with
    ``truth_table`` (``decisions.truth_action_table`` of the window's orders) also how the
    model's recommended actions of its flagged orders fare under the generator's truth."""
    from .decisions import compare_recommendations

    ids = decisions["order_id"].astype("str")
    outcome = realised_costs(tables, ids, costs)
    orders = tables.orders.set_index(tables.orders["order_id"].astype("str"))
    frame = decisions.copy()
    for c in ("order_value", "channel", "destination_country", "carrier_id", "incoterm",
              "payment_method"):  # fmt: skip
        frame[c] = orders.loc[ids, c].to_numpy()
    seg = tables.customers.set_index(tables.customers["customer_id"].astype("str"))["segment"]
    frame["customer_segment"] = orders.loc[ids, "customer_id"].astype("str").map(seg).to_numpy()
    frame["risk_level"] = pd.cut(
        100 * frame["p_case"], [-np.inf, *RISK_LEVEL_CUTS, np.inf], right=False,
        labels=["normal", "elevated", "highest"],
    ).astype("str")  # fmt: skip
    value = frame["order_value"].to_numpy(dtype=np.float64)
    saving = _realised_savings(outcome, value, costs)
    has = outcome[[f"n_{f}" for f in FAMILIES]].to_numpy() > 0
    n_cases = outcome[[f"n_{f}" for f in FAMILIES]].to_numpy(dtype=np.float64)
    eff = costs.efficacy_matrix()
    fixed_cost = np.array([costs.action_cost[a] for a in ACTIONS])
    value_share = np.array([costs.action_value_share[a] for a in ACTIONS])
    value_0 = np.where(np.isfinite(value), value, 0.0)
    recommended = pd.Index(ACTIONS).get_indexer(frame["recommended_action"].astype("str"))
    hindsight_action = saving.argmax(axis=1)
    out: dict[str, Any] = {}
    first_flags: dict[str, np.ndarray] = {}
    for pi, policy in enumerate(policies):
        fixed = policy.action != "recommended"
        res: dict[str, Any] = {"rule": {policy.rule: policy.value}, "action": policy.action,
                               "rules": [{"when": dict(r.when), "then": r.then}
                                         for r in policy.rules], "scorers": {}}  # fmt: skip
        for name, score in scorers.items():
            if fixed:
                act = np.full(len(frame), ACTIONS.index(policy.action))
            else:
                act = hindsight_action if name == "hindsight" else recommended
            hs = name == "hindsight"
            if hs:  # the best realised saving of each order, with its best action
                score = saving.max(axis=1)
            ev = _evaluate(policy, frame, score, act, saving, mean_case_cost, hindsight=hs)
            flagged, act_used = ev.flagged, ev.action
            rows = np.flatnonzero(flagged)
            per_day_flags = (
                pd.Series(flagged).groupby(frame["day"].dt.strftime("%Y-%m-%d").to_numpy()).sum()
            )
            avoided_cases = float((n_cases[rows] * eff[act_used[rows]]).sum())
            a = act_used[rows]
            action_cost = float((fixed_cost[a] + value_share[a] * value_0[rows]).sum())
            fam = {}
            for j, f in enumerate(FAMILIES):
                tp = float(has[rows, j].sum())
                fam[f] = {
                    "precision": tp / len(rows) if len(rows) else float("nan"),
                    "recall": tp / has[:, j].sum() if has[:, j].sum() else float("nan"),
                }
            curve = []
            for cap in CURVE_CAPACITIES:
                e = _evaluate(
                    policy, frame, score, act, saving, mean_case_cost, capacity=cap, hindsight=hs
                )
                curve.append({"capacity": cap, "net_saving": e.net_saving})
            n = len(frame)
            sc = {
                "net_saving": ev.net_saving,
                "net_saving_ci90": _bootstrap_ci(ev.per_day, seed),
                "net_saving_per_1000_orders": 1000 * ev.net_saving / n,
                "flagged": int(flagged.sum()),
                "flagged_per_day": {k: int(v) for k, v in per_day_flags.items()},
                "cases_avoided": avoided_cases,
                "action_cost": action_cost,
                "actions": {
                    ACTIONS[a]: int((act_used[rows] == a).sum())
                    for a in range(len(ACTIONS))
                    if (act_used[rows] == a).any()
                },
                "families": fam,
                "curve": curve,
            }
            if pi == 0:
                first_flags[name] = flagged
            else:
                base = first_flags[name]
                sc["vs_first_policy"] = {
                    "enter": int((flagged & ~base).sum()),
                    "leave": int((~flagged & base).sum()),
                }
            if name == "model" and truth_table is not None and not fixed:
                # the flagged orders that got the recommended action (not a rule's)
                pick = flagged & (act_used == recommended)
                cols = ["order_id", "recommended_action", "recommended_carrier"]
                sc["vs_truth_actions"] = compare_recommendations(frame.loc[pick, cols], truth_table)
            res["scorers"][name] = sc
        model = res["scorers"].get("model", next(iter(res["scorers"].values())))
        for k in ("net_saving", "net_saving_ci90", "flagged", "families", "curve"):
            res[k] = model[k]
        out[policy.name] = res
    return out


# ---------------------------------------------------------------------------------------------
# the whole run


@dataclass
class BacktestResult:
    report: dict[str, Any]
    decisions: pd.DataFrame


def run_backtest(
    tables: Any,
    *,
    policies: Sequence[Policy] = (Policy(),),
    costs: CostModel,
    window: Window,
    replayer: Replayer | None = None,
    truth: pd.DataFrame | None = None,
    truth_actions: pd.DataFrame | None = None,
    seed: int = 0,
    log: StepLog = QUIET,
) -> BacktestResult:
    from returnrisk.train.evaluate import lookback_heuristic

    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise BacktestError(f"--policy: two policies have the same name: {names}")
    rep = replayer if replayer is not None else train_as_of(tables, window.start, costs, seed=seed,
                                                             log=log)  # fmt: skip
    decisions = replay(tables, window, rep, log=log)
    o = tables.orders.set_index(tables.orders["order_id"].astype("str"))
    ids = decisions["order_id"].astype("str")
    score_frame = o.loc[ids, ["destination_country", "carrier_id"]].reset_index(names="order_id")
    scorers: dict[str, np.ndarray] = {"model": decisions["p_case"].to_numpy(dtype=np.float64)}
    scorers["lookback"] = lookback_heuristic(tables.order_lines, rep.lookback_fit, score_frame)
    if truth is not None:
        t = truth.set_index(truth["order_id"].astype("str"))["p_case"]
        scorers["truth"] = t.reindex(ids).to_numpy(dtype=np.float64)
    outcome = realised_costs(tables, ids, costs)
    scorers["hindsight"] = outcome[[f"cost_{f}" for f in FAMILIES]].sum(axis=1).to_numpy()
    with log.step("evaluate the policies"):
        before = cut_tables(tables, window.start).after_sales_cases
        amounts = before["amount"] + costs.handling_cost
        fallback = before["case_type"].astype("str").map(costs.case_cost)
        per_case = amounts.where(before["amount"].notna(), fallback)
        mean_case_cost = float(per_case.mean()) if len(per_case) else float("nan")
        truth_table = None
        if truth_actions is not None:  # the generator's truth for actions (truth_actions.parquet)
            from .decisions import truth_action_table

            mine = truth_actions[truth_actions["order_id"].astype("str").isin(ids)]
            if len(mine):
                truth_table = truth_action_table(mine, costs, o["order_value"])
        policies_out = evaluate(
            tables, decisions, policies, costs, scorers, mean_case_cost=mean_case_cost,
            seed=seed, truth_table=truth_table,
        )  # fmt: skip
    report = {
        "window": {
            "from": str(window.start.date()),
            "to": str((window.end - pd.Timedelta(days=1)).date()),
            "days": window.days,
            "orders": len(decisions),
        },
        "model": rep.source,
        "costs": costs.as_dict(),
        "scorers": list(scorers),
        "policies": policies_out,
        "note": "Savings are model estimates under the assumed costs and efficacies of the "
        "cost file, from what really happened to the flagged orders; not a causal guarantee.",
    }
    return BacktestResult(report, decisions)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer | np.floating):
        return x.item()
    raise TypeError(type(x))


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def write_backtest(result: BacktestResult, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    j = out / "backtest.json"
    j.write_text(
        json.dumps(_clean(result.report), indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    h = out / "backtest.html"
    h.write_text(render_html(result.report), encoding="utf-8")
    return j, h


# ---------------------------------------------------------------------------------------------
# HTML


_COLOURS = {"model": "#1f77b4", "lookback": "#ff7f0e", "truth": "#2ca02c", "hindsight": "#7f7f7f"}


def _svg_curve(scorers: Mapping[str, Any]) -> str:
    w, h, pad = 560, 260, 44
    pts = {k: [(p["capacity"], p["net_saving"]) for p in v["curve"]] for k, v in scorers.items()}
    ys = [y for v in pts.values() for _, y in v] or [0.0]
    lo, hi = min(0.0, min(ys)), max(1.0, max(ys))

    def xy(c: float, y: float) -> str:
        x = pad + (w - 2 * pad) * c / max(CURVE_CAPACITIES)
        yy = h - pad - (h - 2 * pad) * (y - lo) / (hi - lo)
        return f"{x:.1f},{yy:.1f}"

    lines = "".join(
        f'<polyline fill="none" stroke="{_COLOURS.get(k, "#000")}" stroke-width="2" '
        f'points="{" ".join(xy(c, y) for c, y in v)}"><title>{html.escape(k)}</title></polyline>'
        for k, v in pts.items()
    )
    axes = (
        f'<line x1="{pad}" y1="{xy(0, 0).split(",")[1]}" x2="{w - pad}" '
        f'y2="{xy(0, 0).split(",")[1]}" stroke="#999"/>'
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">daily capacity (share of orders '
        f"flagged, 0–20 %)</text>"
        f'<text x="{pad}" y="16">net saving {lo:,.0f} .. {hi:,.0f}</text>'
    )
    legend = "".join(
        f'<tspan fill="{_COLOURS.get(k, "#000")}" dx="10">■ {html.escape(k)}</tspan>' for k in pts
    )
    return (
        f'<svg width="{w}" height="{h}" role="img" aria-label="net saving against capacity">'
        f'{axes}{lines}<text x="{w - pad}" y="16" text-anchor="end">{legend}</text></svg>'
    )


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:,.2f}"
    return html.escape(str(x))


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained page: per policy the curve and the scorers' table."""
    w = report["window"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>returnrisk backtest</title><style>body{font:14px system-ui,sans-serif;"
        "margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px "
        "solid #ddd;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:"
        "left}.note{color:#666}</style></head><body>",
        f"<h1>Backtest {html.escape(w['from'])} .. {html.escape(w['to'])}</h1>",
        f"<p>{w['days']} days, {w['orders']:,} mature orders; model: "
        f"{html.escape(str(report['model']))}.</p>",
        f"<p class='note'>{html.escape(report['note'])}</p>",
    ]
    for name, pol in report["policies"].items():
        parts.append(f"<h2>Policy: {html.escape(name)}</h2>")
        parts.append(
            f"<p>flag rule {html.escape(json.dumps(pol['rule']))}, action "
            f"{html.escape(pol['action'])}, {len(pol['rules'])} rule(s)</p>"
        )
        parts.append(_svg_curve(pol["scorers"]))
        vs = pol["scorers"].get("model", {}).get("vs_truth_actions")
        if vs and vs.get("n"):
            parts.append(
                f"<p>Against the generator's truth for actions ({vs['n']:,.0f} flagged orders "
                f"with the recommended action): the truth-best action for "
                f"{100 * vs['agreement']:.0f} %; regret {100 * vs['regret_share']:.0f} % of the "
                f"truth-best saving.</p>"
            )
        head = ["scorer", "flagged", "net saving", "90 % interval", "per 1,000 orders",
                "cases avoided", "action cost"]  # fmt: skip
        head += [f"precision {f}" for f in FAMILIES] + [f"recall {f}" for f in FAMILIES]
        rows = []
        for s, v in pol["scorers"].items():
            ci = v["net_saving_ci90"]
            cells = [s, v["flagged"], v["net_saving"], f"{ci[0]:,.0f} .. {ci[1]:,.0f}"]
            cells += [v["net_saving_per_1000_orders"], v["cases_avoided"], v["action_cost"]]
            cells += [v["families"][f]["precision"] for f in FAMILIES]
            cells += [v["families"][f]["recall"] for f in FAMILIES]
            rows.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
        parts.append(
            "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>"
        )  # fmt: skip
    parts.append("</body></html>\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# the command


def backtest_dir(
    data: Path,
    out: Path,
    *,
    policy_files: Sequence[Path] = (),
    costs_file: Path | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    weeks: int = DEFAULT_WEEKS,
    model_uri: str | None = None,
    seed: int = 0,
    log: StepLog = QUIET,
) -> tuple[BacktestResult, Path, Path]:
    """``returnrisk backtest``: every input checked before any work, then the run."""
    from returnrisk.contract import load_tables
    from returnrisk.costs import read_cost_file, resolve_costs

    overrides = read_cost_file(costs_file) if costs_file is not None else None
    policies = [read_policy_file(p) for p in policy_files] or [Policy()]
    if out.exists() and not out.is_dir():
        raise BacktestError(f"--out: {out} exists and is not a directory")
    with log.step(f"load tables from {data}"):
        tables = load_tables(data, log=log)
    window = choose_window(tables, date_from, date_to, weeks)
    costs = resolve_costs(
        overrides,
        cut_tables(tables, window.start).after_sales_cases,
        source=str(costs_file) if costs_file is not None else "defaults",
    )
    replayer = None
    if model_uri is not None:
        from returnrisk.train.registry import load_model

        loaded = load_model(model_uri)
        check_model_window(loaded.data_window, model_uri, window.start)
        fit = _labelled_before(tables, window.start, log=log)
        ct = getattr(loaded.risk_model, "case_types_", None)  # None: the history's shares
        replayer = Replayer(loaded.risk_model, ct, costs, model_uri, fit)
    truth_path = data / "truth.parquet"
    truth = pd.read_parquet(truth_path) if truth_path.is_file() else None
    ta_path = data / "truth_actions.parquet"
    truth_actions = pd.read_parquet(ta_path) if ta_path.is_file() else None
    result = run_backtest(
        tables,
        policies=policies,
        costs=costs,
        window=window,
        replayer=replayer,
        truth=truth,
        truth_actions=truth_actions,
        seed=seed,
        log=log,
    )
    j, h = write_backtest(result, out)
    return result, j, h


def _labelled_before(tables: Any, start: pd.Timestamp, *, log: StepLog = QUIET) -> pd.DataFrame:
    """The orders whose label was known at ``start`` (for the look-back heuristic)."""
    from returnrisk.labels import order_outcomes

    cut = cut_tables(tables, start)
    oc = order_outcomes(cut.orders, cut.after_sales_cases, as_of=start)
    oc = oc[oc["mature"]]
    o = cut.orders.set_index("order_id")
    return oc.assign(
        destination_country=o.loc[oc["order_id"], "destination_country"].to_numpy(),
        carrier_id=o.loc[oc["order_id"], "carrier_id"].to_numpy(),
    )
