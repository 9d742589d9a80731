"""``returnrisk monitor`` speed on a synthetic history. Prints one JSON object.

    .venv/bin/python benchmarks/bench_monitor.py [--orders 1000000] [--days 7]

A small RiskModel is trained here on (at most ``--train-rows``) mature orders of the world, its
reference built on the validation rows as training does; the monitor's cost does not depend on
how the model was trained. Timed: loading + validating the data directory, the monitor itself
(cut at as_of, features of the orders it needs, scoring, drift / expected / early-realised /
realised, alerts) and writing monitor.json + monitor.html. No MLflow. The world is stationary,
so the alerts that fire at the default thresholds are false alerts and are listed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import pandas as pd

    from returnrisk.contract import load_tables
    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.serve.monitor import MonitorConfig, monitor_tables, write_outputs
    from returnrisk.synth import SynthConfig, generate_world, write_world
    from returnrisk.train.model import RiskModel
    from returnrisk.train.pipeline import SplitConfig, time_split
    from returnrisk.train.reference import build_reference
    from returnrisk.train.registry import LoadedModel

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        write_world(generate_world(SynthConfig(n_orders=args.orders, seed=args.seed)), world)
        tables = load_tables(world)
        parts = time_split(build_features(tables), SplitConfig())
        names = list(FEATURE_SPECS)
        step = max(1, len(parts["train"]) // args.train_rows)
        tr, va = parts["train"].iloc[::step], parts["valid"]
        model = RiskModel({"num_threads": 1}, n_estimators=300, early_stopping_rounds=30, seed=0)
        model.fit(tr[names], tr["label"], va[names], va["label"])
        reference = build_reference(model, va, mature=list(parts.values()))
        window = {"valid_end": va["order_ts"].max().isoformat()}
        loaded = LoadedModel(model, "bench", "bench", "", {}, window)
        del parts, tr, va, tables
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        t0 = time.perf_counter()
        tables = load_tables(world)
        t1 = time.perf_counter()
        result = monitor_tables(tables, loaded, reference, config=MonitorConfig(days=args.days))
        t2 = time.perf_counter()
        write_outputs(result, Path(tmp) / "out")
        t3 = time.perf_counter()
        again = monitor_tables(tables, loaded, reference, config=MonitorConfig(days=args.days))

    r = result.report
    early = [c for c in r["early_realised"] if c["expected"] and c["expected"] > 0]
    covered = sum(c["low"] <= c["opened"] <= c["high"] for c in early)
    print(
        json.dumps(
            {
                "benchmark": "monitor",
                "orders": len(tables.orders),
                "order_lines": len(tables.order_lines),
                "as_of": r["as_of"],
                "days": args.days,
                "recent_orders": r["drift"]["n_orders"],
                "load_validate_seconds": round(t1 - t0, 2),
                "monitor_seconds": round(t2 - t1, 2),
                "write_seconds": round(t3 - t2, 2),
                "total_seconds": round(t3 - t0, 2),
                "deterministic": again.report == r,
                "score_psi": r["drift"]["score_psi"],
                "max_alerting_feature_psi": max(
                    (f["psi"] for f in r["drift"]["features"] if f["alerting"] and f["psi"]),
                    default=None,
                ),
                "early_cohorts_inside_95pct": f"{covered}/{len(early)}",
                "false_alerts_stationary": [f"{a['metric']}:{a['subject']}" for a in r["alerts"]],
                "peak_rss_mb_before_monitor": round(rss_before / 1024, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "pandas": pd.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
