"""Merchandiser SKU risk review: which listings to fix, which suppliers to call, where not to ship.

``build_sku_report(tables, loaded_model)`` scores the orders of the last ``window_days`` (and the
window before, for the trend) with the champion, explains them with SHAP grouped into the driver
families of ``FEATURE_SPECS``, and aggregates everything per SKU, per SKU x destination, per
category, per destination country and per carrier. ``render_html(report)`` turns that into one
self-contained HTML page (figures embedded as PNG data URIs, inline CSS and JavaScript, no
network) with a sortable, filterable SKU table and a CSV export.

How an order's risk is split between its SKUs: an order has one probability of ending in an
after-sales case; each SKU of the order gets the part of it equal to the SKU's share of the
order's line value (quantity x unit price; quantity share when the order's value is 0). A SKU's
*expected cases* are the sum of those parts over its recent orders. Its *predicted case rate* is
the mean probability of the recent orders that contain it, comparable with its *actual case rate*:
the share of its mature orders (old enough for the outcome to be known) that had a case, with a
Wilson 95 % interval.

Everything is vectorised (group-bys and merges; no Python loop over orders or SKUs), pure (input
frames are never modified) and deterministic (same data and model give the same bytes).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from returnrisk.arrays import member_mask, to_utc
from returnrisk.labels import LABEL_WINDOW_DAYS, order_outcomes
from returnrisk.progress import QUIET, StepLog

if TYPE_CHECKING:  # pragma: no cover
    from returnrisk.contract import Tables

__all__ = [
    "FAMILY_LABELS",
    "ReportConfig",
    "SkuReport",
    "build_sku_report",
    "parse_window",
    "render_html",
    "wilson_interval",
    "write_report",
]

FAMILY_LABELS: dict[str, str] = {
    "logistics": "Delivery & carrier",
    "duties": "Import duties",
    "listing": "Listing content",
    "size_fit": "Size & fit",
    "customer": "Customer history",
    "product": "Product track record",
    "price": "Price & discount",
    "order": "Order details",
    "other": "Other",
}
"""Merchandiser names of the driver families (keys are ``FeatureSpec.family``)."""

CASE_TYPE_LABELS: dict[str, str] = {
    "return": "return",
    "refund": "refund",
    "not_received": "not received",
    "damaged": "damaged",
    "not_as_described": "not as described",
    "wrong_item": "wrong item",
    "duty_dispute": "duty dispute",
    "other": "other",
}

NO_CARRIER = "(not assigned)"
MIN_DRIVER = 0.02
"""Family contributions (log-odds) below this are not named as a driver."""
Z95 = 1.959963984540054


class ReportError(ValueError):
    """The report cannot be made from this input (message says why)."""


# ---------------------------------------------------------------------------------------------
# Configuration and result


@dataclass(frozen=True)
class ReportConfig:
    """Options of the SKU report (parsed once at the command entry)."""

    window_days: int = 28
    label_window_days: int = LABEL_WINDOW_DAYS
    actual_lookback_days: int = 365
    min_orders_for_rate: int = 5
    eval_max_orders: int = 20_000
    top_n_figure: int = 15
    hotspots_n: int = 30
    table_max_skus: int = 2_000

    def __post_init__(self) -> None:
        for name in ("window_days", "label_window_days", "actual_lookback_days", "eval_max_orders"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value <= 0:
                raise ReportError(f"{name} must be a positive whole number, got {value!r}")
        if self.window_days > MAX_WINDOW_DAYS:
            raise ReportError(
                f"window_days must be at most {MAX_WINDOW_DAYS}, got {self.window_days}"
            )


@dataclass(frozen=True)
class SkuReport:
    """Everything the page shows, as data frames plus a few facts about the model and window."""

    skus: pd.DataFrame
    hotspots: pd.DataFrame
    by_category: pd.DataFrame
    by_country: pd.DataFrame
    by_carrier: pd.DataFrame
    global_drivers: pd.DataFrame
    calibration: pd.DataFrame
    lift: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def families(self) -> list[str]:
        return list(self.meta.get("families", []))


# ---------------------------------------------------------------------------------------------
# Small pure helpers


MAX_WINDOW_DAYS = 3_660
"""The longest report window (about ten years): the window before it must stay a date."""


def parse_window(text: str | int, *, option: str = "--window") -> int:
    """``"28d"`` / ``"4w"`` / ``"28"`` -> 28 days, 1 to ``MAX_WINDOW_DAYS``. Raises
    ``ReportError`` naming ``option`` (the CLI option or the HTTP parameter) on anything else."""
    if isinstance(text, int | np.integer):
        days = int(text)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", str(text).lower())
        if not m:
            raise ReportError(
                f"{option}: expected a number of days like '28d' or '4w', got {text!r}"
            )
        days = int(m.group(1)) * (7 if m.group(2) == "w" else 1)
    if days <= 0:
        raise ReportError(f"{option} must be at least 1 day, got {text!r}")
    if days > MAX_WINDOW_DAYS:
        raise ReportError(f"{option} must be at most {MAX_WINDOW_DAYS} days, got {text!r}")
    return days


def wilson_interval(
    cases: np.ndarray | pd.Series, n: np.ndarray | pd.Series, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion, vectorised; NaN where ``n == 0``."""
    k = np.asarray(cases, dtype="float64")
    nn = np.asarray(n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / nn
        z2 = z * z
        denom = 1.0 + z2 / nn
        centre = (p + z2 / (2 * nn)) / denom
        half = z * np.sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom
        # exact at the edges (0 or n cases), where rounding would leave 1e-17 off the bound
        lo = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        hi = np.where(k >= nn, 1.0, np.clip(centre + half, 0.0, 1.0))
        lo = np.where(nn > 0, lo, np.nan)
        hi = np.where(nn > 0, hi, np.nan)
    return lo, hi


def line_shares(order_lines: pd.DataFrame) -> pd.DataFrame:
    """One row per (order, SKU): ``quantity``, ``value`` and ``share`` of the order's line value.

    The shares of an order sum to 1. An order whose lines are all worth 0 is split by quantity.
    """
    lines = order_lines[["order_id", "sku_id", "quantity", "unit_price"]]
    value = lines["quantity"].astype("float64") * lines["unit_price"].astype("float64")
    pairs = (
        lines.assign(value=value, quantity=lines["quantity"].astype("float64"))
        .groupby(["order_id", "sku_id"], sort=True, observed=True)[["quantity", "value"]]
        .sum()
        .reset_index()
    )
    order_value = pairs.groupby("order_id")["value"].transform("sum")
    order_qty = pairs.groupby("order_id")["quantity"].transform("sum")
    by_value = pairs["value"] / order_value.where(order_value > 0)
    by_qty = pairs["quantity"] / order_qty.where(order_qty > 0)
    share = by_value.fillna(by_qty).fillna(
        1.0 / pairs.groupby("order_id")["sku_id"].transform("size")
    )
    return pairs.assign(share=share.astype("float64"))


def family_contributions(
    contributions: pd.DataFrame, families: dict[str, str], family_order: Sequence[str]
) -> pd.DataFrame:
    """Sum SHAP columns (log-odds) into one column per driver family (matrix product, no loop)."""
    cols = [c for c in contributions.columns if c != "bias"]
    fam_of = [families.get(c, "other") for c in cols]
    present = [f for f in family_order if f in set(fam_of)]
    present += sorted(set(fam_of) - set(present))
    onehot = np.zeros((len(cols), len(present)))
    index = {f: i for i, f in enumerate(present)}
    onehot[np.arange(len(cols)), [index[f] for f in fam_of]] = 1.0
    values = contributions[cols].to_numpy(dtype="float64") @ onehot
    return pd.DataFrame(values, columns=present, index=contributions.index)


# ---------------------------------------------------------------------------------------------
# Aggregation (generic over the grouping key)


def aggregate(
    window: pd.DataFrame,
    previous: pd.DataFrame,
    mature: pd.DataFrame,
    keys: list[str],
    families: Sequence[str],
    *,
    min_orders_for_rate: int = 5,
) -> pd.DataFrame:
    """Aggregate (order, key) pairs into one row per key.

    ``window``: order_id, *keys, share, p, value, quantity and one column per driver family;
    ``previous``: order_id, *keys, p (the window before, for the trend);
    ``mature``: order_id, *keys, label (mature orders of the look-back period).
    """
    fam = list(families)
    w = window.assign(
        expected_cases=window["p"] * window["share"],
        **{f"_w_{f}": window[f] * window["share"] for f in fam},
    )
    g = w.groupby(keys, sort=True, observed=True, dropna=False)
    out = g.agg(
        orders=("order_id", "size"),
        units=("quantity", "sum"),
        sales=("value", "sum"),
        expected_cases=("expected_cases", "sum"),
        predicted_rate=("p", "mean"),
        _share=("share", "sum"),
    )
    if fam:
        drivers = g[[f"_w_{f}" for f in fam]].sum().div(out["_share"], axis=0)
        drivers.columns = [f"driver_{f}" for f in fam]
        out = out.join(drivers)
    out = out.drop(columns="_share")

    prev = previous.groupby(keys, sort=True, observed=True, dropna=False).agg(
        prev_orders=("order_id", "size"), prev_predicted_rate=("p", "mean")
    )
    mat = mature.groupby(keys, sort=True, observed=True, dropna=False).agg(
        mature_orders=("order_id", "size"), mature_cases=("label", "sum")
    )
    out = out.join(prev, how="left").join(mat, how="left")
    out["prev_orders"] = out["prev_orders"].fillna(0).astype("int64")
    out["mature_orders"] = out["mature_orders"].fillna(0).astype("int64")
    out["mature_cases"] = out["mature_cases"].fillna(0).astype("int64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["actual_rate"] = out["mature_cases"] / out["mature_orders"].where(
            out["mature_orders"] > 0
        )
    lo, hi = wilson_interval(out["mature_cases"], out["mature_orders"])
    out["actual_lo"] = lo
    out["actual_hi"] = hi
    # trends only where both periods have enough orders to mean something
    enough = (out["orders"] >= min_orders_for_rate) & (out["prev_orders"] >= min_orders_for_rate)
    out["orders_trend"] = ((out["orders"] - out["prev_orders"]) / out["prev_orders"]).where(enough)
    out["risk_trend"] = (out["predicted_rate"] - out["prev_predicted_rate"]).where(enough)
    out["units"] = out["units"].astype("int64")
    out["orders"] = out["orders"].astype("int64")
    out = out.reset_index()
    out = out.sort_values(
        ["expected_cases", *keys], ascending=[False] + [True] * len(keys), kind="mergesort"
    ).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1, dtype="int64"))
    eligible = out["orders"] >= min_orders_for_rate
    rate_rank = out["predicted_rate"].where(eligible).rank(method="first", ascending=False)
    out.insert(1, "rate_rank", rate_rank.astype("Int64"))
    if fam:
        drv = out[[f"driver_{f}" for f in fam]]
        out["main_drivers"] = main_driver_text(drv, fam)
        out["drivers_detail"] = main_driver_text(drv, fam, top=3, detail=True)
    return out


def main_driver_text(
    drivers: pd.DataFrame, families: Sequence[str], top: int = 2, *, detail: bool = False
) -> pd.Series:
    """Up to ``top`` families pushing risk up most, e.g. ``"Size & fit · Listing content"``
    (``detail=True`` adds the strengths: ``"Size & fit +0.62 · Listing content +0.21"``)."""
    values = drivers.to_numpy(dtype="float64")
    if values.size == 0:
        return pd.Series([], dtype="str", index=drivers.index)
    labels = np.array([FAMILY_LABELS.get(f, f) for f in families], dtype=object)
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(values, order, axis=1)
    parts = []
    for j in range(order.shape[1]):  # loop over the `top` (2) positions, not over rows
        text = pd.Series(labels[order[:, j]], dtype="str")
        if detail:
            text = text + " " + pd.Series(np.round(picked[:, j], 2)).map("{:+.2f}".format)
        parts.append(text.where(picked[:, j] > MIN_DRIVER, ""))
    joined = parts[0]
    for p in parts[1:]:
        joined = joined.str.cat(p, sep=" · ").str.strip(" ·")
    joined = joined.where(joined != "", "no strong driver")
    return pd.Series(joined.to_numpy(), index=drivers.index, dtype="str")


def top_case_types(
    cases: pd.DataFrame,
    mature_pairs: pd.DataFrame,
    keys: list[str],
    outcomes: pd.DataFrame,
    label_window_days: int,
) -> pd.DataFrame:
    """Most frequent case type per key among the cases of its mature orders (with its share).

    A case that names a SKU counts only for that SKU; a case without a SKU counts for every SKU
    of its order.
    """
    window = pd.Timedelta(days=label_window_days)
    c = cases[["order_id", "case_type", "sku_id", "opened_ts"]].rename(
        columns={"sku_id": "case_sku"}
    )
    c = c.merge(outcomes[["order_id", "order_ts"]], on="order_id", how="inner")
    c = c.loc[(c["opened_ts"] - c["order_ts"]) <= window]
    m = mature_pairs.merge(c, on="order_id", how="inner")
    if "sku_id" in keys:
        m = m.loc[m["case_sku"].isna() | (m["case_sku"] == m["sku_id"])]
    if m.empty:
        return pd.DataFrame(columns=[*keys, "top_case_type"])
    counts = m.groupby([*keys, "case_type"], observed=True).size().rename("n").reset_index()
    counts["total"] = counts.groupby(keys, observed=True)["n"].transform("sum")
    counts = counts.sort_values(
        [*keys, "n", "case_type"], ascending=[True] * len(keys) + [False, True]
    )
    top = counts.drop_duplicates(keys, keep="first")
    share = (100 * top["n"] / top["total"]).round().astype("int64").astype("str")
    label = top["case_type"].map(CASE_TYPE_LABELS).fillna(top["case_type"]).astype("str")
    return top[keys].assign(top_case_type=(label + " (" + share + " %)").to_numpy())


def calibration_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table on quantile bins of the predicted probability (Wilson 95 % intervals)."""
    df = pd.DataFrame({"p": p, "y": y})
    ranks = df["p"].rank(method="first")
    df["bin"] = np.minimum((ranks - 1) * n_bins // len(df), n_bins - 1).astype("int64")
    t = df.groupby("bin").agg(
        n=("y", "size"),
        cases=("y", "sum"),
        predicted=("p", "mean"),
        p_min=("p", "min"),
        p_max=("p", "max"),
    )
    t["observed"] = t["cases"] / t["n"]
    t["observed_lo"], t["observed_hi"] = wilson_interval(t["cases"], t["n"])
    return t.reset_index()


def lift_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Deciles from riskiest to safest: case rate, lift over the average, share of cases caught."""
    df = pd.DataFrame({"p": p, "y": y})
    ranks = df["p"].rank(method="first", ascending=False)
    df["decile"] = (np.minimum((ranks - 1) * n_bins // len(df), n_bins - 1) + 1).astype("int64")
    t = df.groupby("decile").agg(n=("y", "size"), cases=("y", "sum"), predicted=("p", "mean"))
    base = df["y"].mean()
    t["case_rate"] = t["cases"] / t["n"]
    t["lift"] = t["case_rate"] / base if base > 0 else np.nan
    t["orders_share"] = t["n"].cumsum() / t["n"].sum()
    total = t["cases"].sum()
    t["cases_caught"] = t["cases"].cumsum() / total if total > 0 else np.nan
    return t.reset_index()


# ---------------------------------------------------------------------------------------------
# Build


def _feature_families() -> tuple[dict[str, str], tuple[str, ...]]:
    from returnrisk.features import FAMILIES, FEATURE_SPECS

    return {name: spec.family for name, spec in FEATURE_SPECS.items()}, tuple(FAMILIES)


def _eval_start(loaded_model: Any) -> pd.Timestamp | None:
    """End of the data the model was trained/validated on, when the registry recorded it."""
    window = getattr(loaded_model, "data_window", None) or {}
    for key in ("test_start", "valid_end", "train_end"):
        value = window.get(key) if isinstance(window, dict) else None
        if value:
            try:
                ts = pd.Timestamp(value)
            except (TypeError, ValueError):
                continue
            return to_utc(ts)
    return None


def build_sku_report(
    tables: Tables,
    loaded_model: Any,
    window_days: int | None = None,
    log: StepLog = QUIET,
    *,
    config: ReportConfig | None = None,
    as_of: pd.Timestamp | None = None,
) -> SkuReport:
    """Score the last ``window_days`` of orders and aggregate them per SKU (see module doc).

    ``loaded_model`` is a ``returnrisk.train.registry.LoadedModel`` (``risk_model``, ``uri``,
    ``version``, ``metrics``, ``data_window``). ``window_days`` defaults to
    ``config.window_days`` (28). ``as_of`` defaults to ``tables.as_of()``: the window ends at the
    latest order placed by then, and only cases opened by then count.
    """
    from returnrisk.features import FeatureConfig, build_features

    cfg = config or ReportConfig()
    if window_days is not None:
        cfg = dataclasses.replace(cfg, window_days=int(window_days))
    model = loaded_model.risk_model
    fam_map, fam_order = _feature_families()
    as_of = tables.as_of() if as_of is None else as_of
    orders = tables.orders
    if orders.empty:
        raise ReportError("orders: the table is empty, nothing to report on")

    win = pd.Timedelta(days=cfg.window_days)
    lw = pd.Timedelta(days=cfg.label_window_days)
    ts = orders["order_ts"]
    # The window ends at the latest order known at ``as_of`` (the export may be a little later).
    end = ts.loc[ts <= as_of].max()
    if pd.isna(end):
        raise ReportError(f"orders: no order placed before as_of {as_of:%Y-%m-%d %H:%M} UTC")
    start = end - win
    prev_start = start - win
    in_window = (ts > start) & (ts <= end)
    in_prev = (ts > prev_start) & (ts <= start)

    with log.step("outcomes of mature orders"):
        outcomes = order_outcomes(
            orders, tables.after_sales_cases, as_of=as_of, label_window_days=cfg.label_window_days
        )
        mature_cut = as_of - lw
        look = outcomes["mature"] & (
            outcomes["order_ts"] > mature_cut - pd.Timedelta(days=cfg.actual_lookback_days)
        )
        mature_orders = outcomes.loc[look, ["order_id", "label"]]

        eval_from = _eval_start(loaded_model)
        eval_pool = outcomes.loc[outcomes["mature"]]
        out_of_time = False
        if eval_from is not None:
            after = eval_pool.loc[eval_pool["order_ts"] > eval_from]
            if len(after) >= 200:
                eval_pool, out_of_time = after, True
        eval_pool = eval_pool.sort_values(["order_ts", "order_id"]).tail(cfg.eval_max_orders)

    ids = pd.concat(
        [orders.loc[in_window | in_prev, "order_id"], eval_pool["order_id"]], ignore_index=True
    ).drop_duplicates()
    with log.step(f"features for {len(ids):,} orders"):
        feats = build_features(
            tables,
            order_ids=ids.tolist(),
            as_of=as_of,
            config=FeatureConfig(label_window_days=cfg.label_window_days),
            log=log,
        )
    names = list(model.feature_names_)
    with log.step("predict"):
        p = np.asarray(model.predict_proba(feats[names]), dtype="float64")
    scored = pd.DataFrame(
        {
            "order_id": feats["order_id"].to_numpy(),
            "order_ts": feats["order_ts"].to_numpy(),
            "destination_country": feats["destination_country"].astype("str").to_numpy(),
            "carrier_id": feats["carrier_id"].to_numpy(),
            "p": p,
        }
    )
    window_mask = member_mask(scored["order_id"], orders.loc[in_window, "order_id"])
    prev_mask = member_mask(scored["order_id"], orders.loc[in_prev, "order_id"])

    with log.step(f"SHAP drivers for {int(window_mask.sum()):,} recent orders"):
        contrib = model.contributions(feats.loc[window_mask, names].reset_index(drop=True))
        fam = family_contributions(contrib, fam_map, fam_order)
    families = list(fam.columns)
    window_orders = pd.concat(
        [scored.loc[window_mask].reset_index(drop=True), fam.reset_index(drop=True)], axis=1
    )
    prev_orders = scored.loc[prev_mask, ["order_id", "destination_country", "carrier_id", "p"]]

    eval_scored = (
        scored[["order_id", "p"]]
        .merge(feats[["order_id", "label"]], on="order_id")
        .merge(eval_pool[["order_id"]], on="order_id")
    )
    eval_scored = eval_scored.loc[eval_scored["label"].notna()]

    with log.step("aggregate per SKU, category, country, carrier"):
        meta_skus = _sku_attributes(tables.skus)
        carriers = tables.carriers[["carrier_id", "carrier_name", "service_level"]]
        shares = line_shares(tables.order_lines)
        cases = tables.after_sales_cases.loc[tables.after_sales_cases["opened_ts"] <= as_of]

        def pairs(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.merge(shares, on="order_id", how="inner").merge(
                meta_skus[["sku_id", "category"]], on="sku_id", how="left"
            )

        w_pairs, p_pairs = pairs(window_orders), pairs(prev_orders)
        m_orders = mature_orders.merge(
            orders[["order_id", "destination_country", "carrier_id"]], on="order_id"
        )
        m_pairs = pairs(m_orders)
        agg_kw = {"families": families, "min_orders_for_rate": cfg.min_orders_for_rate}

        skus = aggregate(w_pairs, p_pairs, m_pairs, ["sku_id"], **agg_kw)
        skus = skus.merge(meta_skus, on="sku_id", how="left")
        ct = top_case_types(cases, m_pairs, ["sku_id"], outcomes, cfg.label_window_days)
        skus = skus.merge(ct, on="sku_id", how="left")
        skus["top_case_type"] = skus["top_case_type"].fillna("").astype("str")

        hot = aggregate(w_pairs, p_pairs, m_pairs, ["sku_id", "destination_country"], **agg_kw)
        hot = hot.merge(meta_skus[["sku_id", "category"]], on="sku_id", how="left")
        hot = hot.head(cfg.hotspots_n).reset_index(drop=True)

        # Category: several SKUs of one order may share a category: sum their shares first.
        w_cat = (
            w_pairs.groupby(["order_id", "category"], observed=True, dropna=False)[
                ["share", "value", "quantity"]
            ]
            .sum()
            .reset_index()
            .merge(window_orders.drop(columns=["destination_country", "carrier_id"]), on="order_id")
        )
        p_cat = p_pairs.drop_duplicates(["order_id", "category"])
        m_cat = m_pairs.drop_duplicates(["order_id", "category"])
        by_category = aggregate(w_cat, p_cat, m_cat, ["category"], **agg_kw)

        order_value = shares.groupby("order_id", as_index=False)[["value", "quantity"]].sum()

        def order_level(frame: pd.DataFrame) -> pd.DataFrame:
            out = frame.merge(order_value, on="order_id", how="left").assign(share=1.0)
            return out.assign(carrier_id=out["carrier_id"].fillna(NO_CARRIER).astype("str"))

        w_o, p_o, m_o = order_level(window_orders), order_level(prev_orders), order_level(m_orders)
        by_country = aggregate(w_o, p_o, m_o, ["destination_country"], **agg_kw)
        by_carrier = aggregate(w_o, p_o, m_o, ["carrier_id"], **agg_kw)
        by_carrier = by_carrier.merge(carriers, on="carrier_id", how="left")
        by_carrier["carrier_name"] = by_carrier["carrier_name"].fillna(by_carrier["carrier_id"])

        fam_values = window_orders[families].to_numpy(dtype="float64")
        global_drivers = pd.DataFrame(
            {
                "family": families,
                "label": [FAMILY_LABELS.get(f, f) for f in families],
                "mean_abs": np.abs(fam_values).mean(axis=0),
                "mean_signed": fam_values.mean(axis=0),
                "share_raising": (fam_values > 0).mean(axis=0),
            }
        )
        global_drivers["weight"] = global_drivers["mean_abs"] / global_drivers["mean_abs"].sum()
        global_drivers = global_drivers.sort_values(
            ["mean_abs", "family"], ascending=[False, True]
        ).reset_index(drop=True)

    with log.step(f"calibration and lift on {len(eval_scored):,} mature orders"):
        if len(eval_scored) >= 20 and eval_scored["label"].nunique() == 2:
            pe, ye = eval_scored["p"].to_numpy(), eval_scored["label"].to_numpy(dtype="float64")
            calibration, lift = calibration_table(pe, ye), lift_table(pe, ye)
            eval_metrics = _eval_metrics(pe, ye)
        else:
            calibration, lift, eval_metrics = pd.DataFrame(), pd.DataFrame(), {}

    eval_ts = eval_pool["order_ts"]
    meta = {
        "as_of": as_of,
        "window_days": cfg.window_days,
        "window_start": start,
        "window_end": end,
        "label_window_days": cfg.label_window_days,
        "actual_from": mature_cut - pd.Timedelta(days=cfg.actual_lookback_days),
        "actual_to": mature_cut,
        "min_orders_for_rate": cfg.min_orders_for_rate,
        "table_max_skus": cfg.table_max_skus,
        "families": families,
        "model_uri": str(getattr(loaded_model, "uri", "")),
        "model_version": str(getattr(loaded_model, "version", "")),
        "model_run_id": str(getattr(loaded_model, "run_id", "") or ""),
        "model_metrics": dict(getattr(loaded_model, "metrics", {}) or {}),
        "model_data_window": dict(getattr(loaded_model, "data_window", {}) or {}),
        "n_window_orders": int(window_mask.sum()),
        "n_prev_orders": int(prev_mask.sum()),
        "n_skus": len(skus),
        "expected_cases": float(window_orders["p"].sum()),
        "predicted_rate": float(window_orders["p"].mean()),
        "n_mature_orders": len(mature_orders),
        "actual_rate": float(mature_orders["label"].mean()) if len(mature_orders) else math.nan,
        "eval_n": len(eval_scored),
        "eval_from": eval_ts.min() if len(eval_ts) else None,
        "eval_to": eval_ts.max() if len(eval_ts) else None,
        "eval_out_of_time": out_of_time,
        "eval_metrics": eval_metrics,
    }
    log.info(
        f"report: {meta['n_skus']:,} SKUs over {meta['n_window_orders']:,} orders,"
        f" {meta['expected_cases']:.1f} expected cases"
    )
    return SkuReport(
        skus=skus,
        hotspots=hot,
        by_category=by_category,
        by_country=by_country,
        by_carrier=by_carrier,
        global_drivers=global_drivers,
        calibration=calibration,
        lift=lift,
        meta=meta,
    )


def _sku_attributes(skus: pd.DataFrame) -> pd.DataFrame:
    cols = ["sku_id", "product_id", "category", "brand", "supplier_id"]
    out = skus[[c for c in cols if c in skus]].copy()
    for c in cols:
        if c not in out:
            out[c] = pd.Series(np.nan, index=out.index, dtype="str")
    return out[cols]


def _eval_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    top = p >= np.quantile(p, 0.9)
    base = float(y.mean())
    return {
        "orders": float(len(y)),
        "case_rate": base,
        "mean_predicted": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "top10_lift": float(y[top].mean() / base) if base > 0 else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib Agg -> base64 PNG, deterministic bytes)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(report: SkuReport, top_n: int = 15) -> dict[str, str]:
    """The page's figures as base64 PNG (Agg rendering, no display, no pyplot state)."""
    return {name: _png(fig) for name, fig in report_figures(report, top_n).items()}


def report_figures(report: SkuReport, top_n: int = 15) -> dict[str, Any]:
    """Matplotlib figures of the report (top SKUs, global drivers, calibration, lift), made
    with the object API (``matplotlib.figure.Figure``: no pyplot, safe in server threads).
    Notebooks display them inline."""
    import matplotlib
    from matplotlib.figure import Figure

    figs: dict[str, Any] = {}
    style = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
    with matplotlib.rc_context(style):
        top = report.skus.head(top_n).iloc[::-1]
        if len(top):
            fig = Figure(figsize=(6.4, 0.28 * len(top) + 0.9))
            ax = fig.subplots()
            ax.barh(top["sku_id"].astype("str"), top["expected_cases"], color="#c0504d")
            for y, (v, r) in enumerate(
                zip(top["expected_cases"], top["predicted_rate"], strict=True)
            ):
                ax.text(v, y, f"  {v:.1f}  ({r:.0%} of orders)", va="center", fontsize=8)
            ax.set_xlabel(f"expected after-sales cases, last {report.meta['window_days']} days")
            ax.set_title("SKUs with the most expected cases", loc="left")
            ax.set_xlim(0, float(top["expected_cases"].max()) * 1.45 or 1)
            figs["top_skus"] = fig

        gd = report.global_drivers.iloc[::-1]
        if len(gd):
            fig = Figure(figsize=(6.4, 0.3 * len(gd) + 0.9))
            ax = fig.subplots()
            ax.barh(gd["label"], gd["mean_abs"], color="#4f81bd", label="average strength")
            ax.barh(
                gd["label"],
                gd["mean_signed"].clip(lower=0),
                color="#c0504d",
                height=0.35,
                label="net push towards a case",
            )
            ax.set_xlabel("average SHAP contribution (log-odds) over recent orders")
            ax.set_title("What drives after-sales risk overall", loc="left")
            ax.legend(frameon=False, loc="lower right", fontsize=8)
            figs["global_drivers"] = fig

        cal = report.calibration
        if len(cal):
            fig = Figure(figsize=(4.4, 3.4))
            ax = fig.subplots()
            hi = float(max(cal["predicted"].max(), cal["observed_hi"].max())) * 1.08
            ax.plot([0, hi], [0, hi], color="#999999", lw=1, ls="--", label="perfect")
            ax.errorbar(
                cal["predicted"],
                cal["observed"],
                yerr=[cal["observed"] - cal["observed_lo"], cal["observed_hi"] - cal["observed"]],
                fmt="o-",
                color="#4f81bd",
                capsize=3,
                label="actual (95 % interval)",
            )
            ax.set_xlim(0, hi)
            ax.set_ylim(0, hi)
            ax.set_xlabel("predicted case probability (10 groups of orders)")
            ax.set_ylabel("actual case rate")
            ax.set_title("Calibration: do predictions come true?", loc="left")
            ax.legend(frameon=False, fontsize=8)
            figs["calibration"] = fig

        lift = report.lift
        if len(lift):
            fig = Figure(figsize=(8.4, 3.4))
            a1, a2 = fig.subplots(1, 2)
            a1.bar(lift["decile"], lift["lift"], color="#4f81bd")
            a1.axhline(1.0, color="#999999", lw=1, ls="--")
            a1.set_xticks(lift["decile"])
            a1.set_xlabel("orders by predicted risk, in tenths (1 = riskiest)")
            a1.set_ylabel("case rate vs average (x)")
            a1.set_title("Lift by risk tenth", loc="left")
            x = np.concatenate([[0.0], lift["orders_share"].to_numpy()])
            y = np.concatenate([[0.0], lift["cases_caught"].to_numpy()])
            a2.plot(x * 100, y * 100, "o-", color="#c0504d", label="model")
            a2.plot([0, 100], [0, 100], color="#999999", lw=1, ls="--", label="random")
            a2.set_xlabel("% of orders checked (riskiest first)")
            a2.set_ylabel("% of cases caught")
            a2.set_title("Cases caught", loc="left")
            a2.legend(frameon=False, fontsize=8)
            fig.tight_layout()
            figs["lift"] = fig
    return figs


# ---------------------------------------------------------------------------------------------
# HTML


def _pct(x: float, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.{digits}f} %"


def _num(x: float, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:,.{digits}f}"


def _date(ts: Any) -> str:
    return "–" if ts is None or pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}"


def _signed_pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:+.0f} %"


def _signed_pp(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:+.1f} pt"


def _esc(x: Any) -> str:
    return "" if x is None or (not isinstance(x, str) and pd.isna(x)) else html.escape(str(x))


def _attr(x: Any) -> str:
    if x is None or pd.isna(x):
        return ""
    if isinstance(x, float | np.floating):
        return repr(float(x))
    return html.escape(str(x), quote=True)


# Column spec: (key, header, tooltip, formatter, css class)
def _columns(report: SkuReport, kind: str) -> list[tuple[str, str, str, Any, str]]:
    wd = report.meta["window_days"]
    lw = report.meta["label_window_days"]
    common = [
        (
            "orders",
            f"Orders ({wd}d)",
            f"orders in the last {wd} days that contain it",
            lambda v: f"{int(v):,}",
            "num",
        ),
        (
            "expected_cases",
            "Expected cases",
            "sum of the predicted case probabilities of its recent orders, split by line value",
            lambda v: _num(v, 1),
            "num",
        ),
        (
            "predicted_rate",
            "Predicted case rate",
            "average predicted probability that one of its recent orders ends in a case",
            _pct,
            "num",
        ),
        (
            "actual_rate",
            "Actual case rate",
            f"share of its orders older than {lw} days (last 12 months) that had a case;"
            " 95 % interval in grey",
            None,
            "num",
        ),
        (
            "mature_orders",
            "Judged orders",
            f"orders older than {lw} days (last 12 months) behind the actual rate",
            lambda v: f"{int(v):,}",
            "num",
        ),
        ("orders_trend", "Orders trend", f"orders vs the {wd} days before", _signed_pct, "num"),
        (
            "risk_trend",
            "Risk trend",
            f"change of the predicted case rate vs the {wd} days before, in percentage points",
            _signed_pp,
            "num",
        ),
        (
            "main_drivers",
            "Main risk drivers",
            "driver families pushing its orders' risk up most (hover for their strength)",
            _esc,
            "txt drivers",
        ),
    ]
    few = report.meta["min_orders_for_rate"]
    common = [
        (k, h, f"{t}; shown when both periods have at least {few} orders", f, c)
        if k in ("orders_trend", "risk_trend")
        else (k, h, t, f, c)
        for k, h, t, f, c in common
    ]
    if kind == "skus":
        head = [
            ("rank", "#", "rank by expected cases", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _esc, "txt key"),
            ("category", "Category", "", _esc, "txt"),
            ("supplier_id", "Supplier", "", _esc, "txt"),
        ]
        tail = [
            (
                "top_case_type",
                "Top case type",
                "most frequent case type on its judged orders, share of its cases",
                _esc,
                "txt case",
            )
        ]
        return head + common + tail
    if kind == "rates":
        by_key = {c[0]: c for c in common}
        return [
            ("rate_rank", "#", "rank by predicted case rate", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _esc, "txt key"),
            ("category", "Category", "", _esc, "txt"),
            ("supplier_id", "Supplier", "", _esc, "txt"),
            *(by_key[k] for k in ("predicted_rate", "actual_rate", "orders", "expected_cases")),
            by_key["main_drivers"],
        ]
    if kind == "hotspots":
        return [
            ("rank", "#", "", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _esc, "txt key"),
            ("destination_country", "Ships to", "", _esc, "txt"),
            ("category", "Category", "", _esc, "txt"),
            *common,
        ]
    key_head = {
        "category": [("category", "Category", "", _esc, "txt key")],
        "country": [("destination_country", "Country", "", _esc, "txt key")],
        "carrier": [
            ("carrier_name", "Carrier", "", _esc, "txt key"),
            ("service_level", "Service", "", _esc, "txt"),
        ],
    }[kind]
    return key_head + common


def _cell(row: dict[str, Any], key: str, fmt: Any, cls: str) -> str:
    v = row.get(key)
    if key == "actual_rate":
        txt = _pct(v)
        if not pd.isna(v):
            txt += (
                f' <span class="ci">{_pct(row["actual_lo"], 0)}–{_pct(row["actual_hi"], 0)}</span>'
            )
        return f'<td class="{cls}" data-v="{_attr(v)}">{txt}</td>'
    if key == "risk_trend" and not pd.isna(v):
        tone = "up" if v > 0.005 else ("down" if v < -0.005 else "")
        cls = f"{cls} {tone}".strip()
    if key == "sku_id" and isinstance(row.get("brand"), str):
        sub = f'<span class="sub">{_esc(row["brand"])}</span>'
        return f'<td class="{cls}" data-v="{_attr(v)}">{fmt(v)}{sub}</td>'
    if key == "main_drivers" and row.get("drivers_detail"):
        title = "strength (log-odds): " + str(row["drivers_detail"])
        return f'<td class="{cls}" title="{_attr(title)}">{fmt(v)}</td>'
    return f'<td class="{cls}" data-v="{_attr(v)}">{fmt(v)}</td>'


def _table(report: SkuReport, frame: pd.DataFrame, kind: str, table_id: str) -> str:
    cols = _columns(report, kind)
    head = "".join(
        f'<th class="{c[4]}" title="{html.escape(c[2], quote=True)}" data-type='
        f'"{"num" if "num" in c[4] else "txt"}">{html.escape(c[1])}</th>'
        for c in cols
    )
    records = frame.to_dict("records")
    body = "\n".join(
        f'<tr data-i="{i}">' + "".join(_cell(r, c[0], c[3], c[4]) for c in cols) + "</tr>"
        for i, r in enumerate(records)
    )
    return (
        f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _csv_records(report: SkuReport, skus: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    fam = [f"driver_{f}" for f in report.families]
    cols = [
        "rank",
        "rate_rank",
        "sku_id",
        "product_id",
        "category",
        "brand",
        "supplier_id",
        "orders",
        "units",
        "sales",
        "expected_cases",
        "predicted_rate",
        "mature_orders",
        "mature_cases",
        "actual_rate",
        "actual_lo",
        "actual_hi",
        "prev_orders",
        "orders_trend",
        "prev_predicted_rate",
        "risk_trend",
        "main_drivers",
        "drivers_detail",
        "top_case_type",
        *fam,
    ]
    cols = [c for c in cols if c in skus]
    frame = skus[cols].astype(object)
    frame = frame.where(frame.notna(), None)
    rows = [
        [(round(v, 6) if isinstance(v, float) else v) for v in r] for r in frame.to_numpy().tolist()
    ]
    return cols, rows


_JSON_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _json_script(obj: Any) -> str:
    """JSON for a ``<script type="application/json">`` block, safe for any string: ``<``, ``>``,
    ``&`` and U+2028/9 as ``\\u`` escapes (still the same JSON value), so no ``</script>``,
    ``<!--`` or ``<script`` inside a string can end or change the block."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_SCRIPT_ESCAPES)


def _img(figs: dict[str, str], name: str, alt: str) -> str:
    if name not in figs:
        return f'<p class="note">No figure: {html.escape(alt)} needs more data.</p>'
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{figs[name]}">'


def render_html(report: SkuReport) -> str:
    """One self-contained page: inline CSS + JS, figures as PNG data URIs, no external request."""
    m = report.meta
    figs = _figures(report)
    wd, lw = m["window_days"], m["label_window_days"]
    version = m.get("model_version") or "?"
    uri = m.get("model_uri") or ""
    period = f"{_date(m['window_start'])} to {_date(m['window_end'])}"
    shown = report.skus.head(int(m.get("table_max_skus") or len(report.skus)))
    cols, rows = _csv_records(report, shown)
    data = {
        "cols": cols,
        "rows": rows,
        "filename": f"sku_risk_{_date(m['window_end'])}_{wd}d.csv",
    }
    categories = sorted(shown["category"].dropna().astype("str").unique().tolist())
    cat_options = "".join(f'<option value="{_attr(c)}">{_esc(c)}</option>' for c in categories)

    kpis = [
        (f"{m['n_window_orders']:,}", f"orders in the last {wd} days"),
        (_num(m["expected_cases"], 0), "expected after-sales cases from them"),
        (_pct(m["predicted_rate"]), "predicted case rate"),
        (_pct(m["actual_rate"]), "actual case rate, judged orders of the last 12 months"),
        (f"{m['n_skus']:,}", "SKUs sold in the window"),
    ]
    kpi_html = "".join(
        f'<div class="kpi"><b>{html.escape(v)}</b><span>{html.escape(t)}</span></div>'
        for v, t in kpis
    )

    em = m.get("eval_metrics") or {}
    eval_note = (
        f"Measured on {m['eval_n']:,} judged orders placed {_date(m['eval_from'])} to "
        f"{_date(m['eval_to'])}"
        + (
            ", after the model's training data (out of time)."
            if m.get("eval_out_of_time")
            else "; the model may have been trained on some of them, so treat this as optimistic."
        )
    )
    metric_rows = [
        ("Model", f"{html.escape(str(version))} <span class='note'>{html.escape(uri)}</span>"),
        ("Run", html.escape(m.get("model_run_id") or "–")),
        (
            "Report window",
            f"{period} ({wd} days, as of {pd.Timestamp(m['as_of']):%Y-%m-%d %H:%M} UTC)",
        ),
        (
            "Actual rates from",
            f"orders placed {_date(m['actual_from'])} to {_date(m['actual_to'])}",
        ),
    ]
    metric_rows += _data_window_rows(m.get("model_data_window") or {})
    if em:
        metric_rows += [
            ("ROC AUC / PR AUC", f"{em['roc_auc']:.3f} / {em['pr_auc']:.3f}"),
            ("Brier score", f"{em['brier']:.4f}"),
            ("Predicted vs actual", f"{_pct(em['mean_predicted'])} vs {_pct(em['case_rate'])}"),
            ("Top-10 % lift", f"{em['top10_lift']:.2f}x"),
        ]
    metric_rows += _registry_metric_rows(m.get("model_metrics") or {})
    meta_html = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in metric_rows)

    gd_rows = "".join(
        f"<tr data-i='{i}'><td class='key'>{_esc(r.label)}</td>"
        f"<td class='num' data-v='{_attr(r.weight)}'>{r.weight:.0%}</td>"
        f"<td class='num' data-v='{_attr(r.mean_signed)}'>{r.mean_signed:+.3f}</td>"
        f"<td class='num' data-v='{_attr(r.share_raising)}'>{r.share_raising:.0%}</td></tr>"
        for i, r in enumerate(report.global_drivers.itertuples())
    )

    return _template("sku_report.html").substitute(
        css=_template_text("sku_report.css"),
        js=_template_text("sku_report.js"),
        period=html.escape(period),
        wd=wd,
        lw=lw,
        version=html.escape(str(version)),
        n_orders=f"{m['n_window_orders']:,}",
        n_skus=f"{m['n_skus']:,}",
        kpis=kpi_html,
        category_options=cat_options,
        sku_table=_table(report, shown, "skus", "sku-table"),
        table_note=html.escape(
            f"Showing the top {len(shown):,} of {len(report.skus):,} SKUs by expected cases."
            if len(shown) < len(report.skus)
            else f"All {len(report.skus):,} SKUs sold in the window."
        ),
        rate_table=_table(report, _top_by_rate(report.skus), "rates", "rate-table"),
        min_orders=m["min_orders_for_rate"],
        fig_top_skus=_img(figs, "top_skus", "SKUs with the most expected cases"),
        fig_global_drivers=_img(figs, "global_drivers", "what drives risk overall"),
        hotspot_table=_table(report, report.hotspots, "hotspots", "hotspot-table"),
        category_table=_table(report, report.by_category, "category", "category-table"),
        country_table=_table(report, report.by_country, "country", "country-table"),
        carrier_table=_table(report, report.by_carrier, "carrier", "carrier-table"),
        driver_rows=gd_rows,
        fig_calibration=_img(figs, "calibration", "calibration"),
        fig_lift=_img(figs, "lift", "lift"),
        eval_note=html.escape(eval_note),
        meta_rows=meta_html,
        data_json=_json_script(data),
    )


REGISTRY_METRICS = (
    ("test_auc", "At training: test ROC AUC"),
    ("test_ap", "At training: test PR AUC"),
    ("test_brier", "At training: test Brier score"),
    ("test_ece", "At training: calibration error"),
    ("test_lift_at_10pct", "At training: top-10 % lift"),
    ("test_n", "At training: test orders"),
)


def _registry_metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """A few of the metrics logged at training (all of them are in MLflow)."""
    known = [(k, label) for k, label in REGISTRY_METRICS if k in metrics]
    if not known:  # another naming scheme: the first few test metrics as they are
        known = [(k, k) for k in sorted(metrics) if k.startswith("test_")][:6]
    rows = []
    for key, label in known:
        v = metrics[key]
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            text = f"{v:,.0f}" if key.endswith("_n") else f"{v:.4g}"
            rows.append((html.escape(label), text))
    return rows


def _data_window_rows(window: dict[str, Any]) -> list[tuple[str, str]]:
    """The model's training data window as page rows (train / valid / test slices)."""
    rows = []
    for part, label in (("train", "Trained on"), ("valid", "Validated on"), ("test", "Tested on")):
        if f"{part}_start" not in window:
            continue
        text = (
            f"orders placed {_date(window[f'{part}_start'])} to {_date(window.get(f'{part}_end'))}"
        )
        n = window.get(f"n_{part}")
        if isinstance(n, int | float):
            text += f" ({int(n):,} orders"
            rate = window.get(f"{part}_case_rate")
            text += f", case rate {_pct(rate)})" if isinstance(rate, int | float) else ")"
        rows.append((label, html.escape(text)))
    return rows


def _top_by_rate(skus: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    ranked = skus.loc[skus["rate_rank"].notna()].sort_values("rate_rank", kind="mergesort")
    return ranked.head(n).reset_index(drop=True)


def _template_text(name: str) -> str:
    from importlib.resources import files

    return files("returnrisk.serve").joinpath("templates", name).read_text(encoding="utf-8")


def _template(name: str) -> string.Template:
    return string.Template(_template_text(name))


# ---------------------------------------------------------------------------------------------
# Entry points used by the CLI, the demo and the service


def write_report(
    data_dir: str | Path,
    out: str | Path,
    *,
    config: ReportConfig | None = None,
    model_uri: str = "models:/return-risk@champion",
    log: StepLog = QUIET,
) -> Path:
    """Load ``data_dir`` and the model, build and write the page; return the output path.

    This is what ``returnrisk report skus`` and ``make demo`` call.
    """
    from returnrisk.contract import load_tables
    from returnrisk.train.registry import load_model

    cfg = config or ReportConfig()
    tables = load_tables(data_dir, log=log)
    with log.step(f"load model {model_uri}"):
        loaded = load_model(model_uri)
    report = build_sku_report(tables, loaded, log=log, config=cfg)
    with log.step("render page"):
        page = render_html(report)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info(f"wrote {path} ({len(page) / 1e6:.1f} MB)")
    return path
