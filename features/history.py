"""The build context and the prepared history: what every feature family reads and queries.

``Context`` holds the tables, every order sorted by (order_ts, order_id), the queried orders
and the time ``as_of``; ``order_items`` and ``known_cases`` derive the item rows and the cases
known at ``as_of`` from it. Every history feature queries events through the context's
``prior`` / ``prior_one`` / ``count_before``: the point-in-time join of ``kernels`` (join on
key, UTC, strictly before, latest), plus the prepared history's events when scoring.

The prepared history (``History``, made by ``build.prepare_history``) is the same feature code
with the history's events indexed once. Every history feature is an as-of aggregate of events
(orders, cases, items, shipments) with a key code. ``prepare_history`` runs the feature code
once on the history with no queried order and records (``Recorder``), per aggregate, the
history's events sorted with their cumulative sums (``EventIndex``) and, per key, the history's
distinct values (the codes). Scoring new orders with ``build_features(new, history=h)`` runs the
same code on the new rows only (``request_tables``): keys are coded with the history's codes (a
value the history never saw gets a code of its own), each aggregate is the new rows' events plus
the history's (counts and sums are integers, so the sum is exact), and the tables hold only the
static rows the new orders refer to. The cost of a request then depends on its size, not on the
history's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from returnrisk.arrays import DAY_NS, NAT, ts_int
from returnrisk.contract import SCHEMAS, Tables

from .kernels import (
    PACK,
    EventIndex,
    PriorAggregate,
    add_aggregates,
    as_float,
    codes,
    combine_codes,
    first_per_group,
    index_events,
    index_many,
    index_of,
    query_events,
    smoothed_rate,
    split_many,
    windowed,
)
from .specs import FeatureConfig

# the tables whose keys a request may share with the history
KEYED_TABLES = ("orders", "skus", "customers", "countries", "carriers")

# the key of the lifetime aggregate among the windowed ones (a window is a number of days > 0)
LIFETIME = 0

# an event source of ``Context.prior``: (event key codes, event times, value columns or None)
Source = tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]


@dataclass
class Recorder:
    """What preparing a history collects: per key its values, per aggregate its events."""

    vocab: dict[str, pd.Index] = field(default_factory=dict)
    events: dict[str, EventIndex] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """The history tables prepared for scoring new orders (``prepare_history``)."""

    tables: Tables
    as_of: pd.Timestamp
    complete: bool  # no history event after as_of: later as_of values are valid too
    config: FeatureConfig
    vocab: dict[str, pd.Index]  # key name -> the history's distinct values, in code order
    events: dict[str, EventIndex]  # aggregate name -> the history's events
    ids: dict[str, pd.Index]  # table -> its key column (orders, skus, customers, ...)


@dataclass(frozen=True)
class Context:
    """What every feature group needs: the tables, the order times and the queried orders."""

    tables: Tables
    orders: pd.DataFrame  # every order, sorted by (order_ts, order_id)
    q_orders: pd.DataFrame  # the queried orders (rows q_idx of ``orders``)
    o_ts: np.ndarray  # int64 ns, every order
    o_known: np.ndarray  # bool: order usable as a history event (placed no later than as_of)
    q_idx: np.ndarray  # row positions of the queried orders in ``orders`` (sorted)
    q_ts: np.ndarray  # their order_ts
    q_customer: np.ndarray  # their row in ``customers`` (-1 when absent)
    q_country: np.ndarray  # their destination's row in ``countries`` (-1 when absent)
    as_of_ns: int
    cfg: FeatureConfig
    orders_before: np.ndarray  # per queried order: number of orders placed strictly before it
    history: History | None = None  # scoring: the prepared history the events are added to
    recorder: Recorder | None = None  # preparing: collects the history's events and codes

    @property
    def k(self) -> float:
        return float(self.cfg.prior_strength)

    # -- step 1 of the point-in-time join: key codes shared with the prepared history ---------

    def codes(self, name: str, values: pd.Series) -> np.ndarray:
        """Integer codes of a key column, shared with the prepared history (see ``codes``)."""
        if self.history is None:
            if self.recorder is None:
                return codes(values)
            c, uniques = pd.factorize(values, use_na_sentinel=False)
            self.recorder.vocab[name] = pd.Index(uniques)
            return c.astype(np.int64)
        vocab = self.history.vocab[name]
        c = vocab.get_indexer(values).astype(np.int64)
        unseen = c < 0
        if unseen.any():  # values the history never saw: codes of their own, after its codes
            c[unseen] = len(vocab) + pd.factorize(
                pd.Series(np.asarray(values)[unseen]), use_na_sentinel=False
            )[0].astype(np.int64)
        return c

    def combine(self, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One code per (a, b) pair of codes, shared with the prepared history."""
        if self.history is None and self.recorder is None:
            return combine_codes(a, b)
        packed = pd.Series(np.asarray(a, np.int64) * PACK + np.asarray(b, np.int64))
        return self.codes(name, packed)

    # -- steps 3 and 4: the events strictly before each query, with the latest event time ------
    def _query(
        self,
        name: str,
        index: EventIndex,
        query_key: np.ndarray,
        query_ts: np.ndarray,
        *,
        with_times: bool = False,
    ) -> PriorAggregate:
        """Query ``index`` (recorded for a prepared history), plus the prepared history's."""
        agg = query_events(index, query_key, query_ts, with_times=with_times)
        if self.recorder is not None:
            self.recorder.events[name] = index
        if self.history is not None:
            hist = self.history.events[name]
            agg = add_aggregates(
                agg, query_events(hist, query_key, query_ts, with_times=with_times)
            )
        return agg

    def prior(
        self,
        name: str,
        sources: Mapping[str, Source],
        query_key: np.ndarray,
        query_ts: np.ndarray,
    ) -> dict[str, PriorAggregate]:
        """``prior_aggregate_many`` of the events of ``sources`` (and of the prepared history)."""
        return self.prior_windows(name, sources, query_key, query_ts, ())[LIFETIME]

    def prior_one(
        self,
        name: str,
        event_key: np.ndarray,
        event_ts: np.ndarray,
        query_key: np.ndarray,
        query_ts: np.ndarray,
        values: Mapping[str, np.ndarray] | None = None,
        *,
        with_times: bool = False,
    ) -> PriorAggregate:
        """``prior_aggregate`` of one event source (and of the prepared history's)."""
        return self.prior_one_windows(
            name, event_key, event_ts, query_key, query_ts, (), values, with_times=with_times
        )[LIFETIME]

    def _windows(
        self,
        name: str,
        index: EventIndex,
        query_key: np.ndarray,
        query_ts: np.ndarray,
        windows: tuple[int, ...],
        *,
        with_times: bool = False,
    ) -> dict[int, PriorAggregate]:
        """The events before each query (``LIFETIME``) and, per window of ``w`` days, those in
        ``[t - w days, t)``: the same index queried at t and at t - w (``kernels.windowed``)."""
        now = self._query(name, index, query_key, query_ts, with_times=with_times)
        out = {LIFETIME: now}
        for w in windows:
            then = self._query(name, index, query_key, query_ts - w * DAY_NS)
            out[w] = windowed(now, then)
        return out

    def prior_windows(
        self,
        name: str,
        sources: Mapping[str, Source],
        query_key: np.ndarray,
        query_ts: np.ndarray,
        windows: tuple[int, ...],
    ) -> dict[int, dict[str, PriorAggregate]]:
        """``prior`` over the lifetime (``LIFETIME``) and over each recent window (days)."""
        aggs = self._windows(name, index_many(sources), query_key, query_ts, windows)
        return {w: split_many(agg, sources) for w, agg in aggs.items()}

    def prior_one_windows(
        self,
        name: str,
        event_key: np.ndarray,
        event_ts: np.ndarray,
        query_key: np.ndarray,
        query_ts: np.ndarray,
        windows: tuple[int, ...],
        values: Mapping[str, np.ndarray] | None = None,
        *,
        with_times: bool = False,
    ) -> dict[int, PriorAggregate]:
        """``prior_one`` over the lifetime (``LIFETIME``) and over each recent window (days)."""
        index = index_events(event_key, event_ts, values)
        return self._windows(name, index, query_key, query_ts, windows, with_times=with_times)

    def count_before(self, name: str, event_ts: np.ndarray, query_ts: np.ndarray) -> np.ndarray:
        """Number of events strictly before each query time (no key: the global history)."""
        zero_e, zero_q = np.zeros(len(event_ts), np.int64), np.zeros(len(query_ts), np.int64)
        return self.prior_one(name, zero_e, event_ts, zero_q, query_ts).count

    def global_rate(self, name: str, event_ts: np.ndarray, default: float) -> np.ndarray:
        """Share of all orders placed before t with an event (first case) known before t, at
        each queried order, shrunk towards ``default``: the prior of the order-level rates."""
        n_events = self.count_before(name, event_ts, self.q_ts)
        return smoothed_rate(n_events, self.orders_before, default, self.k)


# ---------------------------------------------------------------------------------------------
# the request's tables (scoring with a prepared history)


def _with_history_dtypes(new: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """New rows in the history's columns and dtypes (as the history merged with them)."""
    cols = [c for c in hist.columns if c in new.columns]
    if len(cols) == len(hist.columns) and all(new[c].dtype == hist[c].dtype for c in cols):
        return new[cols].reset_index(drop=True)  # already typed like the history (the usual)
    new = new[cols]
    out = pd.concat([hist.iloc[0:0], new], ignore_index=True)
    for c in hist.columns:
        if out[c].dtype != hist[c].dtype:
            out[c] = out[c].astype(hist[c].dtype)
    return out


def request_tables(history: History, new: Mapping[str, pd.DataFrame] | Tables) -> Tables:
    """The tables a request needs: its orders and lines, the history's static rows they refer
    to (in history row order) followed by the request's new static rows (a key the history has
    keeps the history's row), the request's cases and shipments (usually none)."""
    h = history.tables
    get = new.get if isinstance(new, Mapping) else lambda name: getattr(new, name, None)

    def part(name: str) -> pd.DataFrame:
        df = get(name)
        hist = getattr(h, name)
        return hist.iloc[0:0] if df is None or not len(df) else _with_history_dtypes(df, hist)

    orders, lines = part("orders"), part("order_lines")
    frames: dict[str, pd.DataFrame] = {"orders": orders, "order_lines": lines}
    used = {"skus": lines["sku_id"], "customers": orders["customer_id"]}
    for name in ("skus", "customers", "countries", "carriers"):
        hist, key = getattr(h, name), SCHEMAS[name].key
        extra = part(name)
        if len(extra):
            extra = extra.loc[history.ids[name].get_indexer(extra[key]) < 0]
        if name in used:
            pos = history.ids[name].get_indexer(pd.unique(used[name].dropna()))
            hist = hist.take(np.sort(pos[pos >= 0]))
        frames[name] = pd.concat([hist, extra], ignore_index=True) if len(extra) else hist
    frames["after_sales_cases"] = part("after_sales_cases")
    frames["shipments"] = part("shipments")
    return h.replace(**frames)


# ---------------------------------------------------------------------------------------------
# the events of the context: item rows and the cases known at as_of


@dataclass(frozen=True)
class Items:
    """Order lines summed per (order, SKU), sorted by (order, SKU row)."""

    o: np.ndarray  # order row
    s: np.ndarray  # sku row
    qty: np.ndarray
    value: np.ndarray  # quantity * unit_price summed over the lines
    lines: np.ndarray
    max_price: np.ndarray
    q_rows: np.ndarray  # item rows of the queried orders (sorted by order)
    q_pos: np.ndarray  # for those rows, the position of the order among the queried orders


def order_items(ctx: Context) -> Items:
    lines, skus = ctx.tables.order_lines, ctx.tables.skus
    o = index_of(lines["order_id"], ctx.orders["order_id"], "order_lines.order_id")
    s = index_of(lines["sku_id"], skus["sku_id"], "order_lines.sku_id")
    n_sku = max(len(skus), 1)
    key = o.astype(np.int64) * n_sku + s
    order = np.argsort(key, kind="stable")
    key = key[order]
    qty = as_float(lines["quantity"])[order]
    price = as_float(lines["unit_price"])[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
    ukey = key[starts] if len(key) else key
    if len(key):
        agg_qty = np.add.reduceat(qty, starts)
        agg_val = np.add.reduceat(qty * price, starts)
        agg_lines = np.diff(np.r_[starts, len(key)]).astype(np.float64)
        agg_max = np.fmax.reduceat(price, starts)
    else:
        agg_qty = agg_val = agg_lines = agg_max = np.zeros(0)
    io = (ukey // n_sku).astype(np.int64)
    if len(ctx.q_idx) == len(ctx.orders):
        q_rows = np.arange(len(io))
    else:
        q_rows = np.flatnonzero(np.isin(io, ctx.q_idx))
    q_pos = np.searchsorted(ctx.q_idx, io[q_rows])
    return Items(
        o=io,
        s=(ukey % n_sku).astype(np.int64),
        qty=agg_qty,
        value=agg_val,
        lines=agg_lines,
        max_price=agg_max,
        q_rows=q_rows,
        q_pos=q_pos,
    )


@dataclass(frozen=True)
class Cases:
    """The cases opened no later than as_of, with each order's first case."""

    o: np.ndarray  # order row of each case (cases opened no later than as_of)
    ts: np.ndarray  # opened_ts, int64 ns
    case_type: pd.Series
    sku: pd.Series
    first_o: np.ndarray  # orders with a case ...
    first_ts: np.ndarray  # ... and their first case's opened_ts
    # the orders whose outcome is known, as events at the end of their label window
    # (order_ts + window): a rate over them has an honest denominator (``returnrisk.labels``)
    mature_o: np.ndarray  # order rows (orders known at as_of)
    mature_ts: np.ndarray  # their order_ts + label window
    mature_case: np.ndarray  # bool: the first case opened within the window (label 1)
    mature_prior: np.ndarray  # per queried order: share of matured orders with a case (smoothed)


def known_cases(ctx: Context) -> Cases:
    cases = ctx.tables.after_sales_cases
    ts = ts_int(cases["opened_ts"])
    keep = (ts != NAT) & (ts <= ctx.as_of_ns)
    cases = cases.loc[keep]
    ts = ts[keep]
    o = index_of(cases["order_id"], ctx.orders["order_id"], "after_sales_cases.order_id")
    first_o, first_ts = first_per_group(o, ts)
    # matured orders: placed at t, known when t + window passes; a case if the first case
    # opened in [t, t + window] (the label's definition)
    window = ctx.cfg.label_window_days * DAY_NS
    mature_o = np.flatnonzero(ctx.o_known)
    fc = np.full(len(ctx.o_ts), NAT, dtype=np.int64)
    fc[first_o] = first_ts
    t = ctx.o_ts[mature_o]
    mature_ts = t + window
    f = fc[mature_o]
    mature_case = (f != NAT) & (f >= t) & (f <= mature_ts)
    mature_prior = smoothed_rate(
        ctx.count_before("mature_case", mature_ts[mature_case], ctx.q_ts),
        ctx.count_before("mature", mature_ts, ctx.q_ts),
        ctx.cfg.default_case_rate,
        ctx.k,
    )
    return Cases(
        o=o.astype(np.int64),
        ts=ts,
        case_type=cases["case_type"].reset_index(drop=True),
        sku=cases["sku_id"].reset_index(drop=True),
        first_o=first_o,
        first_ts=first_ts,
        mature_o=mature_o,
        mature_ts=mature_ts,
        mature_case=mature_case,
        mature_prior=mature_prior,
    )


def mature_sources(key: np.ndarray, cases: Cases) -> dict[str, Source]:
    """The matured orders as events of a key (``key``: a code per order row): every matured
    order (``mature``) and those with a case (``mature_case``), at order_ts + window."""
    o, ts, case = cases.mature_o, cases.mature_ts, cases.mature_case
    return {"mature": (key[o], ts, None), "mature_case": (key[o[case]], ts[case], None)}
