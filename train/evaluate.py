"""Metrics, slices, baselines and figures for a binary risk score.

Everything here is measured on the held-out test slice (the most recent mature weeks).

- ``binary_metrics``: ROC AUC, average precision, log loss, Brier, expected calibration error
  (10 equal-mass bins), precision / recall / lift when flagging the top 1 %, 5 %, 10 %.
- ``slice_metrics``: the same per slice (new vs returning customers, region, channel, top
  categories).
- Baselines: the base rate; the look-back heuristic of a BI dashboard (the SKU's and the lane's
  historical case rate); a logistic regression on the same features.
- Figures (matplotlib, Agg backend): ROC, precision-recall, calibration, gains/lift, SHAP summary.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from returnrisk.arrays import member_mask

TOP_FRACTIONS = (0.01, 0.05, 0.10)
_CLIP = 1e-6


# ---------------------------------------------------------------------------------- metrics
def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-mass bins of the predicted probability (ties kept together by
    a stable sort): sum over bins of (bin share) x |mean predicted - observed rate|."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    if n == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    bins = np.minimum((np.arange(n) * n_bins) // n, n_bins - 1)
    idx = np.empty(n, dtype=np.int64)
    idx[order] = bins
    cnt = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    nz = cnt > 0
    return float(np.sum(np.abs(sum_p[nz] - sum_y[nz])) / n)


def reliability_table(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-mass bin: count, mean predicted, observed rate."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    order = np.argsort(p, kind="stable")
    bins = np.minimum((np.arange(n) * n_bins) // n, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "p": p[order], "y": y[order]})
    return (
        frame.groupby("bin")
        .agg(n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
        .reset_index()
    )


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """The bins of ``expected_calibration_error`` / ``reliability_table`` (equal mass, ties by
    a stable sort) with what a reader needs: count, cases, mean predicted, observed rate and
    the predicted range of each bin."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    order = np.argsort(p, kind="stable")
    bins = np.minimum((np.arange(n) * n_bins) // n, n_bins - 1) if n else np.arange(0)
    frame = pd.DataFrame({"bin": bins, "p": p[order], "y": y[order]})
    return (
        frame.groupby("bin")
        .agg(
            n=("y", "size"),
            cases=("y", "sum"),
            mean_predicted=("p", "mean"),
            observed_rate=("y", "mean"),
            p_min=("p", "min"),
            p_max=("p", "max"),
        )
        .reset_index()
    )


def lift_deciles(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Orders from riskiest to safest in ``n_bins`` groups, cut where ``top_k_metrics`` cuts
    (group j ends at ceil(j / n_bins x n), ties broken by position): so the first group's
    ``lift`` is ``lift_at_10pct``. Per group: count, cases, mean predicted, case rate, lift over
    the base rate, cumulative share of orders and of cases caught."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    order = np.argsort(-p, kind="stable")
    ends = np.minimum(np.ceil(np.arange(1, n_bins + 1) / n_bins * n).astype(np.int64), n)
    group = np.searchsorted(ends, np.arange(n), side="right") + 1
    frame = pd.DataFrame({"decile": group, "p": p[order], "y": y[order]})
    t = frame.groupby("decile").agg(n=("y", "size"), cases=("y", "sum"), predicted=("p", "mean"))
    base = float(y.mean()) if n else float("nan")
    total = float(y.sum())
    t["case_rate"] = t["cases"] / t["n"]
    t["lift"] = t["case_rate"] / base if base > 0 else np.nan
    t["orders_share"] = t["n"].cumsum() / n
    t["cases_caught"] = t["cases"].cumsum() / total if total > 0 else np.nan
    return t.reset_index()


def top_k_metrics(
    y: np.ndarray, p: np.ndarray, fractions: Sequence[float] = TOP_FRACTIONS
) -> dict[str, float]:
    """Precision, recall and lift when flagging the top ``fraction`` of orders by score
    (k = ceil(fraction x n); ties broken by position, deterministically)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    out: dict[str, float] = {}
    order = np.argsort(-p, kind="stable")
    cum_pos = np.cumsum(y[order])
    total_pos = float(y.sum())
    base = total_pos / n if n else float("nan")
    for f in fractions:
        tag = f"{round(f * 100):d}pct"
        k = int(np.ceil(f * n))
        if k == 0:
            out[f"precision_at_{tag}"] = out[f"recall_at_{tag}"] = out[f"lift_at_{tag}"] = np.nan
            continue
        hits = float(cum_pos[k - 1])
        precision = hits / k
        out[f"precision_at_{tag}"] = precision
        out[f"recall_at_{tag}"] = hits / total_pos if total_pos else float("nan")
        out[f"lift_at_{tag}"] = precision / base if base else float("nan")
    return out


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """All test metrics of one score (probabilities in [0, 1])."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) != len(p):
        raise ValueError(f"y and p differ in length: {len(y)} vs {len(p)}")
    n = len(y)
    n_pos = float(y.sum())
    two_classes = 0 < n_pos < n
    pc = np.clip(p, _CLIP, 1 - _CLIP)
    out: dict[str, float] = {
        "n": float(n),
        "n_pos": n_pos,
        "base_rate": n_pos / n if n else float("nan"),
        "mean_pred": float(p.mean()) if n else float("nan"),
        "auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "ap": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))) if n else np.nan,
        "brier": float(brier_score_loss(y, p)) if n else float("nan"),
        "ece": expected_calibration_error(y, p),
    }
    out.update(top_k_metrics(y, p))
    return out


# ---------------------------------------------------------------------------------- slices
def slice_frame(features: pd.DataFrame, n_top_categories: int = 5) -> pd.DataFrame:
    """Slice labels per row: customer (new/returning), region, channel, category (top N by
    count in ``features``, the rest ``other``). Columns absent from ``features`` are skipped."""
    out = pd.DataFrame(index=features.index)
    if "customer_prior_orders" in features:
        prior = pd.to_numeric(features["customer_prior_orders"], errors="coerce")
        out["customer"] = np.where(prior.fillna(0) > 0, "returning", "new")
    for name, col in (("region", "destination_region"), ("channel", "channel")):
        if col in features:
            out[name] = features[col].astype("object").fillna("(missing)")
    if "main_category" in features:
        cat = features["main_category"].astype("object").fillna("(missing)")
        counts = cat.value_counts()
        counts = counts.sort_index().sort_values(ascending=False, kind="stable")
        top = set(counts.index[:n_top_categories])
        out["category"] = cat.where(cat.isin(top), "other")
    return out


def slice_metrics(
    y: np.ndarray, scores: Mapping[str, np.ndarray], slices: pd.DataFrame
) -> pd.DataFrame:
    """One row per (score, slice, value): n, positives, base rate, mean predicted, AUC, AP,
    ECE, lift at 5 %. ``scores`` maps a score name (model, baselines) to probabilities."""
    y = np.asarray(y, dtype=np.float64)
    rows = []
    for slice_name in slices.columns:
        labels = slices[slice_name].to_numpy()
        for value in sorted(pd.unique(labels), key=str):
            mask = labels == value
            for score_name, p in scores.items():
                m = binary_metrics(y[mask], np.asarray(p)[mask])
                rows.append(
                    {
                        "slice": slice_name,
                        "value": str(value),
                        "score": score_name,
                        **{
                            k: m[k]
                            for k in (
                                "n",
                                "n_pos",
                                "base_rate",
                                "mean_pred",
                                "auc",
                                "ap",
                                "ece",
                                "brier",
                                "lift_at_5pct",
                            )
                        },
                    }
                )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- baselines
def base_rate_baseline(y_fit: np.ndarray, n: int) -> np.ndarray:
    """The fitting slice's case rate for every order."""
    return np.full(n, float(np.mean(y_fit)), dtype=np.float64)


def lookback_heuristic(
    order_lines: pd.DataFrame,
    fit: pd.DataFrame,
    score: pd.DataFrame,
    *,
    prior_strength: float = 10.0,
) -> np.ndarray:
    """The BI dashboard's look-back score: mean of (highest historical case rate among the
    order's SKUs, historical case rate of its lane = destination x carrier).

    ``fit``: labelled orders known before the scored ones (order_id, destination_country,
    carrier_id, label); ``score``: orders to score (order_id, destination_country, carrier_id).
    Rates are smoothed towards the fit rate with ``prior_strength`` pseudo-orders; unknown SKUs
    and lanes get the fit rate.
    """
    g = float(fit["label"].mean())
    lines = order_lines[["order_id", "sku_id"]].drop_duplicates()

    def lane_key(df: pd.DataFrame) -> pd.Series:
        return (
            df["destination_country"].astype("object").fillna("?").astype(str)
            + "|"
            + df["carrier_id"].astype("object").fillna("?").astype(str)
        )

    fit_lines = lines.merge(fit[["order_id", "label"]], on="order_id", how="inner")
    sku = fit_lines.groupby("sku_id")["label"].agg(["sum", "count"])
    sku_rate = (sku["sum"] + prior_strength * g) / (sku["count"] + prior_strength)
    score_lines = lines[member_mask(lines["order_id"], score["order_id"])]
    per_line = score_lines["sku_id"].map(sku_rate).fillna(g)
    sku_max = per_line.groupby(score_lines["order_id"].to_numpy()).max()
    sku_score = score["order_id"].map(sku_max).fillna(g).to_numpy(dtype=np.float64)

    lanes = pd.DataFrame({"lane": lane_key(fit).to_numpy(), "label": fit["label"].to_numpy()})
    lane = lanes.groupby("lane")["label"].agg(["sum", "count"])
    lane_rate = (lane["sum"] + prior_strength * g) / (lane["count"] + prior_strength)
    lane_score = lane_key(score).map(lane_rate).fillna(g).to_numpy(dtype=np.float64)
    return 0.5 * (sku_score + lane_score)


def logistic_baseline(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray,
    X_score: pd.DataFrame,
    categorical: Sequence[str],
    *,
    max_rows: int | None = 100_000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Logistic regression on the same features: numerics median-imputed (+ missing flags) and
    standardised, categoricals one-hot (rare levels pooled). Fitted on the most recent
    ``max_rows`` fitting rows (to bound time on large data). Returns probabilities + info."""
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in X_fit.columns if c in set(categorical)]
    nums = [c for c in X_fit.columns if c not in set(categorical)]

    def plain(X: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for c in nums:
            v = pd.to_numeric(X[c], errors="coerce").astype("float64")
            out[c] = v.where(np.isfinite(v))
        for c in cats:
            out[c] = X[c].astype("object").where(X[c].notna(), "(missing)").astype(str)
        return pd.DataFrame(out, index=X.index)

    if max_rows is not None and len(X_fit) > max_rows:
        X_fit = X_fit.iloc[-max_rows:]
        y_fit = np.asarray(y_fit)[-max_rows:]
    transformers = []
    if nums:
        transformers.append(
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                nums,
            )
        )
    if cats:
        transformers.append(
            (
                "cat",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                cats,
            )
        )
    pipe = make_pipeline(
        ColumnTransformer(transformers),
        LogisticRegression(C=1.0, max_iter=500, random_state=seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipe.fit(plain(X_fit), np.asarray(y_fit, dtype=np.float64))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    proba = pipe.predict_proba(plain(X_score))[:, 1]
    # the columns the fitted transformer took in (every one of them feeds the regression)
    used = [str(c) for c in pipe[0].feature_names_in_]
    info = {"converged": converged, "n_fit_rows": len(X_fit), "features": used}
    return proba.astype(np.float64), info


# ---------------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    y: np.ndarray, scores: Mapping[str, np.ndarray], out_dir: Path, prefix: str = ""
) -> list[Path]:
    """ROC, precision-recall, calibration and gains/lift figures, one line per score."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=np.float64)
    paths = []
    two = 0 < y.sum() < len(y)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        if two:
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / f"{prefix}roc.png", plt))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        if two:
            prec, rec, _ = precision_recall_curve(y, p)
            ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, p):.3f})")
    ax.axhline(y.mean(), ls=":", c="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / f"{prefix}pr.png", plt))

    fig, ax = plt.subplots(figsize=(5.5, 5))
    hi = 0.0
    for name, p in scores.items():
        rel = reliability_table(y, p, n_bins=10)
        hi = max(hi, rel["mean_predicted"].max(), rel["observed_rate"].max())
        ax.plot(
            rel["mean_predicted"],
            rel["observed_rate"],
            marker="o",
            ms=3,
            label=f"{name} (ECE {expected_calibration_error(y, p):.4f})",
        )
    ax.plot([0, hi], [0, hi], ls=":", c="grey")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed case rate",
        title="Calibration (10 equal-mass bins, test)",
    )
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / f"{prefix}calibration.png", plt))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    n = len(y)
    frac = np.arange(1, n + 1) / n
    for name, p in scores.items():
        order = np.argsort(-np.asarray(p), kind="stable")
        cum = np.cumsum(y[order])
        gains = cum / max(cum[-1], 1.0)
        ax1.plot(frac, gains, label=name)
        lift = (cum / np.arange(1, n + 1)) / max(y.mean(), 1e-12)
        ax2.plot(frac, lift, label=name)
    ax1.plot([0, 1], [0, 1], ls=":", c="grey")
    for f in TOP_FRACTIONS:
        ax1.axvline(f, ls="--", c="lightgrey")
        ax2.axvline(f, ls="--", c="lightgrey")
    ax1.set(xlabel="share of orders flagged", ylabel="share of cases caught", title="Gains")
    ax2.set(
        xlabel="share of orders flagged",
        ylabel="lift",
        title="Lift",
        xscale="log",
        xlim=(max(1.0 / n, 1e-3), 1),
    )
    ax1.legend(fontsize=8)
    paths.append(_save(fig, out_dir / f"{prefix}gains.png", plt))
    return paths


def plot_shap_summary(
    contributions: pd.DataFrame,
    X: pd.DataFrame,
    out_path: Path,
    *,
    max_features: int = 20,
    seed: int = 0,
) -> Path:
    """SHAP summary: per feature (top by mean |SHAP|) the distribution of SHAP values, coloured
    by the feature's value rank (numerics; categoricals grey), plus mean |SHAP| bars."""
    plt = _pyplot()
    contrib = contributions.drop(columns=["bias"], errors="ignore")
    importance = contrib.abs().mean().sort_values(ascending=False, kind="stable")
    top = list(importance.index[:max_features])[::-1]
    rng = np.random.default_rng(seed)
    fig, (ax, axb) = plt.subplots(
        1,
        2,
        figsize=(12, 0.35 * len(top) + 1.5),
        gridspec_kw={"width_ratios": [3, 1]},
        sharey=True,
    )
    for i, name in enumerate(top):
        vals = contrib[name].to_numpy()
        jitter = rng.uniform(-0.3, 0.3, size=len(vals))
        col = X.get(name)
        if col is not None and pd.api.types.is_numeric_dtype(col.dtype):
            rank = pd.Series(col.to_numpy()).rank(pct=True).to_numpy()
            colors = np.where(np.isnan(rank), 0.5, rank)
            ax.scatter(vals, i + jitter, c=colors, cmap="coolwarm", s=3, alpha=0.6, vmin=0, vmax=1)
        else:
            ax.scatter(vals, i + jitter, c="grey", s=3, alpha=0.5)
    ax.axvline(0, c="black", lw=0.5)
    ax.set_yticks(range(len(top)))
    ax.set_yticklabels(top, fontsize=8)
    ax.set(xlabel="SHAP value (log-odds; red = high feature value)", title="SHAP summary (test)")
    axb.barh(range(len(top)), importance[top].to_numpy(), color="steelblue")
    axb.set(xlabel="mean |SHAP|")
    return _save(fig, out_path, plt)


def plot_gate_metrics(metrics: Mapping[str, Mapping[str, float]], out_path: Path) -> Path:
    """Bar chart of AUC / AP / ECE / lift@5% per model (champion vs challenger)."""
    plt = _pyplot()
    keys = ["auc", "ap", "ece", "lift_at_5pct"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3 * len(keys), 3.5))
    names = list(metrics)
    for ax, key in zip(axes, keys, strict=True):
        vals = [metrics[n].get(key, np.nan) for n in names]
        ax.bar(names, vals, color=["grey", "steelblue", "orange"][: len(names)])
        ax.set_title(key)
        for j, v in enumerate(vals):
            ax.text(j, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    return _save(fig, out_path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
