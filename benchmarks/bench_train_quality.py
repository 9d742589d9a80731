"""Model quality on a synthetic world: test AUC vs the generator's true probabilities, ECE,
and the three baselines (base rate, look-back heuristic, logistic regression).

    .venv/bin/python benchmarks/bench_train_quality.py [--orders 200000] [--seed 0] [--figures DIR]

Goals (issue 4): AUC within 0.015 of the true-probability AUC on the same test orders,
ECE <= 0.01, AUC >= 0.05 above the look-back heuristic. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--test-days", type=int, default=None)
    ap.add_argument("--days", type=int, default=None, help="history length (synth default 540)")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads libgomp

    import numpy as np

    from returnrisk.contract import coerce_tables
    from returnrisk.progress import StepLog
    from returnrisk.synth import SynthConfig, generate_world
    from returnrisk.train import evaluate as ev
    from returnrisk.train.pipeline import SplitConfig, TrainConfig, fit_and_evaluate, prepare_data

    log = StepLog(quiet=False, stream=sys.stderr)
    t0 = time.perf_counter()
    with log.step(f"generate {args.orders:,}-order world"):
        extra = {"days": args.days} if args.days else {}
        world = generate_world(
            SynthConfig(n_orders=args.orders, seed=args.seed, new_days=1, **extra)
        )
        tables = coerce_tables(world.tables)
    t_gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    prepared = prepare_data(tables, log=log)
    split = SplitConfig(test_days=args.test_days) if args.test_days else SplitConfig()
    cfg = TrainConfig(seed=args.train_seed, split=split, figures=args.figures is not None)
    result = fit_and_evaluate(prepared, cfg, log=log, artifacts_dir=args.figures)
    t_train = time.perf_counter() - t1

    te = result.test
    y = te["label"].to_numpy(dtype=np.float64)
    truth = world.truth.set_index("order_id")["p_case"]
    p_true = te["order_id"].map(truth).to_numpy(dtype=np.float64)
    if np.isnan(p_true).any():
        raise SystemExit("truth.parquet lacks some test orders")
    true_m = ev.binary_metrics(y, p_true)
    m = result.metrics
    b = result.baseline_metrics
    if args.figures is not None:
        ev.plot_curves(
            y,
            {"model": result.test_proba, "truth p_case": p_true},
            args.figures / "figures",
            prefix="vs_truth_",
        )
        result.slices.to_csv(args.figures / "slices.csv", index=False)
    keys = (
        "auc",
        "ap",
        "log_loss",
        "brier",
        "ece",
        "lift_at_1pct",
        "lift_at_5pct",
        "lift_at_10pct",
        "precision_at_5pct",
        "recall_at_10pct",
    )
    slices = result.slices[result.slices["score"] == "model"]
    out = {
        "orders": args.orders,
        "seed": args.seed,
        "days": world.config.days if world.config else None,
        "n_train": result.data_window["n_train"],
        "n_valid": result.data_window["n_valid"],
        "n_test": result.data_window["n_test"],
        "test_window": [result.data_window["test_start"], result.data_window["test_end"]],
        "test_case_rate": m["base_rate"],
        "best_iteration": result.model.best_iteration_,
        "calibration": result.model.calibration_,
        "model": {k: round(m[k], 5) for k in keys},
        "truth_p_case": {k: round(true_m[k], 5) for k in keys},
        "baselines": {name: {k: round(v[k], 5) for k in keys} for name, v in b.items()},
        "goals": {
            "auc_gap_to_truth": round(true_m["auc"] - m["auc"], 5),
            "auc_gap_to_truth_ok(<=0.015)": bool(true_m["auc"] - m["auc"] <= 0.015),
            "ece": round(m["ece"], 5),
            "ece_ok(<=0.01)": bool(m["ece"] <= 0.01),
            "auc_over_lookback": round(m["auc"] - b["lookback"]["auc"], 5),
            "auc_over_lookback_ok(>=0.05)": bool(m["auc"] - b["lookback"]["auc"] >= 0.05),
            "truth_ece": round(true_m["ece"], 5),
        },
        "slices_model_auc": {
            f"{r.slice}={r.value}": [round(r.auc, 4), int(r.n)] for r in slices.itertuples()
        },
        "seconds_generate": round(t_gen, 1),
        "seconds_features_train_evaluate": round(t_train, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
