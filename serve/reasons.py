"""Reason codes: SHAP contributions grouped into drivers a person in operations understands.

A *driver* is one feature family of ``FEATURE_SPECS`` (duties, logistics, customer, ...): its
contribution is the sum of its features' SHAP values (log-odds). Each order gets its top drivers
(largest risk-raising contribution first) with a sentence that quotes the order's own values,
e.g. "ships DDU, 182 above the DE duty-free limit of 150".

Everything is column-wise on ``numpy`` arrays: the contributions become one float matrix, the
quoted columns of the feature table are converted once per call, each family's sentences are
built for all the orders that need them at once (string operations on object arrays), then a
per-row pick of the top families (no Python loop over orders). No per-family pandas work: one
row costs well under a millisecond, which is what the HTTP service pays per flagged order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from returnrisk.features.specs import FeatureSpec

_INT_LIMIT = 2.0**63  # whole numbers below this print as integers (int64)


def _str(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A column as text (pandas' ``astype("str")``), missing -> '?', and its missing mask."""
    if isinstance(values, np.ndarray) and values.dtype == object:  # a row's str / None values
        missing = pd.isna(values)
        return np.where(missing, "?", values), missing
    if isinstance(values, np.ndarray):
        values = pd.Series(values)
    if isinstance(values.dtype, pd.StringDtype):  # already text: no conversion
        raw = values.to_numpy(dtype=object)
        missing = pd.isna(raw)
        return np.where(missing, "?", raw), missing
    missing = values.isna().to_numpy()
    return values.astype("str").where(~missing, "?").to_numpy(dtype=object), missing


def _float(values: pd.Series | np.ndarray, coerce: bool) -> np.ndarray:
    """A column as float64: ``pd.to_numeric(errors="coerce")`` when ``coerce``, else ``astype``."""
    if values.dtype == np.float64:
        return np.asarray(values)
    if isinstance(values, np.ndarray):
        values = pd.Series(values)
    if coerce:
        values = pd.to_numeric(values, errors="coerce")
    return values.astype("float64").to_numpy()


def _is_number(values: pd.Series | np.ndarray) -> bool:
    dtype = values.dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


Frame: TypeAlias = pd.DataFrame | Mapping[str, Any]
"""What ``explain`` quotes: the feature table, or one order's row as ``features.online`` gives
it (column -> 1-element array or list), which spares the service a one-row frame."""


def _n_rows(frame: Frame) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if len(frame) else 0


class Columns:
    """The columns of the feature table that sentences quote, as numpy arrays at the rows being
    explained (``rows``: positions in ``frame``). Each column is converted once per ``explain``
    call, whichever families quote it (``at`` shares the conversions)."""

    def __init__(self, frame: Frame, rows: np.ndarray, cache: dict[tuple[str, str], Any]) -> None:
        self.frame = frame
        self.rows = rows
        self._cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def at(self, rows: np.ndarray) -> Columns:
        """The same columns at other rows (positions in ``frame``)."""
        return Columns(self.frame, rows, self._cache)

    def first(self, *names: str) -> str | None:
        """The first of ``names`` that is a column, else None."""
        for name in names:
            if self.has(name):
                return name
        return None

    def has(self, name: str) -> bool:
        return name in self.frame  # a frame's columns, a row's keys

    def _column(self, name: str) -> pd.Series | np.ndarray:
        key = ("column", name)
        if key not in self._cache:
            col = self.frame[name]
            if isinstance(col, list):  # a row's text: str or None
                col = np.asarray(col, dtype=object)
            elif not isinstance(col, pd.Series | np.ndarray):
                col = pd.Series(col)
            self._cache[key] = col
        return self._cache[key]

    def _get(self, kind: str, name: str) -> Any:
        key = (kind, name)
        if key not in self._cache:
            col = self._column(name)
            if kind == "text":
                self._cache[key] = _str(col)
            else:
                self._cache[key] = _float(col, coerce=kind == "num")
        return self._cache[key]

    def text(self, name: str) -> np.ndarray:
        """Values as text (object array of str), missing -> '?'."""
        return self._get("text", name)[0][self.rows]

    def missing(self, name: str) -> np.ndarray:
        return self._get("text", name)[1][self.rows]

    def num(self, name: str) -> np.ndarray:
        """Values as float64 (``pd.to_numeric(errors="coerce")``: not a number -> NaN)."""
        return self._get("num", name)[self.rows]

    def value_text(self, name: str) -> np.ndarray:
        """A feature value as short text: numbers rounded to 2 decimals (no trailing .0)."""
        if not _is_number(self._column(name)):
            return self.text(name)
        x = np.round(self._get("float", name)[self.rows], 2)
        text = x.astype(str)  # Python's repr, as pandas prints floats
        whole = np.char.endswith(text, ".0")  # the only ".0" of such a text
        if whole.any():
            text[whole] = np.char.replace(text[whole], ".0", "")
        return np.where(np.isnan(x), "?", text.astype(object))


Template = Callable[[Columns], np.ndarray | None]


def _num(values: np.ndarray, digits: int = 0) -> np.ndarray:
    """Numbers as short text: 182, 7.9; missing -> '?'.

    The text pandas' ``astype("str")`` gives (Python's ``repr``, also numpy's) of the number
    rounded to ``digits``; with ``digits=0`` whole numbers without '.0' (as integers)."""
    x = np.round(values, digits)
    if digits:
        text = x.astype(str).astype(object)
    else:
        whole = (x >= -_INT_LIMIT) & (x < _INT_LIMIT)  # False for NaN and inf
        text = np.where(whole, x, 0.0).astype(np.int64).astype(str).astype(object)
        if not whole.all():
            text = np.where(whole, text, x.astype(str).astype(object))
    return np.where(np.isnan(x), "?", text)


def _pct(values: np.ndarray) -> np.ndarray:
    return _num(values * 100.0, 1) + " %"


def _duties(c: Columns) -> np.ndarray | None:
    inc = c.first("effective_incoterm", "incoterm")
    if inc is None or c.first("order_value") is None or c.first("duty_de_minimis") is None:
        return None
    if c.first("destination_country") is None:
        return None
    inc_t = c.text(inc)
    cc = c.text("destination_country")
    v = c.num("order_value")
    d = c.num("duty_de_minimis")
    v_t, d_t = _num(v), _num(d)
    above = (inc_t == "DDU") & (v > d)
    s_above = "ships DDU, " + v_t + " above the " + cc + " duty-free limit of " + d_t
    s_none = "ships " + inc_t + " to " + cc + ", order value " + v_t
    s_below = s_none + " (duty-free limit " + d_t + ")"
    return np.where(above, s_above, np.where(np.isnan(d), s_none, s_below))


def _customer(c: Columns) -> np.ndarray | None:
    if c.first("customer_prior_orders") is None or c.first("customer_prior_cases") is None:
        return None
    n = c.num("customer_prior_orders")
    text = (
        "customer opened "
        + _num(c.num("customer_prior_cases"))
        + " cases in "
        + _num(n)
        + " earlier orders"
    )
    return np.where(n > 0, text, "new customer: no earlier orders")


def _logistics(c: Columns) -> np.ndarray | None:
    carrier = c.first("carrier_name", "carrier_id")
    if c.first("lane_not_received_rate") is None or c.first("destination_country") is None:
        return None
    if carrier is None:
        return None
    cc = c.text("destination_country")
    text = (
        "lane "
        + cc
        + " via carrier "
        + c.text(carrier)
        + ": "
        + _pct(c.num("lane_not_received_rate"))
        + " of parcels not received"
    )
    return np.where(c.missing(carrier), "no carrier assigned yet for " + cc, text)


def _product(c: Columns) -> np.ndarray | None:
    sku = c.first("top_sku_id")
    rate = c.first("sku_case_rate_top", "sku_case_rate_max")
    cat = c.first("top_category", "main_category")
    if sku is None or rate is None or cat is None:
        return None
    return (
        "SKU "
        + c.text(sku)
        + " ("
        + c.text(cat)
        + "): "
        + _pct(c.num(rate))
        + " of its orders had a case"
    )


def _size_fit(c: Columns) -> np.ndarray | None:
    if c.first("size_bracketing") is None or c.first("multi_qty_apparel") is None:
        return None
    b = c.num("size_bracketing") > 0  # NaN -> False
    m = c.num("multi_qty_apparel") > 0
    text = np.full(len(c), "no size bracketing in this order", dtype=object)
    text[m] = "several units of one sized item (fit risk)"
    text[b] = "same product ordered in two or more sizes (bracketing)"
    return text


TEMPLATES: dict[str, tuple[str, Template]] = {
    "product": (r"^(?:sku|product)_", _product),
    "duties": (r"^(?:value_to_de_minimis|duties_due_on_arrival|effective_incoterm)$", _duties),
    "customer": (r"^customer_(?:prior|case_rate)", _customer),
    "logistics": (r"^lane_(?:not_received|case|damaged)", _logistics),
    "size_fit": (r"^(?:size_bracketing|multi_qty_apparel)$", _size_fit),
}
"""Family -> (features the sentence is about, sentence builder). A builder gets the quoted
columns at the orders to explain and returns one sentence per order (object array of str), or
None when the frame lacks its columns. An order whose strongest feature in the family is another
one (or lacks the columns) gets the generic text of that feature."""


def _generic(c: Columns, top: np.ndarray, feats: list[str], descriptions: np.ndarray) -> np.ndarray:
    """'<description of the strongest feature of the family>: <the order's value>'."""
    value = np.full(len(c), "?", dtype=object)
    for j in np.unique(top):  # a loop over the family's features, not over orders
        name = feats[j]
        if c.has(name):
            rows = top == j
            value[rows] = c.at(c.rows[rows]).value_text(name)
    return descriptions[top] + ": " + value


def _family_sums(contrib: np.ndarray, index: list[list[int]]) -> np.ndarray:
    """(n, families) sums of each family's feature columns, added one column after the other:
    the same bits whatever the number of rows or the memory layout (``ndarray.sum`` adds a
    contiguous row pairwise and strided ones in sequence, which can flip exact ties), so an
    order explained alone gets the reasons it gets inside a batch."""
    out = np.zeros((len(contrib), len(index)))
    for j, idx in enumerate(index):  # a loop over families and their features, not orders
        for i in idx:
            out[:, j] += contrib[:, i]
    return out


def _reason_columns(
    top: int, texts: np.ndarray, drivers: np.ndarray, sums: np.ndarray
) -> dict[str, np.ndarray]:
    """``reason_k``, ``reason_k_driver`` (object arrays of str, NaN when missing) and
    ``reason_k_contribution`` (float64, 4 decimals) for k = 1..top from (n, k_max) picks;
    missing for k > k_max."""
    n, k_max = len(sums), min(sums.shape[1], top)
    out: dict[str, np.ndarray] = {}
    for k in range(top):
        text, driver = np.full(n, np.nan, dtype=object), np.full(n, np.nan, dtype=object)
        contribution = np.full(n, np.nan)
        if k < k_max:
            text[:], driver[:], contribution = texts[:, k], drivers[:, k], np.round(sums[:, k], 4)
        out[f"reason_{k + 1}"] = text
        out[f"reason_{k + 1}_driver"] = driver
        out[f"reason_{k + 1}_contribution"] = contribution
    return out


def _reasons_frame(index: pd.Index, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The reason columns as a frame: the text ones "str" (one conversion, then a slice each)."""
    names = [name for name in columns if not name.endswith("_contribution")]
    n = len(index)
    strings = pd.array(
        np.concatenate([columns[name] for name in names]) if names else [], dtype="str"
    )
    out = dict(columns)
    for i, name in enumerate(names):
        out[name] = strings[i * n : (i + 1) * n]
    return pd.DataFrame(out, index=index, copy=False)


def _picks(
    frame: Frame,
    contrib: np.ndarray,
    names: list[str],
    specs: Mapping[str, FeatureSpec],
    top: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, k_max) sentences, drivers and contributions of each row's top drivers."""
    present = set(names)
    by_family: dict[str, list[str]] = {}
    for name, spec in specs.items():
        if name in present:
            by_family.setdefault(spec.family, []).append(name)
    families = list(by_family)
    n = len(contrib)
    if not families or n == 0:
        none = np.empty((n, 0), dtype=object)
        return none, none, np.empty((n, 0))
    position = dict(zip(names, range(len(names)), strict=True))
    index = [[position[name] for name in feats] for feats in by_family.values()]
    sums = _family_sums(contrib, index)
    k_max = max(min(top, len(families)), 0)
    # largest contribution first; ties broken by family order (stable sort)
    order = np.argsort(-sums, axis=1, kind="stable")[:, :k_max]

    # sentences only for the families some order needs (column-wise, all such orders at once)
    cols = Columns(frame, np.arange(n), {})
    text_matrix = np.full((n, len(families)), None, dtype=object)
    for j in np.unique(order):
        fam = families[j]
        feats = by_family[fam]
        rows = np.flatnonzero((order == j).any(axis=1))
        c = cols.at(rows)
        top_feat = np.argmax(contrib[np.ix_(rows, index[j])], axis=1)
        descriptions = np.asarray([str(specs[name].description) for name in feats], dtype=object)
        text = _generic(c, top_feat, feats, descriptions)
        if fam in TEMPLATES:
            pattern, template = TEMPLATES[fam]
            special = template(c)
            if special is not None:
                about = np.asarray([re.search(pattern, name) is not None for name in feats])
                text = np.where(about[top_feat], special, text)
        text_matrix[rows, j] = text
    at = np.arange(n)[:, None]
    return text_matrix[at, order], np.asarray(families, dtype=object)[order], sums[at, order]


def explain(
    frame: pd.DataFrame,
    contributions: pd.DataFrame,
    specs: Mapping[str, FeatureSpec],
    *,
    top: int = 3,
) -> pd.DataFrame:
    """Top ``top`` drivers per row of ``frame``.

    ``frame`` is the feature table of the orders to explain (feature columns plus context such as
    ``order_value``, ``duty_de_minimis``); ``contributions`` has one SHAP column per feature
    (plus optionally ``bias``), row-aligned with ``frame``. ``specs`` maps feature name to an
    object with ``family`` and ``description`` (``FEATURE_SPECS``).

    Returns one row per input row (same index) with ``reason_k``, ``reason_k_driver``,
    ``reason_k_contribution`` for k = 1..top (missing when an order has fewer drivers).
    """
    if len(frame) != len(contributions):
        raise ValueError(
            f"explain: {len(frame)} feature rows but {len(contributions)} contribution rows"
        )
    try:  # one conversion (a frame of floats is one block)
        contrib = contributions.to_numpy(dtype="float64")
        names = contributions.columns.tolist()
    except (TypeError, ValueError):  # a column no family uses is not numeric
        names = [name for name in specs if name in contributions.columns]
        contrib = contributions[names].to_numpy(dtype="float64")
    picks = _picks(frame, contrib, names, specs, top)
    return _reasons_frame(frame.index, _reason_columns(max(top, 0), *picks))


def explain_row(
    row: Mapping[str, Any],
    contributions: np.ndarray,
    names: list[str],
    specs: Mapping[str, FeatureSpec],
    *,
    top: int = 3,
) -> dict[str, Any]:
    """``explain`` of one order from its feature row as ``features.online`` gives it (column
    -> 1-element array or list) and its (1, features) contributions named ``names``: the same
    reason columns, as Python values (no frame: the service's fast path)."""
    if _n_rows(row) != 1 or len(contributions) != 1:
        raise ValueError(f"explain_row: one order expected, got {len(contributions)} rows")
    columns = _reason_columns(max(top, 0), *_picks(row, contributions, names, specs, top))
    return {name: values[0] for name, values in columns.items()}
