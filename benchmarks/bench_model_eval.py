"""Evaluation that does not flatter (issue 13, item 5): rolling-origin test windows and a
feature-family ablation on a synthetic world (or a data directory). Prints JSON.

    .venv/bin/python benchmarks/bench_model_eval.py [--orders 200000] [--days 540] [--seed 0]
        [--windows 3] [--window-days 30] [--gap-days 0] [--ablation-windows N] [--no-ablation]
        [--data DIR] [--quick]

Each window's model is trained by the project's training code (``train.pipeline.fit_parts``:
default LightGBM settings, early stopping and calibration on the orders strictly before the
window) and compared with the look-back heuristic, the logistic regression on the same
features and the generator's true ``p_case``. The ablation uses a cheaper LightGBM
(learning rate 0.1, at most 1,000 rounds, early stopping after 50) for the full model and for
every model without a family, so the changes are between like and like; the JSON says so.
``--quick``: a 20k-order world, one ablation window.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _r(v: Any, nd: int = 4) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, nd)
    return v


def _rolling_json(res: Any) -> tuple[Any, ...]:
    """The rolling result's frames as JSON-ready dicts and lists."""
    keys = ("auc", "ap", "ece")
    per_window = {}
    for score, g in res.metrics.groupby("score", sort=False):
        per_window[score] = {k: [_r(v) for v in g[k]] for k in (*keys, "mean_pred")}
    summary = {
        r["score"]: {f"{k}_{s}": _r(r[f"{k}_{s}"]) for k in keys for s in ("mean", "std")}
        for r in res.summary.to_dict("records")
    }
    windows = [
        {
            "window": int(r["window"]),
            "test": [str(r["test_start"].date()), str(r["test_end"].date())],
            "fit_until": str(r["fit_end"].date()),
            "valid": [r["valid_start"][:10], r["valid_end"][:10]],
            "n_train": int(r["n_train"]),
            "n_valid": int(r["n_valid"]),
            "n_test": int(r["n_test"]),
            "valid_case_rate": _r(float(r["valid_case_rate"])),
            "test_case_rate": _r(float(r["test_case_rate"])),
            "best_iteration": int(r["best_iteration"]),
            "calibration": r["calibration"],
            "seconds": _r(float(r["seconds"]), 1),
        }
        for r in res.windows.to_dict("records")
    ]
    families = {
        f"{r['family']}/{r['score']}": {
            k: _r(r[k]) for k in ("auc_mean", "auc_std", "ece_mean", "ece_std")
        }
        for r in res.families_summary.to_dict("records")
    }
    sl = res.slices_summary
    sl = sl[sl["score"].isin(["model", "logreg", "lookback", "truth"])]
    slices: dict[str, dict[str, Any]] = {}
    for r in sl.to_dict("records"):
        entry = slices.setdefault(f"{r['slice']}={r['value']}", {"n_mean": round(r["n_mean"])})
        entry[r["score"]] = [_r(r["auc_mean"]), _r(r["auc_std"]), _r(r["ece_mean"])]

    return per_window, summary, windows, families, slices


def history_groups(names: list[str]) -> dict[str, tuple[str, ...]]:
    """The kinds of history features issue 13 added, by their names (``--groups history``):
    recent windows and trends, rates over matured orders only, and the new keys and sources;
    beside them the lifetime rates they complement."""

    def pick(test) -> tuple[str, ...]:
        return tuple(n for n in names if test(n))

    recent = pick(lambda n: "_30d" in n or "_90d" in n)
    mature = pick(lambda n: "_mature" in n)
    new_keys = pick(
        lambda n: (
            n.startswith(("supplier_", "brand_", "customer_category_", "customer_product_"))
            or n
            in (
                "customer_prior_sized_returns",
                "product_return_rate_max",
                "product_not_as_described_rate_max",
            )
        )
    )
    taken = set(recent) | set(mature) | set(new_keys)
    lifetime = pick(lambda n: n not in taken and ("_rate" in n or "_prior_" in n))
    return {
        "recent_windows": recent,
        "matured_rates": mature,
        "new_keys_and_sources": new_keys,
        "lifetime_history": lifetime,
    }


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=540)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-days", type=int, default=30)
    ap.add_argument("--gap-days", type=int, default=0)
    ap.add_argument("--ablation-windows", type=int, default=None, help="latest N (all)")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument(
        "--groups",
        choices=("families", "history"),
        default="families",
        help="ablation groups: the feature families, or the kinds of history of issue 13",
    )
    ap.add_argument("--data", type=Path, default=None, help="read a data directory instead")
    ap.add_argument("--quick", action="store_true", help="20k orders, one ablation window")
    return ap.parse_args()


def main() -> None:
    args = _args()
    if args.quick:
        args.orders = 20_000
        args.ablation_windows = args.ablation_windows or 1
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads libgomp

    import pandas as pd

    from returnrisk.contract import coerce_tables, load_tables
    from returnrisk.progress import StepLog
    from returnrisk.synth import SynthConfig, generate_world
    from returnrisk.train.pipeline import TrainConfig, prepare_data
    from returnrisk.train.rolling import AblationConfig, RollingConfig, ablation, rolling_evaluation

    log = StepLog(quiet=False, stream=sys.stderr)
    t0 = time.perf_counter()
    if args.data is not None:
        tables = load_tables(args.data, log=log)
        path = args.data / "truth.parquet"
        truth = pd.read_parquet(path) if path.is_file() else None
        world_info: dict[str, Any] = {"data": str(args.data)}
    else:
        with log.step(f"generate {args.orders:,}-order world ({args.days} days)"):
            cfg = SynthConfig(n_orders=args.orders, seed=args.seed, days=args.days, new_days=1)
            world = generate_world(cfg)
            tables = coerce_tables(world.tables)
            truth = world.truth
        world_info = {"orders": args.orders, "days": args.days, "seed": args.seed}
    t_gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    prepared = prepare_data(tables, log=log)
    t_feat = time.perf_counter() - t1

    rolling = RollingConfig(
        n_windows=args.windows, window_days=args.window_days, gap_days=args.gap_days
    )
    train = TrainConfig(seed=args.train_seed)
    t2 = time.perf_counter()
    res = rolling_evaluation(prepared, rolling, train, truth=truth, log=log)
    t_roll = time.perf_counter() - t2

    per_window, summary, windows, families, slices = _rolling_json(res)
    out: dict[str, Any] = {
        "world": world_info,
        "n_orders": len(prepared.features),
        "n_features": len(prepared.feature_names),
        "rolling": {
            "n_windows": rolling.n_windows,
            "window_days": rolling.window_days,
            "gap_days": rolling.gap_days,
            "valid_fraction": rolling.valid_fraction,
            "lightgbm": "default TrainConfig (learning rate 0.05, <= 2000 rounds, early stop 100)",
        },
        "windows": windows,
        "per_window": per_window,
        "summary_mean_std": summary,
        "families_mean_std": families,
        "slices_auc_mean_std_ece": slices,
        "std": "sample standard deviation over the windows (ddof 1)",
    }
    t_abl = 0.0
    if not args.no_ablation:
        cheap = TrainConfig(
            seed=args.train_seed,
            params=(("learning_rate", 0.1),),
            n_estimators=1000,
            early_stopping_rounds=50,
        )
        t3 = time.perf_counter()
        groups = history_groups(prepared.feature_names) if args.groups == "history" else {}
        abl = ablation(
            prepared,
            rolling,
            cheap,
            AblationConfig(windows=args.ablation_windows, groups=tuple(groups.items())),
            log=log,
        )
        t_abl = time.perf_counter() - t3
        out["ablation"] = {
            "lightgbm": "cheaper than the model's: learning rate 0.1, <= 1000 rounds, early stop "
            "50; the full model is refitted the same way, so the deltas compare like with like",
            "windows": sorted({int(w) for w in abl.per_window["window"]}),
            "groups": {g: len(c) for g, c in abl.groups.items()},
            "table": [
                {
                    "group": r["group"],
                    "n_dropped": int(r["n_dropped"]),
                    "auc_full": _r(r["auc_full_mean"]),
                    "auc_without": _r(r["auc_mean"]),
                    "delta_auc_mean": _r(r["delta_auc_mean"]),
                    "delta_auc_std": _r(r["delta_auc_std"]),
                    "delta_ap_mean": _r(r["delta_ap_mean"]),
                }
                for r in abl.summary.to_dict("records")
            ],
        }
    out["seconds"] = {
        "generate": round(t_gen, 1),
        "features": round(t_feat, 1),
        "rolling": round(t_roll, 1),
        "ablation": round(t_abl, 1),
    }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
