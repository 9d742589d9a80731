"""The label: an order is positive when an after-sales case opens within the label window.

``order_outcomes`` is the one definition: the feature table (``build_features``), the importers'
case rates and the SKU report all call it. An order placed at t is *mature* (its outcome known)
when ``t + window <= as_of``; its label is 1.0 when its first case known at ``as_of`` opened in
``[t, t + window]``, 0.0 when not, NaN while it is not mature.

The module imports numpy and pandas inside ``order_outcomes`` only, so the command line can use
``LABEL_WINDOW_DAYS`` as an option's default without loading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

LABEL_WINDOW_DAYS = 90


def order_outcomes(
    orders: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    as_of: Any,
    label_window_days: int = LABEL_WINDOW_DAYS,
) -> pd.DataFrame:
    """Per row of ``orders`` (same order): ``order_id``, ``order_ts``, ``mature``, ``label`` and
    ``first_case_ts`` (the opened_ts of the order's first case known at ``as_of``, NaT when none).

    ``orders`` needs ``order_id`` and ``order_ts``, ``cases`` ``order_id`` and ``opened_ts``
    (timestamps naive UTC or aware; a missing one is ignored); ``as_of`` is a timestamp. Cases
    of orders not in ``orders`` are ignored."""
    import numpy as np
    import pandas as pd

    from returnrisk.arrays import DAY_NS, NAT, lookup, to_utc, ts_int

    as_of_ns = int(to_utc(as_of).as_unit("ns").value)
    t = ts_int(to_utc(orders["order_ts"]))
    # the first case of each order known at as_of
    c_ts = ts_int(to_utc(cases["opened_ts"]))
    known = (c_ts != NAT) & (c_ts <= as_of_ns)
    code, ids = pd.factorize(cases["order_id"].loc[known])
    first = np.full(len(ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, code[code >= 0], c_ts[known][code >= 0])
    pos = lookup(orders["order_id"], pd.Series(ids, dtype=object))
    fc = np.full(len(t), NAT, dtype=np.int64)
    fc[pos >= 0] = first[pos[pos >= 0]]

    window = label_window_days * DAY_NS
    mature = (t != NAT) & ((t + window) <= as_of_ns)
    positive = (fc != NAT) & (fc >= t) & (fc <= t + window)
    return pd.DataFrame(
        {
            "order_id": orders["order_id"].array,
            "order_ts": orders["order_ts"].array,
            "mature": mature,
            "label": np.where(mature, positive.astype(np.float64), np.nan),
            "first_case_ts": pd.DatetimeIndex(fc.view("datetime64[ns]")).tz_localize("UTC"),
        }
    )
