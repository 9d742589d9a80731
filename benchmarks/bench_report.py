"""SKU report speed and size: build (features + scoring + SHAP + aggregation) and render on a
synthetic world. Prints one JSON object.

    .venv/bin/python benchmarks/bench_report.py [--orders 100000] [--window 28]

The model is a small RiskModel trained here on the world's mature orders (the report's cost does
not depend on how the model was trained, only on its size).
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
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=28)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from returnrisk.contract import load_tables
    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.serve.report_skus import build_sku_report, render_html
    from returnrisk.synth import SynthConfig, generate_world, write_world
    from returnrisk.train.model import RiskModel
    from returnrisk.train.registry import LoadedModel

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp)
        write_world(generate_world(SynthConfig(n_orders=args.orders, seed=args.seed)), world)
        tables = load_tables(world)
        feats = build_features(tables)
        mature = feats.loc[feats["mature"]]
        names = list(FEATURE_SPECS)
        cut = int(len(mature) * 0.8)
        model = RiskModel(n_estimators=300, early_stopping_rounds=30, seed=0).fit(
            mature[names].iloc[:cut],
            mature["label"].iloc[:cut],
            mature[names].iloc[cut:],
            mature["label"].iloc[cut:],
        )
        loaded = LoadedModel(model, "bench", "bench", "", {}, {})
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        t0 = time.perf_counter()
        report = build_sku_report(tables, loaded, window_days=args.window)
        t1 = time.perf_counter()
        page = render_html(report)
        t2 = time.perf_counter()
        again = render_html(report)

    print(
        json.dumps(
            {
                "benchmark": "report_skus",
                "orders": len(tables.orders),
                "order_lines": len(tables.order_lines),
                "skus": len(tables.skus),
                "window_days": args.window,
                "window_orders": report.meta["n_window_orders"],
                "skus_in_window": report.meta["n_skus"],
                "eval_orders": report.meta["eval_n"],
                "build_seconds": round(t1 - t0, 2),
                "render_seconds": round(t2 - t1, 2),
                "page_mb": round(len(page.encode("utf-8")) / 1e6, 2),
                "render_deterministic": page == again,
                "peak_rss_mb_before_report": round(rss_before / 1024, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
