"""Reason codes: SHAP contributions grouped into drivers a person in operations understands.

A *driver* is one feature family of ``FEATURE_SPECS`` (duties, logistics, customer, ...): its
contribution is the sum of its features' SHAP values (log-odds). Each order gets its top drivers
(largest risk-raising contribution first) with a sentence that quotes the order's own values,
e.g. "ships DDU, 182 above the DE duty-free limit of 150".

Everything is column-wise: one text Series per family for all explained orders at once, then a
per-row pick of the top families with ``numpy`` (no Python loop over orders).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

Template = Callable[[pd.DataFrame], pd.Series | None]


def _col(frame: pd.DataFrame, *names: str) -> pd.Series | None:
    for name in names:
        if name in frame.columns:
            return frame[name]
    return None


def _num(values: pd.Series, digits: int = 0) -> pd.Series:
    """Numbers as short text: 182, 7.9; missing -> '?'."""
    x = pd.to_numeric(values, errors="coerce").astype("float64").round(digits)
    text = x.astype("str") if digits else x.astype("Int64").astype("str")
    return text.where(x.notna(), "?")


def _txt(values: pd.Series) -> pd.Series:
    return values.astype("str").where(values.notna(), "?")


def _pct(values: pd.Series) -> pd.Series:
    return _num(pd.to_numeric(values, errors="coerce") * 100.0, 1) + " %"


def _duties(f: pd.DataFrame) -> pd.Series | None:
    inc = _col(f, "effective_incoterm", "incoterm")
    value = _col(f, "order_value")
    dm = _col(f, "duty_de_minimis")
    cc = _col(f, "destination_country")
    if inc is None or value is None or dm is None or cc is None:
        return None
    v = pd.to_numeric(value, errors="coerce")
    d = pd.to_numeric(dm, errors="coerce")
    above = (inc == "DDU") & (v > d)
    s_above = "ships DDU, " + _num(v) + " above the " + _txt(cc) + " duty-free limit of " + _num(d)
    s_below = (
        "ships "
        + _txt(inc)
        + " to "
        + _txt(cc)
        + ", order value "
        + _num(v)
        + " (duty-free limit "
        + _num(d)
        + ")"
    )
    s_none = "ships " + _txt(inc) + " to " + _txt(cc) + ", order value " + _num(v)
    return s_above.where(above.fillna(False), s_below.where(d.notna(), s_none))


def _customer(f: pd.DataFrame) -> pd.Series | None:
    n = _col(f, "customer_prior_orders")
    c = _col(f, "customer_prior_cases")
    if n is None or c is None:
        return None
    n_ = pd.to_numeric(n, errors="coerce").fillna(0)
    text = "customer opened " + _num(c) + " cases in " + _num(n) + " earlier orders"
    return text.where(n_ > 0, "new customer: no earlier orders")


def _logistics(f: pd.DataFrame) -> pd.Series | None:
    rate = _col(f, "lane_not_received_rate")
    cc = _col(f, "destination_country")
    carrier = _col(f, "carrier_name", "carrier_id")
    if rate is None or cc is None or carrier is None:
        return None
    text = (
        "lane "
        + _txt(cc)
        + " via carrier "
        + _txt(carrier)
        + ": "
        + _pct(rate)
        + " of parcels not received"
    )
    return text.where(carrier.notna(), "no carrier assigned yet for " + _txt(cc))


def _product(f: pd.DataFrame) -> pd.Series | None:
    sku = _col(f, "top_sku_id")
    rate = _col(f, "sku_case_rate_top", "sku_case_rate_max")
    cat = _col(f, "top_category", "main_category")
    if sku is None or rate is None or cat is None:
        return None
    return "SKU " + _txt(sku) + " (" + _txt(cat) + "): " + _pct(rate) + " of its orders had a case"


def _size_fit(f: pd.DataFrame) -> pd.Series | None:
    bracket = _col(f, "size_bracketing")
    multi = _col(f, "multi_qty_apparel")
    if bracket is None or multi is None:
        return None
    b = pd.to_numeric(bracket, errors="coerce").fillna(0) > 0
    m = pd.to_numeric(multi, errors="coerce").fillna(0) > 0
    text = pd.Series("no size bracketing in this order", index=f.index, dtype="str")
    text = text.mask(m, "several units of one sized item (fit risk)")
    return text.mask(b, "same product ordered in two or more sizes (bracketing)")


TEMPLATES: dict[str, tuple[str, Template]] = {
    "product": (r"^(?:sku|product)_", _product),
    "duties": (r"^(?:value_to_de_minimis|duties_due_on_arrival|effective_incoterm)$", _duties),
    "customer": (r"^customer_(?:prior|case_rate)", _customer),
    "logistics": (r"^lane_(?:not_received|case|damaged)", _logistics),
    "size_fit": (r"^(?:size_bracketing|multi_qty_apparel)$", _size_fit),
}
"""Family -> (features the sentence is about, sentence builder). An order whose strongest feature
in the family is another one (or lacks the columns) gets the generic text of that feature."""


def _value_text(col: pd.Series) -> pd.Series:
    """A feature value as short text: numbers rounded to 2 decimals (no trailing .0)."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        x = col.astype("float64").round(2)
        return x.astype("str").str.replace(r"\.0$", "", regex=True).where(x.notna(), "?")
    return _txt(col)


def _generic(
    frame: pd.DataFrame, contrib: pd.DataFrame, feats: list[str], descriptions: Mapping[str, str]
) -> pd.Series:
    """'<description of the strongest feature of the family>: <the order's value>'."""
    top = np.argmax(contrib[feats].to_numpy(dtype="float64"), axis=1)
    desc = np.asarray([descriptions.get(n, n) for n in feats], dtype=object)[top]
    value = np.full(len(frame), "?", dtype=object)
    for j in np.unique(top):  # a loop over the family's features, not over orders
        rows = top == j
        name = feats[j]
        if name in frame.columns:
            value[rows] = _value_text(frame[name].loc[rows]).to_numpy(dtype=object)
    return (
        pd.Series(desc, index=frame.index, dtype="str")
        + ": "
        + pd.Series(value, index=frame.index, dtype="str")
    )


def explain(
    frame: pd.DataFrame,
    contributions: pd.DataFrame,
    specs: Mapping[str, object],
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
    contrib = contributions.set_axis(frame.index, axis=0)
    by_family: dict[str, list[str]] = {}
    for name, spec in specs.items():
        if name in contrib.columns:
            by_family.setdefault(spec.family, []).append(name)
    descriptions = {name: spec.description for name, spec in specs.items()}
    families = list(by_family)
    n = len(frame)
    out = pd.DataFrame(index=frame.index)
    if not families or n == 0:
        for k in range(1, top + 1):
            out[f"reason_{k}"] = pd.Series(dtype="str", index=frame.index)
            out[f"reason_{k}_driver"] = pd.Series(dtype="str", index=frame.index)
            out[f"reason_{k}_contribution"] = pd.Series(dtype="float64", index=frame.index)
        return out

    sums = np.column_stack(
        [contrib[feats].to_numpy(dtype="float64").sum(axis=1) for feats in by_family.values()]
    )
    k_max = min(top, len(families))
    # largest contribution first; ties broken by family order (stable sort)
    order = np.argsort(-sums, axis=1, kind="stable")[:, :k_max]

    # sentences only for the families some order needs (column-wise, all such orders at once)
    text_matrix = np.full((n, len(families)), None, dtype=object)
    for j in np.unique(order):
        fam = families[j]
        rows = (order == j).any(axis=1)
        sub = frame.loc[rows]
        feats = by_family[fam]
        text = _generic(sub, contrib.loc[rows], feats, descriptions)
        if fam in TEMPLATES:
            pattern, template = TEMPLATES[fam]
            special = template(sub)
            if special is not None:
                top_feat = np.asarray(feats, dtype=object)[
                    np.argmax(contrib.loc[rows, feats].to_numpy(dtype="float64"), axis=1)
                ]
                about = pd.Series(top_feat, index=sub.index).str.contains(pattern, regex=True)
                text = special.where(about.to_numpy(), text)
        text_matrix[rows, j] = text.to_numpy(dtype=object)
    rows = np.arange(n)[:, None]
    picked_sum = sums[rows, order]
    picked_text = text_matrix[rows, order]
    picked_fam = np.asarray(families, dtype=object)[order]
    for k in range(top):
        if k < k_max:
            out[f"reason_{k + 1}"] = pd.Series(picked_text[:, k], index=frame.index, dtype="str")
            out[f"reason_{k + 1}_driver"] = pd.Series(
                picked_fam[:, k], index=frame.index, dtype="str"
            )
            out[f"reason_{k + 1}_contribution"] = np.round(picked_sum[:, k], 4)
        else:
            out[f"reason_{k + 1}"] = pd.Series(dtype="str", index=frame.index)
            out[f"reason_{k + 1}_driver"] = pd.Series(dtype="str", index=frame.index)
            out[f"reason_{k + 1}_contribution"] = pd.Series(dtype="float64", index=frame.index)
    return out
