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
"""

from __future__ import annotations

from collections.abc import Mapping
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


def _packed_times(
    event_ts: np.ndarray, query_ts: np.ndarray, n_keys: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Times as small non-negative ints (same order, ties kept) and their modulus ``m`` such that
    ``key * m + t`` fits in int64: the raw times in the coarsest exact unit (s, ms, us, ns) when
    that fits, else dense ranks."""
    both = np.concatenate([event_ts, query_ts])
    if not len(both):
        return event_ts, query_ts, 2
    lo, hi = int(both.min()), int(both.max())
    for unit in (10**9, 10**6, 10**3, 1):
        if unit == 1 or not (both % unit).any():
            break
    span = (hi - lo) // unit + 2
    if span * (n_keys + 1) < 2**62:
        t = (both - lo) // unit + 1
    else:  # dense ranks: always fits
        t = np.unique(both, return_inverse=True)[1].astype(np.int64) + 1
        span = int(t.max()) + 1
    return t[: len(event_ts)], t[len(event_ts) :], span


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
    values = dict(values or {})
    event_key = np.asarray(event_key, dtype=np.int64)
    query_key = np.asarray(query_key, dtype=np.int64)
    keep = event_ts != _NAT
    if not keep.all():
        event_key, event_ts = event_key[keep], event_ts[keep]
        values = {k: np.asarray(v)[keep] for k, v in values.items()}
    n_keys = int(max(event_key.max(initial=0), query_key.max(initial=0))) + 1
    te, tq, m = _packed_times(event_ts, query_ts, n_keys)
    ev_packed = event_key * m + te
    order_e = np.argsort(ev_packed)
    ev_sorted = ev_packed[order_e]
    q_packed = query_key * m + tq
    order_q = np.argsort(q_packed)  # sorted needles make searchsorted cache-friendly
    pos = np.empty(len(query_key), dtype=np.int64)
    start = np.empty(len(query_key), dtype=np.int64)
    pos[order_q] = np.searchsorted(ev_sorted, q_packed[order_q], side="left")
    # the start of a key's events: searched once per distinct query key, then repeated
    qk_sorted = query_key[order_q]
    if len(qk_sorted):
        run = np.flatnonzero(np.r_[True, qk_sorted[1:] != qk_sorted[:-1]])
        run_start = np.searchsorted(ev_sorted, qk_sorted[run] * m, side="left")
        start[order_q] = np.repeat(run_start, np.diff(np.r_[run, len(qk_sorted)]))
    count = pos - start
    sums: dict[str, np.ndarray] = {}
    for name, v in values.items():
        v = np.asarray(v)
        if v.dtype.kind in "iub":
            cs = np.concatenate([[0], np.cumsum(v[order_e].astype(np.int64))])
            sums[name] = cs[pos] - cs[start]
        else:
            v_sorted = np.nan_to_num(v.astype(np.float64)[order_e], nan=0.0)
            cs = np.concatenate([[0.0], np.cumsum(v_sorted)])
            sums[name] = cs[pos] - cs[start]
    first = np.full(len(query_ts), _NAT, dtype=np.int64)
    last = np.full(len(query_ts), _NAT, dtype=np.int64)
    if with_times:
        ts_sorted = event_ts[order_e]
        has = count > 0
        first[has] = ts_sorted[start[has]]
        last[has] = ts_sorted[pos[has] - 1]
    return PriorAggregate(count=count, sums=sums, first_ts=first, last_ts=last)


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
    agg = prior_aggregate(
        np.concatenate(keys) if keys else np.zeros(0, np.int64),
        np.concatenate(times) if times else np.zeros(0, np.int64),
        query_key,
        query_ts,
        columns,
    )
    out: dict[str, PriorAggregate] = {}
    nat = np.full(len(query_ts), _NAT, dtype=np.int64)
    for name, (_, _, vals) in sources.items():
        out[name] = PriorAggregate(
            count=agg.sums[f"{name}\0n"],
            sums={v: agg.sums[f"{name}\0{v}"] for v in (vals or {})},
            first_ts=nat,
            last_ts=nat,
        )
    return out


def smoothed_rate(
    events: np.ndarray, trials: np.ndarray, prior: np.ndarray | float, strength: float
) -> np.ndarray:
    """(events + k * prior) / (trials + k): equals the prior at cold start, never NaN."""
    return (np.asarray(events, float) + strength * prior) / (np.asarray(trials, float) + strength)
