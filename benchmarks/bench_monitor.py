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


def _lane_collapse(tables, *, onset_days: int, share: float = 0.3, delay_days: int = 20):
    """30 % of the busiest lane's parcels ordered after the onset are lost: a not_received case
    ``delay_days`` after the order (when that is before the export)."""
    import numpy as np
    import pandas as pd

    o = tables.orders
    as_of = tables.as_of()
    onset = as_of - pd.Timedelta(days=onset_days)
    recent = o[o["order_ts"] > as_of - pd.Timedelta(days=90)]
    lane = recent.groupby(["carrier_id", "destination_country"]).size().idxmax()
    on_lane = (o["carrier_id"] == lane[0]) & (o["destination_country"] == lane[1])
    hit = o[on_lane & (o["order_ts"] > onset)]
    hit = hit[np.random.default_rng(0).random(len(hit)) < share]
    opened = hit["order_ts"] + pd.Timedelta(days=delay_days)
    hit, opened = hit[opened <= as_of], opened[opened <= as_of]
    cases = tables.after_sales_cases
    new = pd.DataFrame(
        {
            "case_id": [f"INJ{i:07d}" for i in range(len(hit))],
            "order_id": hit["order_id"].to_numpy(),
            "opened_ts": opened.to_numpy(),
            "case_type": "not_received",
            "sku_id": None,
            "amount": 10.0,
        }
    ).astype(cases.dtypes.to_dict())
    return tables.replace(after_sales_cases=pd.concat([cases, new], ignore_index=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument(
        "--lane-collapse",
        action="store_true",
        help="also inject a lane collapse (busiest carrier x destination lane: 30 %% of its "
        "parcels lost from the onset, not_received cases 20 days after the order) at onsets "
        "7..42 days before the export and report which alerts fire",
    )
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
        collapse = {}
        if args.lane_collapse:
            for onset in (7, 14, 21, 28, 42):
                drifted = _lane_collapse(tables, onset_days=onset)
                rep = monitor_tables(drifted, loaded, reference, config=MonitorConfig()).report
                collapse[f"onset_{onset}d"] = sorted({a["metric"] for a in rep["alerts"]})

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
                **({"lane_collapse_alerts": collapse} if collapse else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
