"""``build_features``: one row per order with its label, maturity and every feature.

One code path for training (each order at its own ``order_ts``) and scoring (new orders concatenated
into the tables, ``order_ids=new_ids``, ``as_of=now``). Every history feature goes through
``point_in_time.prior_aggregate``: an order placed at t sees orders placed before t, cases opened
before t and shipments delivered before t, all of them also no later than ``as_of``.

Scoring a few new orders against a large history: ``prepare_history`` runs the same code once on
the history and keeps its events indexed; ``build_features(new_rows, history=h)`` then adds the
new rows' events to them (see "the prepared history" below).

Everything is vectorised: per-order aggregates of the order's items use ``np.*.reduceat`` over
items sorted by order; there is no Python loop over orders, customers or SKUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from returnrisk.contract import SCHEMAS, member_mask
from returnrisk.progress import QUIET, StepLog

from .point_in_time import (
    _NAT,
    EventIndex,
    PriorAggregate,
    add_aggregates,
    codes,
    combine_codes,
    index_events,
    index_many,
    query_events,
    smoothed_rate,
    split_many,
    ts_int,
)
from .specs import CATEGORICAL_FEATURES, CONTEXT_COLUMNS, FEATURE_SPECS, HEAD_COLUMNS

DAY_NS = 86_400 * 10**9
_TS_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the feature table (parsed once at the command entry)."""

    label_window_days: int = 90
    prior_strength: float = 20.0  # k in (events + k * prior) / (trials + k)
    default_case_rate: float = 0.10  # prior of a global rate before any history exists
    default_type_rate: float = 0.02  # the same for one case type (not_received, damaged, ...)
    default_transit_days: float = 7.0
    apparel_categories: tuple[str, ...] = (
        "apparel",
        "clothing",
        "fashion",
        "shoes",
        "footwear",
        "lingerie",
        "sportswear",
    )

    def __post_init__(self) -> None:
        if self.label_window_days <= 0:
            raise ValueError(f"label_window_days must be > 0, got {self.label_window_days}")
        if self.prior_strength <= 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength}")


CUSTOMER_TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "customer_prior_returns": ("return", "refund"),
    "customer_prior_not_received": ("not_received",),
    "customer_prior_damaged": ("damaged",),
    "customer_prior_not_as_described": ("not_as_described", "wrong_item"),
    "customer_prior_duty_disputes": ("duty_dispute",),
}
_STR_CONTEXT = ("top_sku_id", "top_category", "carrier_name")
# the event sources (name -> value columns) of the aggregates queried several at a time
# (``_prior``): the online store splits its per-key totals by the same names
LANE_SOURCES: dict[str, tuple[str, ...]] = {
    "orders": (),
    "case": (),
    "not_received": (),
    "damaged": (),
    "ships": ("transit_s", "late", "promised"),
}
DESTINATION_SOURCES: dict[str, tuple[str, ...]] = {"orders": (), "dispute": ()}
ITEM_SOURCES: dict[str, tuple[str, ...]] = {"items": ("units",), "cases": ()}


# ---------------------------------------------------------------------------------------------
# small helpers


def _utc(ts: Any) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _lookup(keys: pd.Series, table: pd.Series) -> np.ndarray:
    """Row positions of ``keys`` in the unique column ``table`` (-1 when absent or missing)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    if not len(table):
        return np.full(len(keys), -1, dtype=np.int64)
    k = pa.array(pd.Series(keys).astype("str")).cast(pa.large_string())
    t = pa.array(pd.Series(table).astype("str")).cast(pa.large_string())
    found = pc.index_in(k, value_set=t, skip_nulls=True)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _index_of(keys: pd.Series, table: pd.Series, what: str) -> np.ndarray:
    """Row positions of ``keys`` in the unique column ``table``; unknown keys raise ValueError."""
    idx = _lookup(keys, table)
    bad = idx < 0
    if bad.any():
        examples = ", ".join(map(str, pd.unique(np.asarray(keys)[bad])[:5]))
        raise ValueError(
            f"{what}: {int(bad.sum())} rows refer to keys that do not exist (e.g. {examples})"
        )
    return idx


def _output_order(order_id: pd.Series, ts: np.ndarray) -> np.ndarray | None:
    """Permutation sorting orders by (order_ts, order_id); None when they already are."""
    if len(ts) < 2:
        return None
    ids = pa.array(order_id.astype("str")).cast(pa.large_string())
    step = np.diff(ts)
    if (step >= 0).all():
        ties = np.flatnonzero(step == 0)
        if not len(ties):
            return None
        later = pc.greater(ids.take(pa.array(ties + 1)), ids.take(pa.array(ties)))
        if pc.all(later).as_py():
            return None
    by_id = pc.sort_indices(ids).to_numpy().astype(np.int64)
    return by_id[np.argsort(ts[by_id], kind="stable")]


def _split_codes(column: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """A comma-separated column ("en,de") as (row, token) pairs; a null has none."""
    arr = pa.array(column.astype("str")).cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lists = pc.split_pattern(arr, ",")
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    rows = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    return rows, tokens


def _indicator(split: tuple[np.ndarray, pa.Array], vocab: pa.Array, n: int) -> np.ndarray:
    """Boolean matrix (n rows x vocab) from ``_split_codes`` pairs."""
    rows, tokens = split
    mat = np.zeros((n, len(vocab)), dtype=bool)
    if len(rows):
        col = pc.index_in(tokens, value_set=vocab).to_numpy(zero_copy_only=False)
        mat[rows, col.astype(np.int64)] = True
    return mat


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int array (sort-based; fast for large arrays)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def _take_str(column: pd.Series, idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``column[idx]`` as a "str" array; idx == -1 gives a missing value."""
    arr = column.astype("str").array
    return arr.take(np.asarray(idx, dtype=np.int64), allow_fill=True)


def _take_num(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` as float64; idx == -1 gives NaN."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return np.full(len(idx), np.nan)
    out = values[np.where(idx >= 0, idx, 0)]
    out[idx < 0] = np.nan
    return out


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


def _bool_num(s: pd.Series) -> np.ndarray:
    """Nullable bool as float: 1.0 / 0.0 / NaN."""
    return s.astype("boolean").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _flag(mask: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(mask).astype(np.float64)
    if known is not None:
        out[~np.asarray(known)] = np.nan
    return out


def _first_per_group(key: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique integer keys and the earliest ts per key."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((ts, key))
    k_sorted = key[order]
    first = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
    return k_sorted[first].astype(np.int64), ts[order][first]


class _Groups:
    """Per-order reductions of item rows that are sorted by order (``pos`` non-decreasing)."""

    def __init__(self, pos: np.ndarray, n: int) -> None:
        self.pos = pos
        self.n = n
        self.starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]]) if len(pos) else pos
        self.ids = pos[self.starts] if len(pos) else pos

    def _scatter(self, vals: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full(self.n, fill, dtype=np.float64)
        if len(self.pos):
            out[self.ids] = vals
        return out

    def sum(self, x: np.ndarray, empty: float = 0.0) -> np.ndarray:
        """Sum ignoring NaN; ``empty`` when the order has no items or only NaN."""
        if not len(self.pos):
            return np.full(self.n, empty)
        x = np.asarray(x, dtype=np.float64)
        missing = np.isnan(x)
        if not missing.any():
            return self._scatter(np.add.reduceat(x, self.starts), empty)
        s = np.add.reduceat(np.where(missing, 0.0, x), self.starts)
        n_ok = np.add.reduceat((~missing).astype(np.int64), self.starts)
        return self._scatter(np.where(n_ok > 0, s, empty), empty)

    def max(self, x: np.ndarray) -> np.ndarray:
        if not len(self.pos):
            return np.full(self.n, np.nan)
        return self._scatter(np.fmax.reduceat(np.asarray(x, dtype=np.float64), self.starts))

    def min(self, x: np.ndarray) -> np.ndarray:
        if not len(self.pos):
            return np.full(self.n, np.nan)
        return self._scatter(np.fmin.reduceat(np.asarray(x, dtype=np.float64), self.starts))

    def mean(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n_ok = self.sum((~np.isnan(x)).astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n_ok > 0, self.sum(x) / n_ok, np.nan)

    def ratio(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """sum(num) / sum(den) per order (NaN when the denominator is 0)."""
        n, d = self.sum(num), self.sum(den)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > 0, n / d, np.nan)

    def argbest(self, *keys: np.ndarray) -> np.ndarray:
        """Per order, the item row maximising keys[0], then keys[1], ...; ties -> first row."""
        cand = np.ones(len(self.pos), dtype=bool)
        for key in keys:
            k = np.where(cand, np.asarray(key, dtype=np.float64), -np.inf)
            best = np.maximum.reduceat(k, self.starts)
            cand &= k == np.repeat(best, np.diff(np.r_[self.starts, len(self.pos)]))
        rows = np.where(cand, np.arange(len(self.pos)), len(self.pos))
        return np.minimum.reduceat(rows, self.starts)


@dataclass(frozen=True)
class _Ctx:
    """What every feature group needs: the tables, the order times and the queried orders."""

    tables: Any
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
    recorder: _Recorder | None = None  # preparing: collects the history's events and codes

    @property
    def k(self) -> float:
        return float(self.cfg.prior_strength)


# ---------------------------------------------------------------------------------------------
# the prepared history: the same feature code, with the history's events indexed once
#
# Every history feature is a ``prior_aggregate`` of events (orders, cases, items, shipments)
# with a key code.  ``prepare_history`` runs the feature code once on the history with no
# queried order and records, per aggregate, the history's events sorted with their cumulative
# sums (``EventIndex``) and, per key, the history's distinct values (the codes).  Scoring new
# orders with ``build_features(new, history=h)`` runs the same code on the new rows only: keys
# are coded with the history's codes (a value the history never saw gets a code of its own),
# each aggregate is the new rows' events plus the history's (counts and sums are integers, so
# the sum is exact), and the tables hold only the static rows the new orders refer to.  The cost
# of a request then depends on its size, not on the history's.


@dataclass
class _Recorder:
    vocab: dict[str, pd.Index] = field(default_factory=dict)
    events: dict[str, EventIndex] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """The history tables prepared for scoring new orders (``prepare_history``)."""

    tables: Any  # returnrisk.contract.Tables
    as_of: pd.Timestamp
    complete: bool  # no history event after as_of: later as_of values are valid too
    config: FeatureConfig
    vocab: dict[str, pd.Index]  # key name -> the history's distinct values, in code order
    events: dict[str, EventIndex]  # aggregate name -> the history's events
    ids: dict[str, pd.Index]  # table -> its key column (orders, skus, customers, ...)


# the tables whose keys a request may share with the history
_KEYED_TABLES = ("orders", "skus", "customers", "countries", "carriers")


def prepare_history(
    tables: Any,
    *,
    as_of: pd.Timestamp | str | None = None,
    config: FeatureConfig = FeatureConfig(),
    log: StepLog = QUIET,
) -> History:
    """Index the history once for scoring new orders with ``build_features(..., history=h)``.

    ``as_of`` defaults to ``tables.as_of()``; new orders can then be scored as of any time not
    before it."""
    if isinstance(tables, Mapping):
        from returnrisk.contract import coerce_tables

        tables = coerce_tables(tables)
    rec = _Recorder()
    as_of_ts = _utc(as_of) if as_of is not None else _utc(tables.as_of())
    _build(tables, order_ids=[], as_of=as_of_ts, config=config, log=log, recorder=rec)
    latest = tables.as_of() if len(tables.orders) else as_of_ts
    ids = {name: pd.Index(getattr(tables, name)[SCHEMAS[name].key]) for name in _KEYED_TABLES}
    for index in (*ids.values(), *rec.vocab.values()):  # build the hash tables now, once
        index.get_indexer(index[:1])
    return History(
        tables=tables,
        as_of=as_of_ts,
        complete=bool(as_of_ts >= _utc(latest)),
        config=config,
        vocab=rec.vocab,
        events=rec.events,
        ids=ids,
    )


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


def _request_tables(history: History, new: Any) -> Any:
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


def _codes(ctx: _Ctx, name: str, values: pd.Series) -> np.ndarray:
    """Integer codes of a key column, shared with the prepared history (see ``codes``)."""
    if ctx.history is None:
        if ctx.recorder is None:
            return codes(values)
        c, uniques = pd.factorize(values, use_na_sentinel=False)
        ctx.recorder.vocab[name] = pd.Index(uniques)
        return c.astype(np.int64)
    vocab = ctx.history.vocab[name]
    c = vocab.get_indexer(values).astype(np.int64)
    unseen = c < 0
    if unseen.any():  # values the history never saw: codes of their own, after its codes
        c[unseen] = len(vocab) + pd.factorize(
            pd.Series(np.asarray(values)[unseen]), use_na_sentinel=False
        )[0].astype(np.int64)
    return c


def _combine(ctx: _Ctx, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One code per (a, b) pair of codes, shared with the prepared history."""
    if ctx.history is None and ctx.recorder is None:
        return combine_codes(a, b)
    packed = pd.Series(np.asarray(a, np.int64) * 2**32 + np.asarray(b, np.int64))
    return _codes(ctx, name, packed)


def _query(
    ctx: _Ctx,
    name: str,
    index: EventIndex,
    query_key: np.ndarray,
    query_ts: np.ndarray,
    *,
    with_times: bool = False,
) -> PriorAggregate:
    """Query ``index`` (recorded for a prepared history), plus the prepared history's events."""
    agg = query_events(index, query_key, query_ts, with_times=with_times)
    if ctx.recorder is not None:
        ctx.recorder.events[name] = index
    if ctx.history is not None:
        hist = query_events(ctx.history.events[name], query_key, query_ts, with_times=with_times)
        agg = add_aggregates(agg, hist)
    return agg


def _prior(
    ctx: _Ctx,
    name: str,
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]],
    query_key: np.ndarray,
    query_ts: np.ndarray,
) -> dict[str, PriorAggregate]:
    """``prior_aggregate_many`` of the events of ``sources`` (and of the prepared history)."""
    return split_many(_query(ctx, name, index_many(sources), query_key, query_ts), sources)


def _prior_one(
    ctx: _Ctx,
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
    index = index_events(event_key, event_ts, values)
    return _query(ctx, name, index, query_key, query_ts, with_times=with_times)


def _count_before(ctx: _Ctx, name: str, event_ts: np.ndarray, query_ts: np.ndarray) -> np.ndarray:
    """Number of events strictly before each query time (no key: the global history)."""
    zero_e, zero_q = np.zeros(len(event_ts), np.int64), np.zeros(len(query_ts), np.int64)
    return _prior_one(ctx, name, zero_e, event_ts, zero_q, query_ts).count


# ---------------------------------------------------------------------------------------------
# entry point


def build_features(
    tables: Any,
    *,
    order_ids: Sequence[str] | None = None,
    as_of: pd.Timestamp | str | None = None,
    config: FeatureConfig = FeatureConfig(),
    history: History | None = None,
    log: StepLog = QUIET,
) -> pd.DataFrame:
    """One row per order (all, or those in ``order_ids``) sorted by (order_ts, order_id).

    Columns: order_id, order_ts, customer_id, destination_country, carrier_id, mature, label,
    every feature of ``FEATURE_SPECS`` (numeric float64, categorical "str"), then context columns
    for reason codes (carrier_name, duty_de_minimis, top_sku_id, top_category, ...).
    ``tables`` is a ``returnrisk.contract.Tables`` (a mapping of frames is coerced first); it is
    never modified.

    With ``history`` (``prepare_history`` of the history tables), ``tables`` holds only the new
    rows (typed like the history's: ``orders``, ``order_lines``, optionally new ``skus``,
    ``customers``, ``countries``, ``carriers`` rows) and the result is exactly that of the
    history merged with them, at a cost independent of the history's size. ``as_of`` (default:
    the latest of the history's and the new rows' times) must not be before ``history.as_of``.
    """
    if history is None:
        if isinstance(tables, Mapping):
            from returnrisk.contract import coerce_tables

            tables = coerce_tables(tables)
        as_of_ts = _utc(as_of) if as_of is not None else _utc(tables.as_of())
        return _build(tables, order_ids=order_ids, as_of=as_of_ts, config=config, log=log)
    if config != history.config:
        raise ValueError("config differs from the one the history was prepared with")
    request = _request_tables(history, tables)
    if as_of is None:
        as_of_ts = history.as_of
        if len(request.orders):
            as_of_ts = max(as_of_ts, _utc(request.as_of()))
    else:
        as_of_ts = _utc(as_of)
    if as_of_ts < history.as_of or (not history.complete and as_of_ts != history.as_of):
        raise ValueError(
            f"as_of {as_of_ts} is before the prepared history's as_of {history.as_of}: "
            "call build_features on the merged tables instead"
        )
    clash = history.ids["orders"].get_indexer(request.orders["order_id"]) >= 0
    if clash.any():
        dup = request.orders.loc[clash, "order_id"]
        raise ValueError(
            f"orders: order_id must be unique; {len(dup)} duplicates (e.g. {', '.join(dup[:5])})"
        )
    return _build(
        request, order_ids=order_ids, as_of=as_of_ts, config=config, log=log, history=history
    )


def _build(
    tables: Any,
    *,
    order_ids: Sequence[str] | None,
    as_of: pd.Timestamp,
    config: FeatureConfig,
    log: StepLog,
    history: History | None = None,
    recorder: _Recorder | None = None,
) -> pd.DataFrame:
    as_of_ts = as_of
    orders = tables.orders
    if orders["order_id"].duplicated().any():
        dup = orders.loc[orders["order_id"].duplicated(), "order_id"]
        raise ValueError(
            f"orders: order_id must be unique; {len(dup)} duplicates (e.g. {', '.join(dup[:5])})"
        )
    # work on the orders in output order (order_ts, order_id): every per-order array computed
    # below is then already in its final row order (a sorted copy; the input is not touched)
    o_ts = ts_int(orders["order_ts"])
    perm = _output_order(orders["order_id"], o_ts)
    if perm is not None:
        orders = orders.take(perm).reset_index(drop=True)
        o_ts = o_ts[perm]
    if order_ids is None:
        q_idx = np.arange(len(orders))
    else:
        wanted = pd.Series(list(order_ids), dtype="str")
        found = _lookup(wanted, orders["order_id"])
        if (found < 0).any():
            bad = wanted[found < 0]
            raise ValueError(
                f"order_ids: {len(bad)} ids not in orders (e.g. {', '.join(bad.head(5))})"
            )
        q_idx = np.unique(found)
    as_of_ns = int(as_of_ts.as_unit("ns").value)
    q_orders = orders if len(q_idx) == len(orders) else orders.iloc[q_idx]
    ctx = _Ctx(
        tables=tables,
        orders=orders,
        q_orders=q_orders,
        o_ts=o_ts,
        o_known=(o_ts != _NAT) & (o_ts <= as_of_ns),
        q_idx=q_idx,
        q_ts=o_ts[q_idx],
        q_customer=_lookup(q_orders["customer_id"], tables.customers["customer_id"]),
        q_country=_lookup(q_orders["destination_country"], tables.countries["country_code"]),
        as_of_ns=as_of_ns,
        cfg=config,
        orders_before=np.zeros(len(q_idx), np.int64),
        history=history,
        recorder=recorder,
    )
    known_ts = o_ts[o_ts <= as_of_ns]
    ctx = replace(ctx, orders_before=_count_before(ctx, "orders", known_ts, o_ts[q_idx]))
    log.info(f"features for {len(q_idx):,d} of {len(orders):,d} orders as of {as_of_ts}")
    out: dict[str, Any] = {}
    with log.step("order, destination, carrier and customer attributes"):
        _order_static(ctx, out)
    with log.step("basket, listing and size features"):
        items = _items(ctx)
        _basket_features(ctx, items, out)
    with log.step("labels and customer history"):
        cases = _cases(ctx)
        _labels(ctx, cases, out)
        _customer_history(ctx, cases, out)
    with log.step("lane and destination history"):
        _lane_history(ctx, cases, out)
    with log.step("SKU, product and category history"):
        _item_history(ctx, items, cases, out)
    with log.step("assembling the table"):
        return _assemble(ctx, out)


# ---------------------------------------------------------------------------------------------
# static attributes of the order


def _order_static(ctx: _Ctx, out: dict[str, Any]) -> None:
    tables, q = ctx.tables, ctx.q_orders
    ts = q["order_ts"].dt.tz_convert("UTC")
    month = ts.dt.month.to_numpy(dtype=np.int64)
    day = ts.dt.day.to_numpy(dtype=np.int64)
    out["channel"] = q["channel"].array
    out["payment_method"] = q["payment_method"].array
    # destination and duties
    countries = tables.countries
    ci = ctx.q_country
    out["destination_region"] = _take_str(countries["region"], ci)
    default_inc = pd.Series(_take_str(countries["default_incoterm"], ci))
    eff = pd.Series(q["incoterm"].astype("str").array).fillna(default_inc)
    out["effective_incoterm"] = eff.array
    order_value_features(
        out,
        ts.dt.hour.to_numpy(dtype=np.int64),
        ts.dt.weekday.to_numpy(dtype=np.int64),
        month,
        day,
        value=_num(q["order_value"]),
        discount=_num(q["discount_value"]),
        shipping_fee=_num(q["shipping_fee"]),
        promised_days=_num(q["promised_delivery_days"]),
        de_minimis=_take_num(_num(countries["duty_de_minimis"]), ci),
        ddu=(eff == "DDU").fillna(False).to_numpy(dtype=bool),
        incoterm_known=eff.notna().to_numpy(),
    )

    # carrier
    carriers = tables.carriers
    ki = _lookup(q["carrier_id"], carriers["carrier_id"])
    out["carrier_name"] = _take_str(carriers["carrier_name"], ki)
    out["carrier_service_level"] = _take_str(carriers["service_level"], ki)
    out["carrier_tracked"] = _take_num(_bool_num(carriers["tracked"]), ki)

    # customer (static)
    customers = tables.customers
    ui = ctx.q_customer
    out["customer_segment"] = _take_str(customers["segment"], ui)
    home = pd.Series(_take_str(customers["country_code"], ui))
    dest = pd.Series(q["destination_country"].astype("str").array)
    same = (home == dest).fillna(False).to_numpy(dtype=bool)
    out["ships_to_customer_country"] = _flag(same, known=home.notna().to_numpy())


def order_value_features(
    out: dict[str, Any],
    hour: np.ndarray,
    weekday: np.ndarray,
    month: np.ndarray,
    day: np.ndarray,
    *,
    value: np.ndarray,
    discount: np.ndarray,
    shipping_fee: np.ndarray,
    promised_days: np.ndarray,
    de_minimis: np.ndarray,
    ddu: np.ndarray,
    incoterm_known: np.ndarray,
) -> None:
    """The order's own numbers and its duties (shared with the online store): time of day and
    season, value, discount share, fees, the promise, and DDU above the de-minimis."""
    out["order_hour"] = hour.astype(np.float64)
    out["order_weekday"] = weekday.astype(np.float64)
    out["order_month"] = month.astype(np.float64)
    out["is_peak_season"] = _flag(((month == 11) & (day >= 20)) | ((month == 12) & (day <= 24)))
    out["order_value"] = value
    out["shipping_fee"] = shipping_fee
    with np.errstate(divide="ignore", invalid="ignore"):
        out["discount_share"] = np.where(
            value + discount > 0, discount / (value + discount), np.nan
        )
        out["value_to_de_minimis"] = value / np.maximum(de_minimis, 1.0)
    out["promised_delivery_days"] = promised_days
    out["duty_de_minimis"] = de_minimis
    known = incoterm_known & ~(ddu & np.isnan(de_minimis))
    out["duties_due_on_arrival"] = _flag(ddu & (value > de_minimis), known=known)


# ---------------------------------------------------------------------------------------------
# items: order lines aggregated per (order, SKU), sorted by (order, SKU)


@dataclass(frozen=True)
class _Items:
    o: np.ndarray  # order row
    s: np.ndarray  # sku row
    qty: np.ndarray
    value: np.ndarray  # quantity * unit_price summed over the lines
    lines: np.ndarray
    max_price: np.ndarray
    q_rows: np.ndarray  # item rows of the queried orders (sorted by order)
    q_pos: np.ndarray  # for those rows, the position of the order among the queried orders


def _items(ctx: _Ctx) -> _Items:
    lines, skus = ctx.tables.order_lines, ctx.tables.skus
    o = _index_of(lines["order_id"], ctx.orders["order_id"], "order_lines.order_id")
    s = _index_of(lines["sku_id"], skus["sku_id"], "order_lines.sku_id")
    n_sku = max(len(skus), 1)
    key = o.astype(np.int64) * n_sku + s
    order = np.argsort(key, kind="stable")
    key = key[order]
    qty = _num(lines["quantity"])[order]
    price = _num(lines["unit_price"])[order]
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
    return _Items(
        o=io,
        s=(ukey % n_sku).astype(np.int64),
        qty=agg_qty,
        value=agg_val,
        lines=agg_lines,
        max_price=agg_max,
        q_rows=q_rows,
        q_pos=q_pos,
    )


def _weights(g: _Groups, value: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """Item weights for value-weighted means: the item's value, or its units when the whole
    order is free."""
    v = np.nan_to_num(value)
    total = g.sum(v)
    return np.where(total[g.pos] > 0, v, np.nan_to_num(qty)) if len(g.pos) else v


def _basket_features(ctx: _Ctx, items: _Items, out: dict[str, Any]) -> None:
    tables, cfg = ctx.tables, ctx.cfg
    skus, countries = tables.skus, tables.countries
    r = items.q_rows
    s = items.s[r]
    g = _Groups(items.q_pos, len(ctx.q_idx))

    # listing language vs the destination's languages (indicator matrices over a small vocab)
    ci = ctx.q_country[items.q_pos]
    sku_lists = _split_codes(skus["listing_languages"])
    cty_lists = _split_codes(countries["languages"])
    vocab = pc.unique(pa.concat_arrays([sku_lists[1], cty_lists[1]]))
    sku_m = _indicator(sku_lists, vocab, len(skus))
    cty_m = _indicator(cty_lists, vocab, len(countries))
    cti = np.where(ci >= 0, ci, 0)
    if len(vocab) and len(s) and len(countries):
        match = (sku_m[s] & cty_m[cti]).any(axis=1)
    else:
        match = np.zeros(len(s), dtype=bool)
    cty_known = countries["languages"].notna().to_numpy()
    known = skus["listing_languages"].notna().to_numpy()[s] & (
        (ci >= 0) & cty_known[cti] if len(countries) else np.zeros(len(s), bool)
    )

    # SKU attributes, computed once per SKU and then indexed
    apparel_sku = (
        skus["category"].str.lower().isin({c.lower() for c in cfg.apparel_categories})
        | skus["size"].notna()
    ).to_numpy(dtype=bool)
    size_code = np.where(skus["size"].notna().to_numpy(), codes(skus["size"]), -1)
    main = basket_features(
        out,
        g,
        n_lines=items.lines[r],
        qty=items.qty[r],
        value=items.value[r],
        max_price=items.max_price[r],
        list_price=_num(skus["list_price"])[s],
        weight=_num(skus["weight_g"])[s],
        images=_num(skus["n_images"])[s],
        size_chart=_bool_num(skus["has_size_chart"])[s],
        apparel=apparel_sku[s],
        category=codes(skus["category"])[s],
        product=codes(skus["product_id"].fillna(skus["sku_id"]))[s],
        size=size_code[s],
        language_match=match,
        language_known=known,
    )
    main_sku = np.full(len(main), -1, dtype=np.int64)
    main_sku[main >= 0] = s[main[main >= 0]]
    out["main_category"] = _take_str(skus["category"], main_sku)
    out["main_brand"] = _take_str(skus["brand"], main_sku)


def basket_features(
    out: dict[str, Any],
    g: _Groups,
    *,
    n_lines: np.ndarray,
    qty: np.ndarray,
    value: np.ndarray,
    max_price: np.ndarray,
    list_price: np.ndarray,
    weight: np.ndarray,
    images: np.ndarray,
    size_chart: np.ndarray,
    apparel: np.ndarray,
    category: np.ndarray,
    product: np.ndarray,
    size: np.ndarray,
    language_match: np.ndarray,
    language_known: np.ndarray,
) -> np.ndarray:
    """The basket, listing and size features from the orders' items (rows of ``g``; shared
    with the online store). ``category`` / ``product`` / ``size``: integer codes (size -1 when
    the SKU has none). Returns per order the item row of its main (most valuable) item, ties
    to the first, -1 when it has no items."""
    out["n_lines"] = g.sum(n_lines)
    out["n_units"] = g.sum(qty)
    out["n_distinct_skus"] = g.sum(np.ones(len(qty)))
    n_cat_codes = int(category.max(initial=0)) + 1
    pair = _unique(g.pos * n_cat_codes + category)
    n_cat = np.bincount(pair // n_cat_codes, minlength=g.n)
    out["n_distinct_categories"] = n_cat.astype(np.float64)
    out["max_unit_price"] = g.max(max_price)
    lp_ok = list_price > 0
    out["price_to_list_ratio"] = g.ratio(
        np.where(lp_ok, value, 0.0), np.where(lp_ok, qty * list_price, 0.0)
    )
    out["total_weight_g"] = g.sum(qty * weight, empty=np.nan)
    out["min_n_images"] = g.min(images)
    out["mean_n_images"] = g.mean(images)
    w = _weights(g, value, qty)
    out["listing_language_match"] = g.ratio(
        np.where(language_known & language_match, w, 0.0), np.where(language_known, w, 0.0)
    )

    # size and fit
    out["n_sized_units"] = g.sum(np.where(apparel, qty, 0.0))
    sized = size >= 0
    n_prod = int(product.max(initial=0)) + 1
    n_size = int(size.max(initial=0)) + 1
    trip = _unique((g.pos[sized] * n_prod + product[sized]) * n_size + size[sized])
    pp = trip // n_size  # sorted: one entry per (order, product, size)
    p_starts = np.flatnonzero(np.r_[True, pp[1:] != pp[:-1]]) if len(pp) else pp
    n_sizes = np.diff(np.r_[p_starts, len(pp)])
    pp = pp[p_starts] if len(pp) else pp
    bracket = np.zeros(g.n)
    bracket[(pp[n_sizes >= 2] // n_prod).astype(np.int64)] = 1.0
    out["size_bracketing"] = bracket
    multi = np.zeros(g.n)
    multi[g.pos[apparel & (qty > 1)]] = 1.0
    out["multi_qty_apparel"] = multi
    out["sized_without_size_chart"] = g.ratio(
        np.where(apparel & (size_chart == 0.0), qty, 0.0), np.where(apparel, qty, 0.0)
    )

    # main (most valuable) item: its category and brand; ties -> the first item row
    main = np.full(g.n, -1, dtype=np.int64)
    if len(g.pos):
        main[g.ids] = g.argbest(value)
    return main


# ---------------------------------------------------------------------------------------------
# cases and labels


@dataclass(frozen=True)
class _Cases:
    o: np.ndarray  # order row of each case (cases opened no later than as_of)
    ts: np.ndarray  # opened_ts, int64 ns
    case_type: pd.Series
    sku: pd.Series
    first_o: np.ndarray  # orders with a case ...
    first_ts: np.ndarray  # ... and their first case's opened_ts


def _cases(ctx: _Ctx) -> _Cases:
    cases = ctx.tables.after_sales_cases
    ts = ts_int(cases["opened_ts"])
    keep = (ts != _NAT) & (ts <= ctx.as_of_ns)
    cases = cases.loc[keep]
    ts = ts[keep]
    o = _index_of(cases["order_id"], ctx.orders["order_id"], "after_sales_cases.order_id")
    first_o, first_ts = _first_per_group(o, ts)
    return _Cases(
        o=o.astype(np.int64),
        ts=ts,
        case_type=cases["case_type"].reset_index(drop=True),
        sku=cases["sku_id"].reset_index(drop=True),
        first_o=first_o,
        first_ts=first_ts,
    )


def _labels(ctx: _Ctx, cases: _Cases, out: dict[str, Any]) -> None:
    window = ctx.cfg.label_window_days * DAY_NS
    first_case = np.full(len(ctx.orders), _NAT, dtype=np.int64)
    first_case[cases.first_o] = cases.first_ts
    t = ctx.q_ts
    fc = first_case[ctx.q_idx]
    mature = (t + window) <= ctx.as_of_ns
    positive = (fc != _NAT) & (fc >= t) & (fc <= t + window)
    out["mature"] = mature
    out["label"] = np.where(mature, positive.astype(np.float64), np.nan)
    out["first_case_ts"] = pd.DatetimeIndex(fc.view("datetime64[ns]")).tz_localize("UTC")


# ---------------------------------------------------------------------------------------------
# history


def order_outcomes(
    orders: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    label_window_days: int = 90,
) -> pd.DataFrame:
    """Per order: ``mature`` (outcome known) and ``label`` (1.0 when a case opened within the
    label window of the order, NaN when not mature): the labels of ``build_features`` (tested)
    without building features, for reports and summaries."""
    window = pd.Timedelta(days=label_window_days)
    first = (
        cases.loc[cases["opened_ts"] <= as_of, ["order_id", "opened_ts"]]
        .merge(orders[["order_id", "order_ts"]], on="order_id", how="inner")
        .loc[lambda d: (d["opened_ts"] - d["order_ts"]) <= window, "order_id"]
        .unique()
    )
    mature = (orders["order_ts"] + window) <= as_of
    label = np.where(mature, member_mask(orders["order_id"], first).astype("float64"), np.nan)
    return pd.DataFrame(
        {
            "order_id": orders["order_id"].to_numpy(),
            "order_ts": orders["order_ts"].to_numpy(),
            "mature": mature.to_numpy(dtype=bool),
            "label": label,
        }
    )


def _global_rate(ctx: _Ctx, name: str, event_ts: np.ndarray, default: float) -> np.ndarray:
    """Share of all orders placed before t with an event (first case) known before t, at each
    queried order, shrunk towards ``default``: the prior of the order-level rates."""
    n_events = _count_before(ctx, name, event_ts, ctx.q_ts)
    return smoothed_rate(n_events, ctx.orders_before, default, ctx.k)


def _customer_history(ctx: _Ctx, cases: _Cases, out: dict[str, Any]) -> None:
    k, q, q_ts = ctx.k, ctx.q_idx, ctx.q_ts
    cust = _codes(ctx, "customer", ctx.orders["customer_id"])
    ev = np.flatnonzero(ctx.o_known)
    orders_before = _prior_one(
        ctx, "customer_orders", cust[ev], ctx.o_ts[ev], cust[q], q_ts, with_times=True
    )
    type_values = {
        name: cases.case_type.isin(types).to_numpy(dtype=bool)
        for name, types in CUSTOMER_TYPE_GROUPS.items()
    }
    cases_before = _prior_one(
        ctx, "customer_cases", cust[cases.o], cases.ts, cust[q], q_ts, type_values, with_times=True
    )
    with_case = _prior_one(
        ctx, "customer_with_case", cust[cases.first_o], cases.first_ts, cust[q], q_ts
    ).count
    prior = _global_rate(ctx, "case", cases.first_ts, ctx.cfg.default_case_rate)
    customers = ctx.tables.customers
    ui = ctx.q_customer
    seen_all = ts_int(customers["first_seen_ts"])
    seen = np.where(ui >= 0, seen_all[np.where(ui >= 0, ui, 0)] if len(seen_all) else _NAT, _NAT)
    customer_features(out, k, q_ts, prior, orders_before, cases_before, with_case, seen)


def customer_features(
    out: dict[str, Any],
    k: float,
    q_ts: np.ndarray,
    prior: np.ndarray,
    orders: PriorAggregate,
    cases: PriorAggregate,
    with_case: np.ndarray,
    seen: np.ndarray,
) -> None:
    """The customer-history features from the customer's aggregates before each order
    (shared with the online store): orders (with times), cases (with times and type sums),
    orders with a case, and ``first_seen_ts`` (``_NAT`` when unknown)."""
    out["customer_prior_orders"] = orders.count.astype(np.float64)
    out["customer_prior_cases"] = cases.count.astype(np.float64)
    out["customer_case_rate"] = smoothed_rate(with_case, orders.count, prior, k)
    # tenure: from the earliest of first_seen_ts (when not after the order) and the first order
    first = np.where(orders.count > 0, orders.first_ts, _TS_MAX)
    first = np.where((seen != _NAT) & (seen <= q_ts), np.minimum(first, seen), first)
    has = first != _TS_MAX
    out["customer_tenure_days"] = np.where(has, (q_ts - np.where(has, first, 0)) / DAY_NS, 0.0)
    out["customer_days_since_last_order"] = orders.days_since(q_ts, "last")
    out["customer_days_since_last_case"] = cases.days_since(q_ts, "last")
    for name in CUSTOMER_TYPE_GROUPS:
        out[name] = cases.sums[name].astype(np.float64)


def _lane_history(ctx: _Ctx, cases: _Cases, out: dict[str, Any]) -> None:
    k, q, q_ts, cfg = ctx.k, ctx.q_idx, ctx.q_ts, ctx.cfg
    dest = _codes(ctx, "destination", ctx.orders["destination_country"])
    lane = _combine(ctx, "lane", dest, _codes(ctx, "carrier", ctx.orders["carrier_id"]))
    ev = np.flatnonzero(ctx.o_known)
    # orders with a case of one type, known from the first such case's opened_ts
    case_type = cases.case_type.to_numpy(dtype=object, na_value=None)
    first_of = {
        t: _first_per_group(cases.o[case_type == t], cases.ts[case_type == t])
        for t in ("not_received", "damaged", "duty_dispute")
    }
    # shipments delivered before the order: transit days and lateness against the promise
    ships = ctx.tables.shipments
    d_ts, s_ts = ts_int(ships["delivered_ts"]), ts_int(ships["shipped_ts"])
    ok = (d_ts != _NAT) & (s_ts != _NAT) & (d_ts <= ctx.as_of_ns)
    d_ts, s_ts = d_ts[ok], s_ts[ok]
    so = _index_of(ships["order_id"].loc[ok], ctx.orders["order_id"], "shipments.order_id")
    promised = _num(ctx.orders["promised_delivery_days"])[so]
    has_promise = ~np.isnan(promised)
    ship_vals = {
        "transit_s": (d_ts - s_ts) // 10**9,  # whole seconds: summed exactly
        "late": has_promise & ((d_ts - ctx.o_ts[so]) > np.nan_to_num(promised) * DAY_NS),
        "promised": has_promise,
    }
    nr_o, nr_ts = first_of["not_received"]
    dm_o, dm_ts = first_of["damaged"]
    lane_h = _prior(
        ctx,
        "lane",
        {
            "orders": (lane[ev], ctx.o_ts[ev], None),
            "case": (lane[cases.first_o], cases.first_ts, None),
            "not_received": (lane[nr_o], nr_ts, None),
            "damaged": (lane[dm_o], dm_ts, None),
            "ships": (lane[so], d_ts, ship_vals),
        },
        lane[q],
        q_ts,
    )
    dd_o, dd_ts = first_of["duty_dispute"]
    dest_h = _prior(
        ctx,
        "destination",
        {"orders": (dest[ev], ctx.o_ts[ev], None), "dispute": (dest[dd_o], dd_ts, None)},
        dest[q],
        q_ts,
    )
    # global history (the priors of the lane's and destination's rates): before each order
    global_counts = {
        "case": _count_before(ctx, "case", cases.first_ts, q_ts),
        "not_received": _count_before(ctx, "not_received", first_of["not_received"][1], q_ts),
        "damaged": _count_before(ctx, "damaged", first_of["damaged"][1], q_ts),
        "duty_dispute": _count_before(ctx, "duty_dispute", dd_ts, q_ts),
    }
    zero_d, zero_q = np.zeros(len(d_ts), np.int64), np.zeros(len(q_ts), np.int64)
    delivered = _prior_one(ctx, "ships", zero_d, d_ts, zero_q, q_ts, ship_vals)
    lane_features(out, k, cfg, lane_h, dest_h, ctx.orders_before, global_counts, delivered)


def lane_features(
    out: dict[str, Any],
    k: float,
    cfg: FeatureConfig,
    lane: Mapping[str, PriorAggregate],
    dest: Mapping[str, PriorAggregate],
    orders_before: np.ndarray,
    global_counts: Mapping[str, np.ndarray],
    delivered: PriorAggregate,
) -> None:
    """The lane and destination features from their aggregates before each order (shared with
    the online store): per lane its orders, orders with a case / not received / damaged and
    delivered shipments; per destination its orders and duty disputes; globally the orders
    placed, the orders with each kind of case and the delivered shipments (the priors)."""
    lane_orders = lane["orders"].count
    out["lane_prior_orders"] = lane_orders.astype(np.float64)
    out["destination_prior_orders"] = dest["orders"].count.astype(np.float64)
    prior_any = smoothed_rate(global_counts["case"], orders_before, cfg.default_case_rate, k)
    out["lane_case_rate"] = smoothed_rate(lane["case"].count, lane_orders, prior_any, k)
    for t, rate_col, count_col in (
        ("not_received", "lane_not_received_rate", "lane_prior_not_received"),
        ("damaged", "lane_damaged_rate", "lane_prior_damaged"),
    ):
        prior_t = smoothed_rate(global_counts[t], orders_before, cfg.default_type_rate, k)
        out[rate_col] = smoothed_rate(lane[t].count, lane_orders, prior_t, k)
        out[count_col] = lane[t].count.astype(np.float64)
    prior_dd = smoothed_rate(global_counts["duty_dispute"], orders_before, cfg.default_type_rate, k)
    out["destination_duty_dispute_rate"] = smoothed_rate(
        dest["dispute"].count, dest["orders"].count, prior_dd, k
    )
    day_s = 86_400.0
    n_del, before = delivered.count, delivered.sums
    g_transit = (before["transit_s"] / day_s + k * cfg.default_transit_days) / (n_del + k)
    g_late = smoothed_rate(before["late"], before["promised"], cfg.default_type_rate, k)
    sh = lane["ships"]
    out["lane_transit_days"] = (sh.sums["transit_s"] / day_s + k * g_transit) / (sh.count + k)
    out["lane_late_rate"] = smoothed_rate(sh.sums["late"], sh.sums["promised"], g_late, k)


def _case_items(
    ctx: _Ctx, items: _Items, cases: _Cases
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attribute cases to (order, SKU) items: the case's SKU when given, else every SKU of the
    order. Returns (order row, sku row, first opened_ts) per item with a case."""
    skus = ctx.tables.skus
    n_sku = max(len(skus), 1)
    sku_idx = _lookup(cases.sku, skus["sku_id"])  # -1 when missing
    direct = sku_idx >= 0
    keys = [cases.o[direct] * n_sku + sku_idx[direct]]
    times = [cases.ts[direct]]
    if (~direct).any():  # expand to the order's items: items are sorted by order row
        co, cts = cases.o[~direct], cases.ts[~direct]
        lo = np.searchsorted(items.o, co, side="left")
        hi = np.searchsorted(items.o, co, side="right")
        n = hi - lo
        rep = np.repeat(np.arange(len(co)), n)
        offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        rows = lo[rep] + offs
        keys.append(items.o[rows] * n_sku + items.s[rows])
        times.append(cts[rep])
    key, ts = _first_per_group(np.concatenate(keys), np.concatenate(times))
    return key // n_sku, key % n_sku, ts


def _item_history(ctx: _Ctx, items: _Items, cases: _Cases, out: dict[str, Any]) -> None:
    k, cfg, skus = ctx.k, ctx.cfg, ctx.tables.skus
    a_o, a_s, a_ts = _case_items(ctx, items, cases)
    it_ts = ctx.o_ts[items.o]
    ev = np.flatnonzero(ctx.o_known[items.o])
    r = items.q_rows
    q_ts = it_ts[r]

    sku = _codes(ctx, "sku", skus["sku_id"])
    cat = _codes(ctx, "category", skus["category"])
    prod = _codes(ctx, "product", skus["product_id"].fillna(skus["sku_id"]))
    dest = _codes(ctx, "destination", ctx.orders["destination_country"])
    cd = _combine(
        ctx,
        "category_destination",
        np.concatenate([cat[items.s], cat[a_s]]),
        np.concatenate([dest[items.o], dest[a_o]]),
    )
    cd_items, cd_cases = cd[: len(items.s)], cd[len(items.s) :]
    qty_int = np.rint(np.nan_to_num(items.qty)).astype(np.int64)

    levels = {
        "category": (cat[items.s], cat[a_s]),
        "sku": (sku[items.s], sku[a_s]),
        "product": (prod[items.s], prod[a_s]),
        "category_destination": (cd_items, cd_cases),
    }
    history = {
        name: _prior(
            ctx,
            name,
            {
                "items": (key_items[ev], it_ts[ev], {"units": qty_int[ev]}),
                "cases": (key_cases, a_ts, None),
            },
            key_items[r],
            q_ts,
        )
        for name, (key_items, key_cases) in levels.items()
    }
    g = _Groups(items.q_pos, len(ctx.q_idx))
    best = item_features(
        out,
        k,
        cfg,
        g,
        items.value[r],
        items.qty[r],
        _count_before(ctx, "item_cases", a_ts, q_ts),
        _count_before(ctx, "items", it_ts[ev], q_ts),
        history,
    )
    top_sku = np.full(len(best), -1, dtype=np.int64)
    top_sku[best >= 0] = items.s[r][best[best >= 0]]
    out["top_sku_id"] = _take_str(skus["sku_id"], top_sku)
    out["top_category"] = _take_str(skus["category"], top_sku)


def item_features(
    out: dict[str, Any],
    k: float,
    cfg: FeatureConfig,
    g: _Groups,
    value: np.ndarray,
    qty: np.ndarray,
    n_item_cases: np.ndarray,
    n_items: np.ndarray,
    history: Mapping[str, Mapping[str, PriorAggregate]],
) -> np.ndarray:
    """The SKU, product and category features of each order from its items' aggregates before
    it (shared with the online store). ``history[level]["items"]`` / ``["cases"]``: per item,
    the level's earlier items (with units) and items with a case, for the levels category, sku,
    product and category_destination; ``n_item_cases`` / ``n_items``: the global counts (the
    prior). Returns per order the item row of its riskiest SKU (-1 when it has none)."""

    def rate(level: str, prior: np.ndarray) -> np.ndarray:
        h = history[level]
        return smoothed_rate(h["cases"].count, h["items"].count, prior, k)

    cat_rate = rate("category", smoothed_rate(n_item_cases, n_items, cfg.default_case_rate, k))
    sku_rate = rate("sku", cat_rate)
    prod_rate = rate("product", cat_rate)
    cd_rate = rate("category_destination", cat_rate)
    sku_trials, sku_cases = history["sku"]["items"], history["sku"]["cases"].count
    w = _weights(g, value, qty)

    def wmean(x: np.ndarray) -> np.ndarray:
        return g.ratio(w * x, w)

    out["sku_min_prior_orders"] = g.min(sku_trials.count.astype(np.float64))
    out["sku_prior_units"] = g.sum(sku_trials.sums["units"].astype(np.float64))
    out["sku_prior_cases"] = g.sum(sku_cases.astype(np.float64))
    out["sku_case_rate_max"] = g.max(sku_rate)
    out["sku_case_rate_mean"] = wmean(sku_rate)
    out["product_case_rate_max"] = g.max(prod_rate)
    out["product_case_rate_mean"] = wmean(prod_rate)
    out["category_case_rate_mean"] = wmean(cat_rate)
    out["category_destination_case_rate_max"] = g.max(cd_rate)

    # riskiest SKU of each order (context for reason codes): highest rate, then value
    best = np.full(g.n, -1, dtype=np.int64)
    top_orders = np.full(g.n, np.nan)
    top_cases = np.full(g.n, np.nan)
    if len(g.pos):
        rows = g.argbest(sku_rate, value)
        best[g.ids] = rows
        top_orders[g.ids] = sku_trials.count[rows]
        top_cases[g.ids] = sku_cases[rows]
    out["sku_case_rate_top"] = g.max(sku_rate)
    out["top_sku_prior_orders"] = top_orders
    out["top_sku_prior_cases"] = top_cases
    return best


# ---------------------------------------------------------------------------------------------
# output


def _assemble(ctx: _Ctx, out: dict[str, Any]) -> pd.DataFrame:
    """The output frame; rows are already in (order_ts, order_id) order."""
    q = ctx.q_orders
    head = {
        "order_id": q["order_id"].astype("str").array,
        "order_ts": q["order_ts"].array,
        "customer_id": q["customer_id"].astype("str").array,
        "destination_country": q["destination_country"].astype("str").array,
        "carrier_id": q["carrier_id"].astype("str").array,
    }
    names = list(HEAD_COLUMNS) + list(FEATURE_SPECS) + list(CONTEXT_COLUMNS)
    unknown = set(out) - set(names)
    if unknown:  # every column must be declared in specs.py
        raise RuntimeError(f"undeclared feature-table columns: {sorted(unknown)}")
    cols: dict[str, Any] = {}
    seen: set[int] = set()
    for name in names:
        v = head[name] if name in head else out[name]
        if name == "mature":
            cols[name] = np.array(v, dtype=bool)
        elif name in ("order_ts", "first_case_ts"):
            cols[name] = pd.DatetimeIndex(v).tz_convert("UTC").array.copy()
        elif name in head or name in CATEGORICAL_FEATURES or name in _STR_CONTEXT:
            cols[name] = pd.array(v, dtype="str").copy()  # never share an array with the input
        else:
            a = np.asarray(v, dtype=np.float64)
            if a.base is not None or not a.flags.writeable or id(a) in seen:
                a = a.copy()  # a view (maybe of an input column) or used twice: own it
            seen.add(id(a))
            cols[name] = a
    # one block per column, no consolidation copy: every array here is owned by this frame
    return pd.DataFrame(cols, copy=False)


def write_features(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the feature table as Parquet or CSV (chosen by the file extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"feature table file must end in .parquet or .csv, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
