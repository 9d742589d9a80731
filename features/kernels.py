"""Array kernels of the feature table: key codes, the point-in-time join, per-order reductions.

Nothing here knows a table or a feature: integer codes, int64 nanosecond times and float arrays
in, arrays out. ``history`` (the build context) and ``families`` (the feature formulas) are
written in these terms, and so is the online store.

The point-in-time join (Feast's "as-of" join) is one chain of named steps that every history
feature goes through (``history.Context.prior`` / ``prior_one`` / ``count_before``):

1. **join on key**: events and queries get integer key codes from the same values (``codes``,
   ``combine_codes``; a pair of codes packs as ``a * PACK + b`` for the prepared history);
2. **UTC**: every time is UTC int64 nanoseconds (``returnrisk.arrays.ts_int``), a missing one
   ``NAT`` (the event is ignored);
3. **filter to the past, strictly**: a query at t sees the events with ``known_ts < t``, never
   one at t itself (``index_events`` sorts the events once, ``query_events`` finds each query's
   run ``[start, pos)`` with ``np.searchsorted``);
4. **keep the latest**: count, sums and the first / latest event time before each query
   (``PriorAggregate``; ``days_since(t, "last")``).

Implementation: (code, time) is packed into one sortable int64 (time in the coarsest exact unit,
or dense ranks when that would overflow); sums come from a cumulative sum (integers summed
exactly, so the result does not depend on which other events exist). O((E + Q) log(E + Q)); no
Python loop over rows or keys; queries never see each other. ``prior_aggregate_many`` evaluates
several event sources against the same queries in one pass. The sorted events with their
cumulative sums are an ``EventIndex`` that can be queried again; aggregates over disjoint event
sets add up (``add_aggregates``), which is how a prepared history serves new orders without
re-sorting it.

Per-order reductions: ``Groups`` reduces item rows sorted by order with ``np.*.reduceat``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from returnrisk.arrays import NAT, lookup

PACK = 2**32  # a pair of key codes (a, b) as the one code a * PACK + b (codes are below PACK)


# ---------------------------------------------------------------------------------------------
# the point-in-time join


def codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Integer codes of one key column; a missing value is a key of its own."""
    return pd.factorize(
        pd.Series(values) if isinstance(values, np.ndarray) else values, use_na_sentinel=False
    )[0].astype(np.int64)


def combine_codes(*code_arrays: np.ndarray) -> np.ndarray:
    """One integer code per distinct tuple of integer codes (a multi-column key)."""
    if not code_arrays:
        raise ValueError("combine_codes needs at least one key")
    out = np.asarray(code_arrays[0], dtype=np.int64)
    for nxt in code_arrays[1:]:
        nxt = np.asarray(nxt, dtype=np.int64)
        out = out * (int(nxt.max(initial=0)) + 1) + nxt
        out = pd.factorize(out)[0].astype(np.int64)
    return out


@dataclass(frozen=True)
class PriorAggregate:
    """Per query: events strictly before it with the same key."""

    count: np.ndarray  # int64
    sums: dict[str, np.ndarray]  # float64 per value column
    first_ts: np.ndarray  # int64 ns, NAT when count == 0
    last_ts: np.ndarray  # int64 ns, NAT when count == 0

    def days_since(self, query_ts: np.ndarray, which: str = "last") -> np.ndarray:
        """Days between the first/last event and the query (NaN when there is none)."""
        ts = self.last_ts if which == "last" else self.first_ts
        out = (query_ts - ts) / 86_400e9
        return np.where(self.count > 0, out, np.nan)


@dataclass(frozen=True)
class EventIndex:
    """Events sorted once by (key, time), with cumulative sums of their value columns: the
    reusable half of ``prior_aggregate`` (``index_events`` builds it, ``query_events`` reads it).

    Times are packed as ``key * m + t`` with ``t`` the time in the coarsest exact unit of the
    events (s, ms, us, ns) when that fits in int64, else the dense rank of the time among the
    distinct event times; a query time needs no exact unit (it is rounded up, which keeps
    "strictly before" exact)."""

    packed: np.ndarray  # sorted key * m + t
    ts: np.ndarray  # event times in the same order (int64 ns)
    cums: dict[str, np.ndarray]  # per value column: cumulative sum with a leading 0
    n_keys: int  # event keys are < n_keys
    m: int  # time modulus
    lo: int  # unit mode: time origin
    unit: int  # unit mode: time unit (0 in rank mode)
    times: np.ndarray  # rank mode: the distinct event times, sorted

    def __len__(self) -> int:
        return len(self.packed)


def index_events(
    event_key: np.ndarray,
    event_ts: np.ndarray,
    values: Mapping[str, np.ndarray] | None = None,
) -> EventIndex:
    """Sort events by (key, time) once; events with a missing timestamp are ignored.
    Integer value columns are summed exactly (int64); float columns as float64 (NaN as 0)."""
    values = dict(values or {})
    event_key = np.asarray(event_key, dtype=np.int64)
    event_ts = np.asarray(event_ts, dtype=np.int64)
    keep = event_ts != NAT
    if not keep.all():
        event_key, event_ts = event_key[keep], event_ts[keep]
        values = {k: np.asarray(v)[keep] for k, v in values.items()}
    n_keys = int(event_key.max(initial=0)) + 1
    times = np.zeros(0, np.int64)
    lo, unit = 0, 1
    if len(event_ts):
        lo, hi = int(event_ts.min()), int(event_ts.max())
        for unit in (10**9, 10**6, 10**3, 1):
            if unit == 1 or not (event_ts % unit).any():
                break
        span = (hi - lo) // unit + 2
    else:
        span = 2
    m = span + 1
    if m * (n_keys + 1) < 2**62:
        te = (event_ts - lo) // unit + 1  # in [1, span - 1]
    else:  # dense ranks: always fits
        times, te = np.unique(event_ts, return_inverse=True)
        te = te.astype(np.int64) + 1
        unit, m = 0, len(times) + 2
    ev_packed = event_key * m + te
    order_e = np.argsort(ev_packed)
    cums: dict[str, np.ndarray] = {}
    for name, v in values.items():
        v = np.asarray(v)
        if v.dtype.kind in "iub":
            cums[name] = np.concatenate([[0], np.cumsum(v[order_e].astype(np.int64))])
        else:
            v_sorted = np.nan_to_num(v.astype(np.float64)[order_e], nan=0.0)
            cums[name] = np.concatenate([[0.0], np.cumsum(v_sorted)])
    return EventIndex(
        packed=ev_packed[order_e],
        ts=event_ts[order_e],
        cums=cums,
        n_keys=n_keys,
        m=m,
        lo=lo,
        unit=unit,
        times=times,
    )


def _query_times(index: EventIndex, query_ts: np.ndarray) -> np.ndarray:
    """Query times on the index's scale: an event is before the query iff its t < this."""
    q = np.asarray(query_ts, dtype=np.int64)
    if index.unit == 0:  # rank mode: number of distinct event times before + 1
        return np.searchsorted(index.times, q, side="left").astype(np.int64) + 1
    unit, lo = index.unit, index.lo
    span = index.m - 1
    # no overflow; beyond the ends is the same (ufuncs: np.clip costs more on small arrays)
    q = np.minimum(np.maximum(q, lo - unit), lo + (span + 1) * unit)
    return np.minimum(np.maximum(-((lo - q) // unit) + 1, 0), span)  # ceil((q - lo) / unit) + 1


def _query_time(index: EventIndex, q: int) -> int:
    """``_query_times`` of one query, in Python integers (the same floor division)."""
    if index.unit == 0:
        return int(np.searchsorted(index.times, q, side="left")) + 1
    unit, lo, span = index.unit, index.lo, index.m - 1
    q = min(max(q, lo - unit), lo + (span + 1) * unit)
    return min(max(-((lo - q) // unit) + 1, 0), span)


def query_one(index: EventIndex, key: int, t: int, *, with_times: bool = False) -> PriorAggregate:
    """``query_events`` of one query (the service's online store): scalar steps, no arrays to
    sort or share; the same positions, so the same sums to the bit."""
    qk = min(key, index.n_keys)  # a key beyond the events': none of them
    ev_sorted = index.packed
    pos = int(ev_sorted.searchsorted(qk * index.m + _query_time(index, t), side="left"))
    start = int(ev_sorted.searchsorted(qk * index.m, side="left"))
    first = last = NAT
    if with_times and pos > start:
        first, last = int(index.ts[start]), int(index.ts[pos - 1])
    return PriorAggregate(
        count=np.array([pos - start], dtype=np.int64),
        sums={name: cs[pos : pos + 1] - cs[start : start + 1] for name, cs in index.cums.items()},
        first_ts=np.array([first], dtype=np.int64),
        last_ts=np.array([last], dtype=np.int64),
    )


def query_events(
    index: EventIndex,
    query_key: np.ndarray,
    query_ts: np.ndarray,
    *,
    with_times: bool = False,
) -> PriorAggregate:
    """Per query: the indexed events with the same key and a time strictly before."""
    query_key = np.asarray(query_key, dtype=np.int64)
    n_q = len(query_key)
    if n_q == 1:  # one query (the service's online store): nothing to sort or share
        t = int(np.asarray(query_ts, dtype=np.int64)[0])
        return query_one(index, int(query_key[0]), t, with_times=with_times)
    qk = np.minimum(query_key, index.n_keys)  # a key beyond the events': none of them
    q_packed = qk * index.m + _query_times(index, query_ts)
    ev_sorted = index.packed
    if n_q == 0:
        empty = np.zeros(0, dtype=np.int64)
        sums0 = {name: cs[empty] for name, cs in index.cums.items()}
        return PriorAggregate(count=empty, sums=sums0, first_ts=empty, last_ts=empty.copy())
    order_q = np.argsort(q_packed)  # sorted needles make searchsorted cache-friendly
    pos = np.empty(n_q, dtype=np.int64)
    start = np.empty(n_q, dtype=np.int64)
    pos[order_q] = np.searchsorted(ev_sorted, q_packed[order_q], side="left")
    # the start of a key's events: searched once per distinct query key, then repeated
    qk_sorted = qk[order_q]
    run = np.flatnonzero(np.concatenate(([True], qk_sorted[1:] != qk_sorted[:-1])))
    run_start = np.searchsorted(ev_sorted, qk_sorted[run] * index.m, side="left")
    start[order_q] = np.repeat(run_start, np.diff(np.append(run, n_q)))
    count = pos - start
    sums = {name: cs[pos] - cs[start] for name, cs in index.cums.items()}
    first = np.full(n_q, NAT, dtype=np.int64)
    last = np.full(n_q, NAT, dtype=np.int64)
    if with_times:
        has = count > 0
        first[has] = index.ts[start[has]]
        last[has] = index.ts[pos[has] - 1]
    return PriorAggregate(count=count, sums=sums, first_ts=first, last_ts=last)


def add_aggregates(a: PriorAggregate, b: PriorAggregate) -> PriorAggregate:
    """The aggregate over the union of two disjoint event sets queried alike."""
    first = np.where(
        a.count == 0,
        b.first_ts,
        np.where(b.count == 0, a.first_ts, np.minimum(a.first_ts, b.first_ts)),
    )
    last = np.where(
        a.count == 0, b.last_ts, np.where(b.count == 0, a.last_ts, np.maximum(a.last_ts, b.last_ts))
    )
    return PriorAggregate(
        count=a.count + b.count,
        sums={k: a.sums[k] + b.sums[k] for k in a.sums},
        first_ts=first,
        last_ts=last,
    )


def windowed(now: PriorAggregate, then: PriorAggregate) -> PriorAggregate:
    """The events of a recent window ``[t - w, t)``: those strictly before ``t`` (``now``) minus
    those strictly before ``t - w`` (``then``), queried alike. Counts and integer sums are exact;
    the window's first and last times are not kept (``NAT``)."""
    nat = np.full(len(now.count), NAT, dtype=np.int64)
    return PriorAggregate(
        count=now.count - then.count,
        sums={k: now.sums[k] - then.sums[k] for k in now.sums},
        first_ts=nat,
        last_ts=nat.copy(),
    )


def prior_aggregate(
    event_key: np.ndarray,
    event_ts: np.ndarray,
    query_key: np.ndarray,
    query_ts: np.ndarray,
    values: Mapping[str, np.ndarray] | None = None,
    *,
    with_times: bool = False,
) -> PriorAggregate:
    """Aggregate events with ``event_key == query_key`` and ``event_ts < query_ts``.

    Keys are integer codes from ``codes`` / ``combine_codes``; timestamps int64 ns (``ts_int``).
    Events with a missing timestamp are ignored. Integer value columns are summed exactly (int64);
    float columns as float64 with NaN counted as 0. ``with_times`` also returns the first and
    last event time before each query (else those arrays are all ``NAT``).
    """
    index = index_events(event_key, event_ts, values)
    return query_events(index, query_key, query_ts, with_times=with_times)


def _many_columns(
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Several event sources as one event set with a count column per source."""
    keys, times, owner = [], [], []
    for i, (key, ts, _) in enumerate(sources.values()):
        keys.append(np.asarray(key, dtype=np.int64))
        times.append(np.asarray(ts, dtype=np.int64))
        owner.append(np.full(len(ts), i, dtype=np.int64))
    src = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    columns: dict[str, np.ndarray] = {}
    for i, (name, (_, _, vals)) in enumerate(sources.items()):
        columns[f"{name}\0n"] = src == i
        for vname, v in (vals or {}).items():
            v = np.asarray(v)
            full = np.zeros(len(src), dtype=np.int64 if v.dtype.kind in "iub" else np.float64)
            full[src == i] = v
            columns[f"{name}\0{vname}"] = full
    return (
        np.concatenate(keys) if keys else np.zeros(0, np.int64),
        np.concatenate(times) if times else np.zeros(0, np.int64),
        columns,
    )


def index_many(
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]],
) -> EventIndex:
    """``index_events`` of several event sources at once (see ``prior_aggregate_many``)."""
    return index_events(*_many_columns(sources))


def split_many(
    agg: PriorAggregate,
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]],
) -> dict[str, PriorAggregate]:
    """Per source, its count and sums out of an aggregate of ``index_many(sources)``."""
    return split_columns(agg, {name: tuple(vals or ()) for name, (_, _, vals) in sources.items()})


def split_columns(
    agg: PriorAggregate, sources: Mapping[str, Sequence[str]]
) -> dict[str, PriorAggregate]:
    """``split_many`` by names: source name -> the names of its value columns."""
    out: dict[str, PriorAggregate] = {}
    nat = np.full(len(agg.count), NAT, dtype=np.int64)
    for name, vals in sources.items():
        out[name] = PriorAggregate(
            count=agg.sums[f"{name}\0n"],
            sums={v: agg.sums[f"{name}\0{v}"] for v in vals},
            first_ts=nat,
            last_ts=nat,
        )
    return out


def prior_aggregate_many(
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray] | None]],
    query_key: np.ndarray,
    query_ts: np.ndarray,
) -> dict[str, PriorAggregate]:
    """``prior_aggregate`` of several event sources against the same queries in one pass.

    ``sources`` maps a name to (event_key, event_ts, values or None); the result maps the same
    names to the count and sums of that source only. One sort and one search instead of one
    per source (the queries are the expensive part).
    """
    return split_many(query_events(index_many(sources), query_key, query_ts), sources)


def smoothed_rate(
    events: np.ndarray, trials: np.ndarray, prior: np.ndarray | float, strength: float
) -> np.ndarray:
    """(events + k * prior) / (trials + k): equals the prior at cold start, never NaN."""
    return (np.asarray(events, float) + strength * prior) / (np.asarray(trials, float) + strength)


# ---------------------------------------------------------------------------------------------
# lookups, per-row conversions and per-order reductions


def index_of(keys: pd.Series, table: pd.Series, what: str) -> np.ndarray:
    """Row positions of ``keys`` in the unique column ``table``. The contract refuses unknown keys
    before features are built (``check_frames``' foreign keys; ``check_new`` for new rows against
    a history): the ``ValueError`` for one is a bug check, not the refusal a user sees."""
    idx = lookup(keys, table)
    bad = idx < 0
    if bad.any():
        examples = ", ".join(map(str, pd.unique(np.asarray(keys)[bad])[:5]))
        raise ValueError(
            f"{what}: {int(bad.sum())} rows refer to keys that do not exist (e.g. {examples})"
        )
    return idx


def output_order(order_id: pd.Series, ts: np.ndarray) -> np.ndarray | None:
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


def split_tokens(column: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """A comma-separated column ("en,de") as (row, token) pairs; a null has none."""
    arr = pa.array(column.astype("str")).cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lists = pc.split_pattern(arr, ",")
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    rows = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    return rows, tokens


def indicator(split: tuple[np.ndarray, pa.Array], vocab: pa.Array, n: int) -> np.ndarray:
    """Boolean matrix (n rows x vocab) from ``split_tokens`` pairs."""
    rows, tokens = split
    mat = np.zeros((n, len(vocab)), dtype=bool)
    if len(rows):
        col = pc.index_in(tokens, value_set=vocab).to_numpy(zero_copy_only=False)
        mat[rows, col.astype(np.int64)] = True
    return mat


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int array (sort-based; fast for large arrays)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


def take_str(column: pd.Series, idx: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``column[idx]`` as a "str" array; idx == -1 gives a missing value."""
    arr = column.astype("str").array
    return arr.take(np.asarray(idx, dtype=np.int64), allow_fill=True)


def take_float(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` as float64; idx == -1 gives NaN."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return np.full(len(idx), np.nan)
    out = values[np.where(idx >= 0, idx, 0)]
    out[idx < 0] = np.nan
    return out


def as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


def bool_as_float(s: pd.Series) -> np.ndarray:
    """Nullable bool as float: 1.0 / 0.0 / NaN."""
    return s.astype("boolean").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def flag(mask: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    out = np.asarray(mask).astype(np.float64)
    if known is not None:
        out[~np.asarray(known)] = np.nan
    return out


def first_per_group(key: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique integer keys and the earliest ts per key."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((ts, key))
    k_sorted = key[order]
    first = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
    return k_sorted[first].astype(np.int64), ts[order][first]


class Groups:
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
