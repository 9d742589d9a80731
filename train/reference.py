"""The monitoring reference: what the model's inputs and outputs looked like when it was trained.

``build_reference(model, valid)`` summarises the validation slice (mature orders the model has
never been fitted on, only early-stopped and calibrated on) into one JSON document:

- ``score``: the calibrated probability's distribution (decile bins, shares);
- ``features``: each model feature's distribution -- numeric: quantile bins of the non-missing
  values plus a missing bin; categorical: the shares of the most frequent categories, the rest
  (``other``) and missing;
- ``time_to_case``: of the orders with a case within the label window, the share whose first
  case opened within 3, 7, 10, 14, 21, 30, 45, 60 days (and 1.0 at the window's end), over
  every mature order of the time split (see ``build_reference``);
- the expected and realised case rate, and the expected and realised precision at the screening
  capacity (the top ``capacity_pct`` % by probability), plus AUC / AP / ECE on the slice;
- ``destinations``: the destination countries of the mature orders (a new market shows);
- ``by_month``: each feature's shares in the same bins, per calendar month (1-12) of the order,
  over every mature order of the time split (see ``monthly_feature_shares``): the monitor
  compares a June window with the Junes of the history rather than with a peak-season
  validation slice, where one full year is mature.

``write_reference`` writes it as ``monitor_reference.json`` into the run's artifact folder;
``returnrisk monitor`` reads it back with ``load_reference(run_id)``. Pure functions on frames;
the model and the slice are not modified.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.errors import ReturnriskError

REFERENCE_FILE = "monitor_reference.json"
REFERENCE_VERSION = 1
TIME_TO_CASE_DAYS = (3, 7, 10, 14, 21, 30, 45, 60)  # includes 7, 14, 30, 60
SCORE_BINS = 10
NUMERIC_BINS = 10
MAX_CATEGORIES = 30
DEFAULT_CAPACITY_PCT = 5.0
MONTHS = 12
OTHER = "__other__"
MISSING = "__missing__"


class MissingReferenceError(ReturnriskError, LookupError):
    """The model has no monitoring reference (trained before monitoring existed)."""


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def quantile_edges(values: np.ndarray, n_bins: int) -> list[float]:
    """Interior cut points (unique, sorted) of ``n_bins`` equal-mass bins of the finite values.

    A value ``v`` falls into bin ``searchsorted(edges, v, side="left")``: bins are
    ``(-inf, e0], (e0, e1], ..., (e_last, inf)``, so ``len(edges) + 1`` bins."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return []
    qs = np.quantile(v, np.arange(1, n_bins) / n_bins, method="lower")  # edges are data values
    return [float(e) for e in np.unique(qs)]


def numeric_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Shares of all rows per bin of ``edges`` (see ``quantile_edges``), the missing bin last."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return np.zeros(len(edges) + 2)
    missing = ~np.isfinite(v)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="left")
    idx = np.where(missing, len(edges) + 1, idx)
    return np.bincount(idx, minlength=len(edges) + 2).astype(np.float64) / n


def categorical_shares(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Shares of all rows per category of ``categories``, then ``other``, then missing."""
    n = len(values)
    if n == 0:
        return np.zeros(len(categories) + 2)
    obj = values.astype("object")
    missing = obj.isna().to_numpy()
    idx = pd.Index(categories, dtype="object").get_indexer(obj.where(~missing, None))
    idx = np.where(idx < 0, len(categories), idx)
    idx = np.where(missing, len(categories) + 1, idx)
    return np.bincount(idx, minlength=len(categories) + 2).astype(np.float64) / n


def top_categories(values: pd.Series, max_categories: int = MAX_CATEGORIES) -> list[str]:
    """The most frequent non-missing categories (ties by name), at most ``max_categories``."""
    counts = values.dropna().astype("str").value_counts()
    frame = pd.DataFrame({"c": counts.index.astype("object"), "n": counts.to_numpy()})
    frame = frame.sort_values(["n", "c"], ascending=[False, True], kind="stable")
    return [str(c) for c in frame["c"].iloc[:max_categories]]


def time_to_case_curve(
    order_ts: pd.Series,
    first_case_ts: pd.Series,
    label: np.ndarray,
    *,
    days: tuple[int, ...] = TIME_TO_CASE_DAYS,
    label_window_days: int = 90,
) -> dict[str, Any]:
    """Of the positive orders, the share whose first case opened within each of ``days``."""
    pos = np.asarray(label, dtype=np.float64) == 1.0
    delay = (first_case_ts[pos] - order_ts[pos]).dt.total_seconds().to_numpy() / 86_400.0
    n = int(pos.sum())
    shares = [float((delay <= d).mean()) if n else None for d in days]
    return {
        "days": [*days, label_window_days],
        "share": [*shares, 1.0 if n else None],
        "n_cases": n,
    }


def precision_at_capacity(p: np.ndarray, y: np.ndarray | None, capacity_pct: float) -> dict:
    """Expected (mean p) and, with labels, realised precision of the top ``capacity_pct`` %."""
    p = np.asarray(p, dtype=np.float64)
    k = max(1, int(math.ceil(len(p) * capacity_pct / 100.0))) if len(p) else 0
    top = np.argsort(-p, kind="stable")[:k]
    out = {"k": int(k), "expected": _finite(p[top].mean()) if k else None}
    if y is not None:
        out["realised"] = _finite(np.asarray(y, dtype=np.float64)[top].mean()) if k else None
    return out


def feature_summary(values: pd.Series, kind: str) -> dict[str, Any]:
    """The reference distribution of one feature column."""
    if kind == "categorical":
        cats = top_categories(values)
        shares = categorical_shares(values, cats)
        return {"kind": kind, "categories": cats, "shares": shares.tolist()}
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    edges = quantile_edges(v, NUMERIC_BINS)
    return {"kind": "numeric", "edges": edges, "shares": numeric_shares(v, edges).tolist()}


def _bin_index(values: pd.Series, summary: dict[str, Any]) -> np.ndarray:
    """Per row, the bin of ``summary`` (a ``feature_summary``) it falls into, missing last."""
    if summary["kind"] == "categorical":
        cats = summary["categories"]
        obj = values.astype("object")
        missing = obj.isna().to_numpy()
        idx = pd.Index(cats, dtype="object").get_indexer(obj.where(~missing, None))
        idx = np.where(idx < 0, len(cats), idx)
        return np.where(missing, len(cats) + 1, idx)
    edges = np.asarray(summary["edges"], dtype=np.float64)
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    idx = np.searchsorted(edges, v, side="left")
    return np.where(~np.isfinite(v), len(edges) + 1, idx)


def monthly_feature_shares(
    frame: pd.DataFrame, summaries: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per calendar month of ``order_ts`` (UTC, 1-12): the number of orders and each feature's
    shares in the bins of ``summaries`` (the validation slice's ``feature_summary``). Months
    without orders get all-zero shares (and ``n_orders`` 0)."""
    month = frame["order_ts"].dt.month.to_numpy() - 1
    n = np.bincount(month, minlength=MONTHS)
    features = {}
    for name, summary in summaries.items():
        n_bins = len(summary["shares"])
        counts = np.bincount(
            month * n_bins + _bin_index(frame[name], summary), minlength=MONTHS * n_bins
        ).reshape(MONTHS, n_bins)
        shares = counts / np.maximum(n, 1)[:, None]
        features[name] = [[float(x) for x in row] for row in shares]
    return {"n_orders": [int(x) for x in n], "features": features}


def build_reference(
    model: Any,
    valid: pd.DataFrame,
    *,
    mature: Sequence[pd.DataFrame] = (),
    capacity_pct: float = DEFAULT_CAPACITY_PCT,
    label_window_days: int = 90,
) -> dict[str, Any]:
    """The reference document of ``model`` over its validation slice ``valid`` (a slice of the
    feature table: features, ``label``, ``order_ts``, ``first_case_ts``).

    The time-to-case curve is taken over ``mature`` (every mature slice known at training:
    train, valid, test) when given, else over ``valid``: it is a property of the world, not of
    the model, and one slice of a few weeks carries its season (in the synthetic world the
    peak-season validation slice opens 19 % of its cases within 14 days, the spring after it
    35 %)."""
    from .evaluate import binary_metrics

    names = list(model.feature_names_)
    cats = set(model.categorical_features_)
    p = model.predict_case(valid[names])
    y = valid["label"].to_numpy(dtype=np.float64)
    score_edges = quantile_edges(p, SCORE_BINS)
    m = binary_metrics(y, p)
    cols = ["order_ts", "first_case_ts", "label"]
    ttc = pd.concat([f[cols] for f in mature], ignore_index=True) if mature else valid[cols]
    features = {
        c: feature_summary(valid[c], "categorical" if c in cats else "numeric") for c in names
    }
    hcols = ["order_ts", *names]
    history = pd.concat([f[hcols] for f in mature], ignore_index=True) if mature else valid[hcols]
    return {
        "version": REFERENCE_VERSION,
        "slice": "valid",
        "start": valid["order_ts"].min().isoformat(),
        "end": valid["order_ts"].max().isoformat(),
        "n_orders": len(valid),
        "label_window_days": label_window_days,
        "case_rate": _finite(y.mean()),
        "expected_case_rate": _finite(p.mean()),
        "capacity_pct": capacity_pct,
        "precision_at_capacity": precision_at_capacity(p, y, capacity_pct),
        "metrics": {k: _finite(m[k]) for k in ("auc", "ap", "ece")},
        "score": {"edges": score_edges, "shares": numeric_shares(p, score_edges).tolist()},
        "features": features,
        "by_month": monthly_feature_shares(history, features)
        | {"over": f"{history['order_ts'].min():%Y-%m-%d}..{history['order_ts'].max():%Y-%m-%d}"}
        if len(history)
        else None,
        "destinations": sorted(
            {str(x) for f in mature for x in f["destination_country"].dropna().unique()}
        )
        if mature and all("destination_country" in f for f in mature)
        else None,
        "time_to_case": time_to_case_curve(
            ttc["order_ts"], ttc["first_case_ts"], ttc["label"], label_window_days=label_window_days
        )
        | {"over": f"{ttc['order_ts'].min():%Y-%m-%d}..{ttc['order_ts'].max():%Y-%m-%d}"},
    }


def write_reference(model: Any, parts: Mapping[str, pd.DataFrame], artifacts_dir: Path) -> Path:
    """``build_reference`` of the time split ``parts`` (``train``, ``valid``, ``test``: the
    validation slice's distributions, the time-to-case curve over every slice) written to
    ``artifacts_dir/monitor_reference.json``, logged with the run's other artifacts."""
    path = Path(artifacts_dir) / REFERENCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = build_reference(model, parts["valid"], mature=list(parts.values()))
    path.write_text(json.dumps(doc, indent=1))
    return path


def load_reference(run_id: str, *, version: str = "?") -> dict[str, Any]:
    """The reference logged with the training run ``run_id``; ``MissingReferenceError`` when
    the run has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    fix = (
        f"model version {version} (run {run_id or 'unknown'}) has no monitoring reference "
        f"({REFERENCE_FILE}): it was trained before monitoring existed; retrain it "
        "(`returnrisk retrain DIR`) and monitor the new champion"
    )
    if not run_id:
        raise MissingReferenceError(fix)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_FILE)
    except (MlflowException, OSError):
        raise MissingReferenceError(fix) from None
    doc = json.loads(Path(local).read_text())
    if doc.get("version") != REFERENCE_VERSION:
        raise MissingReferenceError(
            f"{REFERENCE_FILE} of model version {version} has format version "
            f"{doc.get('version')!r}, this returnrisk reads {REFERENCE_VERSION}; retrain it"
        )
    return doc
