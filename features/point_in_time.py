"""The one point-in-time join every history feature goes through.

A Feast-like "as-of" aggregation: *events* (key, known_ts, values) and *queries* (key, ts).
For each query it returns, over the events with the same key and ``known_ts < ts`` (strictly
before), the number of events, the sum of each value column, and the first / last known_ts.

Implementation: keys are integer codes (``codes`` / ``combine_codes``, computed once over the
whole table that both events and queries come from); (code, time) is packed into one sortable
int64 (time in the coarsest exact unit, or dense ranks when that would overflow). After one sort
of the events and of the queries, a query's events-before are a contiguous run ``[start, pos)``
found with ``np.searchsorted``; sums come from a cumulative sum (integers summed exactly, so the
result does not depend on which other events exist). O((E + Q) log(E + Q)); no Python loop over
rows or keys; queries never see each other (a tie at the same timestamp is not "before").
``prior_aggregate_many`` evaluates several event sources against the same queries in one pass.
The sorted events with their cumulative sums are an ``EventIndex`` (``index_events``) that can be
queried again (``query_events``); aggregates over disjoint event sets add up (``add_aggregates``),
which is how a prepared history serves new orders without re-sorting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

_NAT = np.iinfo(np.int64).min


def ts_int(s: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds (NaT -> int64 min)."""
    return (
        s.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8.copy() if len(s) else np.zeros(0, "i8")
    )


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
    first_ts: np.ndarray  # int64 ns, _NAT when count == 0
    last_ts: np.ndarray  # int64 ns, _NAT when count == 0

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
    keep = event_ts != _NAT
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
    qk = np.minimum(query_key, index.n_keys)  # a key beyond the events': none of them
    q_packed = qk * index.m + _query_times(index, query_ts)
    ev_sorted = index.packed
    if n_q <= 1:  # one query (the service's online store): nothing to sort or share
        pos = np.searchsorted(ev_sorted, q_packed, side="left")
        start = np.searchsorted(ev_sorted, qk * index.m, side="left")
    else:
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
    first = np.full(n_q, _NAT, dtype=np.int64)
    last = np.full(n_q, _NAT, dtype=np.int64)
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
    last event time before each query (else those arrays are all ``_NAT``).
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
    nat = np.full(len(agg.count), _NAT, dtype=np.int64)
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
