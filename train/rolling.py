"""Evaluation that does not flatter: rolling-origin test windows and a feature-family ablation.

One test slice says little: its season, its shocks and its size make one number. Here the
model is trained again for each of ``n_windows`` consecutive, non-overlapping test windows of
``window_days`` days at the end of the mature period (an expanding origin): each window's model
is fitted by the project's own training code (``pipeline.fit_parts``: LightGBM with early
stopping and calibration, the case-type model, the baselines) on the mature orders strictly
before the window (less ``gap_days``), the last ``valid_fraction`` of them (cut at a day start)
being the validation slice of early stopping, calibration and tuning. No test row, nor anything
after the window's start, is seen by tuning, early stopping or calibration (checked by
``pipeline.check_time_order`` on every fit).

Per window: AUC, AP, ECE ... of the model, the baselines (base rate, look-back heuristic,
logistic regression on exactly the model's features) and, when given, the generator's truth;
per case-type family (first case of the order within the label window) AUC and ECE; the slices
of ``evaluate.slice_frame``. ``summarize`` gives the mean and the spread (sample standard
deviation, ddof 1) over the windows.

``ablation``: drop each feature family (``FEATURE_SPECS``' families, or explicit groups) ->
train again -> change of the test AUC against the full model trained the same way.

The feature list is data: the prepared frame's ``feature_names`` (``FEATURE_SPECS`` columns that
the feature table has), grouped by their spec's family, so new columns and new families are
picked up without a change here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from returnrisk.progress import QUIET, StepLog

from . import evaluate as ev
from .pipeline import (
    PreparedData,
    TrainConfig,
    TrainDataError,
    TrainResult,
    fit_parts,
    require_both_classes,
)

if TYPE_CHECKING:
    from returnrisk.features.specs import FeatureSpec

# the metrics kept per (window, score) and summarised over the windows
METRICS = (
    "auc",
    "ap",
    "ece",
    "brier",
    "log_loss",
    "base_rate",
    "mean_pred",
    "lift_at_5pct",
    "precision_at_5pct",
)
FAMILY_METRICS = ("auc", "ece", "n_pos", "base_rate", "mean_pred")
SLICE_METRICS = ("auc", "ap", "ece", "n", "n_pos", "base_rate", "mean_pred")


@dataclass(frozen=True)
class RollingConfig:
    """The test windows: ``n_windows`` consecutive windows of ``window_days`` UTC days ending
    with the last mature day; each window's fitting orders end ``gap_days`` before it (0: the
    day before; the label window, 90: only orders whose outcome is known when the window
    starts, as in production), the last ``valid_fraction`` of them is the validation slice."""

    n_windows: int = 3
    window_days: int = 30
    gap_days: int = 0
    valid_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.n_windows < 1:
            raise ValueError(f"n_windows must be >= 1, got {self.n_windows}")
        if self.window_days < 1:
            raise ValueError(f"window_days must be >= 1, got {self.window_days}")
        if self.gap_days < 0:
            raise ValueError(f"gap_days must be >= 0, got {self.gap_days}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")


@dataclass(frozen=True)
class AblationConfig:
    """Which groups to drop (``groups``: name -> columns; empty: one group per feature family)
    and on how many of the latest rolling windows (``windows``; None: all of them)."""

    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    windows: int | None = None

    def __post_init__(self) -> None:
        if self.windows is not None and self.windows < 1:
            raise ValueError(f"windows must be >= 1 or None, got {self.windows}")
        names = [g for g, _ in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"ablation groups: a group name given twice in {names}")


@dataclass(frozen=True)
class WindowSplit:
    """One test window ``[test_start, test_end)`` and its slices of the mature orders (rows of
    the feature table, its index kept)."""

    window: int  # 0 = the oldest
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive
    fit_end: pd.Timestamp  # exclusive: test_start - gap_days
    parts: dict[str, pd.DataFrame] = field(repr=False)


@dataclass
class RollingResult:
    """Per window and over the windows (``*_summary``: mean and std, ddof 1)."""

    windows: pd.DataFrame  # one row per window: slices' dates and sizes, the fitted model
    metrics: pd.DataFrame  # one row per (window, score)
    summary: pd.DataFrame  # one row per score
    families: pd.DataFrame  # one row per (window, family, score)
    families_summary: pd.DataFrame  # one row per (family, score)
    slices: pd.DataFrame  # one row per (window, slice, value, score)
    slices_summary: pd.DataFrame  # one row per (slice, value, score)
    logreg_features: list[list[str]]  # per window: the LR's columns
    model_features: list[list[str]]  # per window: the model's columns


@dataclass
class AblationResult:
    per_window: pd.DataFrame  # one row per (window, group): AUC with and without the group
    summary: pd.DataFrame  # one row per group: mean / std of the change over the windows
    groups: dict[str, list[str]]


# ---------------------------------------------------------------------------------- windows
def rolling_windows(features: pd.DataFrame, config: RollingConfig) -> list[WindowSplit]:
    """The test windows (oldest first) at the end of the mature period and, for each, its
    train / valid / test slices: test = mature orders in ``[test_start, test_end)``; train and
    valid = mature orders before ``test_start - gap_days``, split at the start of the day of
    the row at ``1 - valid_fraction`` of them. Never random; the feature table's index is kept.
    Raises ``TrainDataError`` when a slice is empty or has one class only."""
    if not features.index.is_unique:
        raise TrainDataError("feature table: the index has duplicate labels; reset it first")
    mature = features[features["mature"].astype(bool)]
    if len(mature) == 0:
        raise TrainDataError("feature table: no mature order (order_ts + label window <= as_of)")
    mature = mature.sort_values(["order_ts", "order_id"], kind="stable")
    ts = mature["order_ts"]
    day = pd.Timedelta(days=1)
    end = ts.iloc[-1].floor("D") + day
    width = pd.Timedelta(days=config.window_days)
    out = []
    for j in range(config.n_windows):  # a loop over windows
        start = end - (config.n_windows - j) * width
        stop = start + width
        fit_end = start - pd.Timedelta(days=config.gap_days)
        before = mature[ts < fit_end]
        if len(before) < 2:
            raise TrainDataError(
                f"rolling window {j} ({start.date()} .. {(stop - day).date()}): "
                f"{len(before)} mature order(s) before {fit_end.date()} to train on; "
                f"use fewer or shorter windows (n_windows={config.n_windows}, "
                f"window_days={config.window_days}, gap_days={config.gap_days})"
            )
        bts = before["order_ts"]
        valid_start = bts.iloc[int(len(before) * (1 - config.valid_fraction))].floor("D")
        parts = {
            "train": before[bts < valid_start],
            "valid": before[bts >= valid_start],
            "test": mature[(ts >= start) & (ts < stop)],
        }
        require_both_classes(
            parts,
            f"rolling window {j} ({start.date()} .. {(stop - day).date()})",
            "(fewer or longer windows, or a smaller gap; "
            f"mature orders {ts.iloc[0]} .. {ts.iloc[-1]})",
        )
        out.append(WindowSplit(j, start, stop, fit_end, parts))
    return out


# ---------------------------------------------------------------------------------- summary
def summarize(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: ``n_windows`` and, per metric, ``<metric>_mean`` and
    ``<metric>_std`` (sample standard deviation, ddof 1; NaN with one window) over the rows
    (NaN values left out). Groups in first-seen order."""
    g = frame.groupby(list(by), sort=False)[list(metrics)]
    mean, std = g.mean(), g.std(ddof=1)
    out = pd.DataFrame(index=mean.index)
    out["n_windows"] = frame.groupby(list(by), sort=False).size()
    for m in metrics:
        out[f"{m}_mean"] = mean[m]
        out[f"{m}_std"] = std[m]
    return out.reset_index()


# ---------------------------------------------------------------------------------- rolling
def _truth_scores(truth: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The truth rows of the test orders, in their order (every one must be there)."""
    if "order_id" not in truth or "p_case" not in truth:
        raise ValueError("truth: needs columns order_id and p_case (truth.parquet)")
    t = truth.assign(_id=truth["order_id"].astype(str)).drop_duplicates("_id").set_index("_id")
    ids = test["order_id"].astype(str)
    missing = ~ids.isin(t.index)
    if missing.any():
        raise ValueError(
            f"truth: {int(missing.sum())} test order(s) have no row, e.g. "
            f"{ids[missing].head(3).tolist()}"
        )
    return t.loc[ids.to_numpy()].reset_index(drop=True)


def _families(
    prepared: PreparedData, result: TrainResult, truth_rows: pd.DataFrame | None
) -> list[dict[str, Any]]:
    """Per case-type family: the model's P(case) x P(family | case) against "the order's case
    inside the label window is of this family" (and the truth's AUC when it has the causes)."""
    from .case_types import evaluate_families, family_risk, first_case_family

    ct = getattr(result.model, "case_types_", None)
    if ct is None:
        return []
    te = result.test
    names = result.model.feature_names_
    fam = first_case_family(
        prepared.tables.orders, prepared.tables.after_sales_cases, te["order_id"]
    )
    fam = fam.where(te["label"].to_numpy() == 1)  # only the case inside the label window
    p = family_risk(result.test_proba, ct.predict_family_proba(te[names]))
    rows = [
        {"family": f, "score": "model", **{k: m[k] for k in FAMILY_METRICS}}
        for f, m in evaluate_families(fam.to_numpy(dtype=object), p).items()
    ]
    if truth_rows is not None:
        from returnrisk.synth.actions import FAMILY_CAUSES, family_truth

        if all(c in truth_rows for cols in FAMILY_CAUSES.values() for c in cols):
            pt = family_truth(truth_rows)
            target = fam.to_numpy(dtype=object)
            for f in FAMILY_CAUSES:
                y = (target == f).astype(np.float64)
                m = ev.binary_metrics(y, pt[f"p_{f}"].to_numpy())
                # the truth is P(any case of the family), not of the first one: its AUC is a
                # ceiling to compare with, its calibration is against another target
                rows.append(
                    {
                        "family": f,
                        "score": "truth",
                        **{k: m[k] for k in FAMILY_METRICS},
                        "ece": float("nan"),
                    }
                )
    return rows


def evaluate_window(
    prepared: PreparedData,
    split: WindowSplit,
    config: TrainConfig,
    *,
    truth: pd.DataFrame | None = None,
    log: StepLog = QUIET,
) -> dict[str, Any]:
    """Fit on one window's train / valid slices with the training code and evaluate on its
    test slice: ``window`` (one row), ``metrics``, ``families``, ``slices`` (lists of rows),
    ``logreg_features`` and ``model_features``."""
    t0 = time.perf_counter()
    result = fit_parts(prepared, split.parts, config, log=log)
    te = result.test
    y = te["label"].to_numpy(dtype=np.float64)
    scores = dict(result.scores)
    truth_rows = None
    if truth is not None:
        truth_rows = _truth_scores(truth, te)
        scores["truth"] = truth_rows["p_case"].to_numpy(dtype=np.float64)
    tag = {"window": split.window}
    metrics = []
    for name, p in scores.items():
        m = ev.binary_metrics(y, p)
        metrics.append({**tag, "score": name, **{k: m[k] for k in METRICS}})
    slices = ev.slice_metrics(y, scores, ev.slice_frame(te))
    slices = slices[["slice", "value", "score", *SLICE_METRICS]]
    w = result.data_window
    window = {
        **tag,
        "test_start": split.test_start,
        "test_end": split.test_end - pd.Timedelta(days=1),
        "fit_end": split.fit_end - pd.Timedelta(days=1),
        **{f"{p}_{k}": w[f"{p}_{k}"] for p in ("train", "valid") for k in ("start", "end")},
        **{f"n_{p}": w[f"n_{p}"] for p in ("train", "valid", "test")},
        "valid_case_rate": w["valid_case_rate"],
        "test_case_rate": w["test_case_rate"],
        "best_iteration": result.model.best_iteration_,
        "calibration": result.model.calibration_,
        "logreg_converged": result.baseline_metrics.get("logreg", {}).get("converged", np.nan),
        "seconds": time.perf_counter() - t0,
    }
    return {
        "window": window,
        "metrics": metrics,
        "families": [{**tag, **r} for r in _families(prepared, result, truth_rows)],
        "slices": [{**tag, **r} for r in slices.to_dict("records")],
        "logreg_features": result.logreg_features,
        "model_features": list(result.model.feature_names_),
    }


def rolling_evaluation(
    prepared: PreparedData,
    rolling: RollingConfig,
    train: TrainConfig,
    *,
    truth: pd.DataFrame | None = None,
    log: StepLog = QUIET,
) -> RollingResult:
    """Train and evaluate on every window of ``rolling_windows`` (figures off: nothing is
    written); ``truth``: the generator's truth.parquet (order_id, p_case [, causes])."""
    cfg = replace(train, figures=False)
    splits = rolling_windows(prepared.features, rolling)
    runs = []
    for split in splits:  # a loop over windows
        label = f"{split.test_start.date()} .. {(split.test_end - pd.Timedelta(days=1)).date()}"
        with log.step(f"rolling window {split.window + 1}/{len(splits)} ({label})"):
            runs.append(evaluate_window(prepared, split, cfg, truth=truth, log=log))
    metrics = pd.DataFrame([r for run in runs for r in run["metrics"]])
    families = pd.DataFrame(
        [r for run in runs for r in run["families"]],
        columns=["window", "family", "score", *FAMILY_METRICS],
    )
    slices = pd.DataFrame([r for run in runs for r in run["slices"]])
    return RollingResult(
        windows=pd.DataFrame([run["window"] for run in runs]),
        metrics=metrics,
        summary=summarize(metrics, ["score"], METRICS),
        families=families,
        families_summary=summarize(families, ["family", "score"], ("auc", "ece")),
        slices=slices,
        slices_summary=summarize(slices, ["slice", "value", "score"], ("auc", "ece", "n")),
        logreg_features=[run["logreg_features"] for run in runs],
        model_features=[run["model_features"] for run in runs],
    )


# ---------------------------------------------------------------------------------- ablation
def feature_groups(
    feature_names: Sequence[str],
    groups: Mapping[str, Sequence[str]] | None = None,
    specs: Mapping[str, FeatureSpec] | None = None,
) -> dict[str, list[str]]:
    """The groups of features to drop: ``groups`` (checked: every column a feature) or, by
    default, one per family of ``specs`` (``FEATURE_SPECS``) over ``feature_names``, families in
    the order of their first feature. A feature without a spec is its own group."""
    names = list(feature_names)
    if groups:
        known = set(names)
        out: dict[str, list[str]] = {}
        for g, cols in groups.items():
            unknown = [c for c in cols if c not in known]
            if unknown:
                raise ValueError(f"ablation group {g!r}: not model features: {unknown}")
            if not cols:
                raise ValueError(f"ablation group {g!r}: no column")
            out[str(g)] = [c for c in names if c in set(cols)]
        return out
    if specs is None:
        from returnrisk.features import FEATURE_SPECS

        specs = FEATURE_SPECS
    out = {}
    for c in names:
        spec = specs.get(c)
        out.setdefault(spec.family if spec is not None else c, []).append(c)
    return out


def without_features(prepared: PreparedData, drop: Sequence[str]) -> PreparedData:
    """``prepared`` with ``drop`` left out of its feature list (the frame is shared, not
    copied nor changed)."""
    gone = set(drop)
    names = [c for c in prepared.feature_names if c not in gone]
    if not names:
        raise ValueError(f"dropping {sorted(gone)} leaves no feature")
    cats = [c for c in prepared.categorical if c not in gone]
    return replace(prepared, feature_names=names, categorical=cats)


def ablation(
    prepared: PreparedData,
    rolling: RollingConfig,
    train: TrainConfig,
    config: AblationConfig = AblationConfig(),
    *,
    log: StepLog = QUIET,
) -> AblationResult:
    """For each group: train without its columns (``train``'s settings, no baselines, figures
    or case-type model) on each of the latest ``config.windows`` rolling windows; the change of
    test AUC, AP and ECE against the full feature list trained the same way (negative delta
    AUC: the group helps)."""
    cfg = replace(train, baselines=False, figures=False, case_types=False)
    groups = feature_groups(prepared.feature_names, dict(config.groups) or None)
    splits = rolling_windows(prepared.features, rolling)
    if config.windows is not None:
        splits = splits[-config.windows :]
    rows = []
    for split in splits:  # windows x groups: a few dozen fits
        with log.step(f"ablation window {split.window}: full model"):
            full = fit_parts(prepared, split.parts, cfg, log=log).metrics
        for g, cols in groups.items():
            with log.step(f"ablation window {split.window}: without {g} ({len(cols)})"):
                res = fit_parts(without_features(prepared, cols), split.parts, cfg, log=log)
            m = res.metrics
            rows.append(
                {
                    "window": split.window,
                    "test_start": split.test_start,
                    "group": g,
                    "n_dropped": len(cols),
                    "n_features": len(res.model.feature_names_),
                    "auc_full": full["auc"],
                    "auc": m["auc"],
                    "delta_auc": m["auc"] - full["auc"],
                    "delta_ap": m["ap"] - full["ap"],
                    "delta_ece": m["ece"] - full["ece"],
                    "best_iteration": res.model.best_iteration_,
                }
            )
    per_window = pd.DataFrame(rows)
    summary = summarize(per_window, ["group"], ("auc_full", "auc", "delta_auc", "delta_ap"))
    summary.insert(1, "n_dropped", summary["group"].map({g: len(c) for g, c in groups.items()}))
    summary = summary.sort_values("delta_auc_mean", kind="stable").reset_index(drop=True)
    return AblationResult(per_window, summary, groups)
