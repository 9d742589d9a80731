"""Merchandiser SKU risk review: which listings to fix, which suppliers to call, where not to ship.

``build_sku_report(tables, loaded_model)`` scores the orders of the last ``window_days`` (and the
window before, for the trend) with the champion, explains them with SHAP grouped into the driver
families of ``FEATURE_SPECS``, and aggregates everything per SKU, per SKU x destination, per
category, per destination country and per carrier (this module: the data). ``report_figures``
draws its figures and ``report_html.render_html(report)`` turns it into one self-contained page
(figures as PNG data URIs, inline CSS and JavaScript, no network) with a sortable, filterable
SKU table and a CSV export; ``report_skus`` is the public face of the three.

How an order's risk is split between its SKUs: an order has one probability of ending in an
after-sales case; each SKU of the order gets the part of it equal to the SKU's share of the
order's line value (quantity x unit price; quantity share when the order's value is 0). A SKU's
*expected cases* are the sum of those parts over its recent orders. Its *predicted case rate* is
the mean probability of the recent orders that contain it, comparable with its *actual case rate*:
the share of its mature orders (old enough for the outcome to be known) that had a case, with a
Wilson 95 % interval.

Everything is vectorised (group-bys and merges; no Python loop over orders or SKUs), pure (input
frames are never modified) and deterministic (same data and model give the same bytes).

Why one file of ~700 lines: the five aggregation levels share the scored, explained window and
the split of each order's risk between its SKUs; cut apart, each would re-derive them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from returnrisk.arrays import member_mask, to_utc
from returnrisk.errors import ReturnriskError
from returnrisk.labels import LABEL_WINDOW_DAYS, order_outcomes
from returnrisk.progress import QUIET, StepLog

if TYPE_CHECKING:  # pragma: no cover
    from returnrisk.contract import Tables

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


class ReportError(ReturnriskError, ValueError):
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
    """Reliability table on equal-mass bins of the predicted probability: the bins of
    ``train.evaluate`` (``calibration_bins``, those of its ECE) with Wilson 95 % intervals."""
    from returnrisk.train.evaluate import calibration_bins

    t = calibration_bins(y, p, n_bins).rename(
        columns={"mean_predicted": "predicted", "observed_rate": "observed"}
    )
    t["observed_lo"], t["observed_hi"] = wilson_interval(t["cases"], t["n"])
    return t[
        [
            "bin",
            "n",
            "cases",
            "predicted",
            "p_min",
            "p_max",
            "observed",
            "observed_lo",
            "observed_hi",
        ]
    ]


def lift_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Deciles from riskiest to safest: case rate, lift over the average, share of cases caught
    (``train.evaluate.lift_deciles``: the first decile's lift is the training's
    ``lift_at_10pct``)."""
    from returnrisk.train.evaluate import lift_deciles

    return lift_deciles(y, p, n_bins)


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


def _report_window(
    orders: pd.DataFrame, as_of: pd.Timestamp, window_days: int
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Series, pd.Series]:
    """``(start, end, in_window, in_prev)``: the window ends at the latest order known at
    ``as_of`` (the export may be a little later); the previous window is as long, just before."""
    if orders.empty:
        raise ReportError("orders: the table is empty, nothing to report on")
    win = pd.Timedelta(days=window_days)
    ts = orders["order_ts"]
    end = ts.loc[ts <= as_of].max()
    if pd.isna(end):
        raise ReportError(f"orders: no order placed before as_of {as_of:%Y-%m-%d %H:%M} UTC")
    start = end - win
    prev_start = start - win
    return start, end, (ts > start) & (ts <= end), (ts > prev_start) & (ts <= start)


def _eval_pool(
    outcomes: pd.DataFrame, eval_from: pd.Timestamp | None, max_orders: int
) -> tuple[pd.DataFrame, bool]:
    """The mature orders calibration and lift are measured on, and whether they all come after
    the model's data (at least 200 such orders), the latest ``max_orders`` of them."""
    pool = outcomes.loc[outcomes["mature"]]
    out_of_time = False
    if eval_from is not None:
        after = pool.loc[pool["order_ts"] > eval_from]
        if len(after) >= 200:
            pool, out_of_time = after, True
    return pool.sort_values(["order_ts", "order_id"]).tail(max_orders), out_of_time


def _scored(feats: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": feats["order_id"].to_numpy(),
            "order_ts": feats["order_ts"].to_numpy(),
            "destination_country": feats["destination_country"].astype("str").to_numpy(),
            "carrier_id": feats["carrier_id"].to_numpy(),
            "p": p,
        }
    )


def _eval_scored(
    scored: pd.DataFrame, feats: pd.DataFrame, eval_pool: pd.DataFrame
) -> pd.DataFrame:
    """Scored orders of the evaluation pool that have a label."""
    out = (
        scored[["order_id", "p"]]
        .merge(feats[["order_id", "label"]], on="order_id")
        .merge(eval_pool[["order_id"]], on="order_id")
    )
    return out.loc[out["label"].notna()]


def _sku_pairs(frame: pd.DataFrame, shares: pd.DataFrame, meta_skus: pd.DataFrame) -> pd.DataFrame:
    """Orders split into (order, SKU) pairs with their line shares and the SKU's category."""
    return frame.merge(shares, on="order_id", how="inner").merge(
        meta_skus[["sku_id", "category"]], on="sku_id", how="left"
    )


def _per_sku(
    pairs: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    meta_skus: pd.DataFrame,
    cases: pd.DataFrame,
    outcomes: pd.DataFrame,
    label_window_days: int,
    agg_kw: dict[str, Any],
) -> pd.DataFrame:
    """The SKU table: aggregates, attributes and the top case type of mature orders."""
    skus = aggregate(*pairs, ["sku_id"], **agg_kw)
    skus = skus.merge(meta_skus, on="sku_id", how="left")
    ct = top_case_types(cases, pairs[2], ["sku_id"], outcomes, label_window_days)
    skus = skus.merge(ct, on="sku_id", how="left")
    return skus.assign(top_case_type=skus["top_case_type"].fillna("").astype("str"))


def _hotspots(
    pairs: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    meta_skus: pd.DataFrame,
    n: int,
    agg_kw: dict[str, Any],
) -> pd.DataFrame:
    """The top ``n`` (SKU, destination country) pairs."""
    hot = aggregate(*pairs, ["sku_id", "destination_country"], **agg_kw)
    hot = hot.merge(meta_skus[["sku_id", "category"]], on="sku_id", how="left")
    return hot.head(n).reset_index(drop=True)


def _per_category(
    pairs: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    window_orders: pd.DataFrame,
    agg_kw: dict[str, Any],
) -> pd.DataFrame:
    """Per category: several SKUs of one order may share a category: sum their shares first."""
    w_pairs, p_pairs, m_pairs = pairs
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
    return aggregate(w_cat, p_cat, m_cat, ["category"], **agg_kw)


def _order_level(frame: pd.DataFrame, order_value: pd.DataFrame) -> pd.DataFrame:
    """Whole orders (share 1) with their value and quantity; no carrier -> ``NO_CARRIER``."""
    out = frame.merge(order_value, on="order_id", how="left").assign(share=1.0)
    return out.assign(carrier_id=out["carrier_id"].fillna(NO_CARRIER).astype("str"))


def _per_carrier(
    levels: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    carriers: pd.DataFrame,
    agg_kw: dict[str, Any],
) -> pd.DataFrame:
    by_carrier = aggregate(*levels, ["carrier_id"], **agg_kw)
    by_carrier = by_carrier.merge(
        carriers[["carrier_id", "carrier_name", "service_level"]], on="carrier_id", how="left"
    )
    return by_carrier.assign(
        carrier_name=by_carrier["carrier_name"].fillna(by_carrier["carrier_id"])
    )


def _global_drivers(window_orders: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """Each driver family's mean |contribution| over the window's orders, largest first."""
    fam_values = window_orders[families].to_numpy(dtype="float64")
    drivers = pd.DataFrame(
        {
            "family": families,
            "label": [FAMILY_LABELS.get(f, f) for f in families],
            "mean_abs": np.abs(fam_values).mean(axis=0),
            "mean_signed": fam_values.mean(axis=0),
            "share_raising": (fam_values > 0).mean(axis=0),
        }
    )
    drivers["weight"] = drivers["mean_abs"] / drivers["mean_abs"].sum()
    return drivers.sort_values(["mean_abs", "family"], ascending=[False, True]).reset_index(
        drop=True
    )


def _calibration(
    eval_scored: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """``(calibration, lift, metrics)``; empty with fewer than 20 orders or a single class."""
    if len(eval_scored) >= 20 and eval_scored["label"].nunique() == 2:
        pe, ye = eval_scored["p"].to_numpy(), eval_scored["label"].to_numpy(dtype="float64")
        return calibration_table(pe, ye), lift_table(pe, ye), _eval_metrics(pe, ye)
    return pd.DataFrame(), pd.DataFrame(), {}


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
    start, end, in_window, in_prev = _report_window(orders, as_of, cfg.window_days)

    with log.step("outcomes of mature orders"):
        outcomes = order_outcomes(
            orders, tables.after_sales_cases, as_of=as_of, label_window_days=cfg.label_window_days
        )
        mature_cut = as_of - pd.Timedelta(days=cfg.label_window_days)
        look = outcomes["mature"] & (
            outcomes["order_ts"] > mature_cut - pd.Timedelta(days=cfg.actual_lookback_days)
        )
        mature_orders = outcomes.loc[look, ["order_id", "label"]]
        eval_pool, out_of_time = _eval_pool(
            outcomes, _eval_start(loaded_model), cfg.eval_max_orders
        )

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
        scored = _scored(feats, np.asarray(model.predict_case(feats[names]), dtype="float64"))
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
    eval_scored = _eval_scored(scored, feats, eval_pool)

    with log.step("aggregate per SKU, category, country, carrier"):
        meta_skus = _sku_attributes(tables.skus)
        shares = line_shares(tables.order_lines)
        cases = tables.after_sales_cases.loc[tables.after_sales_cases["opened_ts"] <= as_of]
        m_orders = mature_orders.merge(
            orders[["order_id", "destination_country", "carrier_id"]], on="order_id"
        )
        frames = (window_orders, prev_orders, m_orders)
        w_pairs, p_pairs, m_pairs = (_sku_pairs(f, shares, meta_skus) for f in frames)
        pairs = (w_pairs, p_pairs, m_pairs)
        agg_kw: dict[str, Any] = {
            "families": families,
            "min_orders_for_rate": cfg.min_orders_for_rate,
        }
        skus = _per_sku(pairs, meta_skus, cases, outcomes, cfg.label_window_days, agg_kw)
        hot = _hotspots(pairs, meta_skus, cfg.hotspots_n, agg_kw)
        by_category = _per_category(pairs, window_orders, agg_kw)
        order_value = shares.groupby("order_id", as_index=False)[["value", "quantity"]].sum()
        w_o, p_o, m_o = (_order_level(f, order_value) for f in frames)
        by_country = aggregate(w_o, p_o, m_o, ["destination_country"], **agg_kw)
        by_carrier = _per_carrier((w_o, p_o, m_o), tables.carriers, agg_kw)
        global_drivers = _global_drivers(window_orders, families)

    with log.step(f"calibration and lift on {len(eval_scored):,} mature orders"):
        calibration, lift, eval_metrics = _calibration(eval_scored)

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
    """The page's model-quality figures, as ``train.evaluate.binary_metrics`` measures them
    (one definition of top-10 % lift: ``lift_at_10pct``)."""
    from returnrisk.train.evaluate import binary_metrics

    m = binary_metrics(y, p)
    return {
        "orders": m["n"],
        "case_rate": m["base_rate"],
        "mean_predicted": m["mean_pred"],
        "roc_auc": m["auc"],
        "pr_auc": m["ap"],
        "brier": m["brier"],
        "top10_lift": m["lift_at_10pct"],
    }
