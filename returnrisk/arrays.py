"""Array helpers every stage shares: set membership and lookups in Arrow, UTC timestamps.

- ``member_mask(values, allowed)`` / ``lookup(keys, table)``: ``isin`` and row positions of
  string keys, computed in Arrow (pandas loops in Python);
- ``to_utc(value)``: a timestamp, or a column of them, in UTC (naive values are UTC);
- ``ts_int(column)``: UTC timestamps as int64 nanoseconds, ``NAT`` for a missing one;
  ``DAY_NS``: one day in nanoseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NAT = np.iinfo(np.int64).min  # a missing timestamp in int64 nanoseconds (``ts_int``)
DAY_NS = 86_400 * 10**9


def member_mask(values: pd.Series, allowed: Iterable[object] | pd.Series) -> np.ndarray:
    """``values.isin(allowed)`` as a bool array, computed in Arrow (pandas loops in Python)."""
    if not isinstance(allowed, pd.Series):  # any iterable: list, tuple, set, Index
        allowed = pd.Series(list(allowed), dtype=object)
    value_set = pa.array(allowed.dropna().astype("str").unique(), type=pa.string())
    found = pc.is_in(pa.array(values.astype("str"), from_pandas=True), value_set=value_set)
    return found.fill_null(False).to_numpy(zero_copy_only=False)


def lookup(keys: pd.Series, table: pd.Series) -> np.ndarray:
    """Row positions of ``keys`` in the unique column ``table`` (-1 when absent or missing)."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    if not len(table):
        return np.full(len(keys), -1, dtype=np.int64)
    k = pa.array(pd.Series(keys).astype("str")).cast(pa.large_string())
    t = pa.array(pd.Series(table).astype("str")).cast(pa.large_string())
    found = pc.index_in(k, value_set=t, skip_nulls=True)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def to_utc(value: Any) -> Any:
    """A timestamp (anything ``pd.Timestamp`` reads) as a UTC ``pd.Timestamp``, or a column of
    them as a UTC ``pd.Series``: a naive value is taken as UTC, an aware one converted."""
    if isinstance(value, pd.Series):
        s = value if pd.api.types.is_datetime64_any_dtype(value) else pd.to_datetime(value)
        return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def ts_int(s: pd.Series) -> np.ndarray:
    """Timezone-aware timestamps as UTC int64 nanoseconds (NaT -> ``NAT``)."""
    return (
        s.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8.copy() if len(s) else np.zeros(0, "i8")
    )
