"""The base package's shared helpers: ``returnrisk.arrays``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from returnrisk.arrays import NAT, lookup, member_mask, to_utc, ts_int


def test_to_utc_scalars_and_columns() -> None:
    naive = pd.Timestamp("2025-03-01 12:00")
    paris = pd.Timestamp("2025-03-01 13:00", tz="Europe/Paris")
    assert to_utc(naive) == to_utc(paris) == pd.Timestamp("2025-03-01 12:00", tz="UTC")
    assert str(to_utc("2025-03-01T12:00:00").tz) == "UTC"
    for s in (pd.Series([naive, pd.NaT]), pd.Series([paris, pd.NaT])):
        out = to_utc(s)
        assert str(out.dt.tz) == "UTC"
        assert out.iloc[0] == pd.Timestamp("2025-03-01 12:00", tz="UTC")
        assert pd.isna(out.iloc[1])
    assert len(to_utc(pd.Series([], dtype=object))) == 0


def test_ts_int_lookup_and_member_mask() -> None:
    s = to_utc(pd.Series([pd.Timestamp("1970-01-01 00:00:01"), pd.NaT]))
    assert ts_int(s).tolist() == [10**9, NAT]
    keys = pd.Series(["b", None, "x", "a"], dtype="str")
    table = pd.Series(["a", "b", "c"], dtype="str")
    assert lookup(keys, table).tolist() == [1, -1, -1, 0]
    np.testing.assert_array_equal(member_mask(keys, ["a", "b"]), [True, False, False, True])
