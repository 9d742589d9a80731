"""Benchmark ``build_features`` on synthetic worlds of 100k and 1M orders; prints JSON.

Each size runs in two fresh subprocesses: one writes the world (``returnrisk.synth``) to a
temporary directory, one loads it and builds the feature table, so ``peak_rss_mb`` is the peak
memory of reading + one build (``ru_maxrss`` of that process) and sizes do not share memory.
``seconds`` is the wall time of the first ``build_features`` call in that process (what the CLI
pays), ``warm_seconds`` of a second call (memory pages already mapped), ``load_seconds`` of
``load_tables``. The machine is shared: figures vary with its load.

Usage: python benchmarks/bench_features.py [--sizes 100000,1000000] [--seed 0]
Goal (issue 3): 1M orders <= 30 s and <= 6 GB; the 1M time <= 12x the 100k time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

GENERATE = """
import sys
from returnrisk.synth import SynthConfig, generate_world, write_world
world = generate_world(SynthConfig(n_orders=int(sys.argv[1]), seed=int(sys.argv[2]), new_days=0))
write_world(world, sys.argv[3])
"""

MEASURE = """
import json, resource, sys, time
from returnrisk.contract import load_tables
from returnrisk.features import build_features
t0 = time.perf_counter()
tables = load_tables(sys.argv[1])
t1 = time.perf_counter()
frame = build_features(tables)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
del frame
t3 = time.perf_counter()
frame = build_features(tables)  # second call in the same process: memory pages already mapped
t4 = time.perf_counter()
print(json.dumps({
    "orders": len(frame),
    "order_lines": len(tables.order_lines),
    "cases": len(tables.after_sales_cases),
    "columns": frame.shape[1],
    "mature": int(frame["mature"].sum()),
    "seconds": round(t2 - t1, 2),
    "warm_seconds": round(t4 - t3, 2),
    "load_seconds": round(t1 - t0, 2),
    "peak_rss_mb": round(peak, 1),
}))
"""


def run_size(n_orders: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench_features_{n_orders}_") as tmp:
        subprocess.run([sys.executable, "-c", GENERATE, str(n_orders), str(seed), tmp], check=True)
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, tmp], check=True, capture_output=True, text=True
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = [run_size(n, args.seed) for n in sizes]
    report: dict = {"benchmark": "features", "machine_cpus": _cpus(), "results": results}
    if len(results) >= 2 and results[0]["seconds"] > 0:
        small, large = results[0], results[-1]
        report["scaling"] = {
            "orders_ratio": round(large["orders"] / small["orders"], 2),
            "seconds_ratio": round(large["seconds"] / small["seconds"], 2),
            "warm_seconds_ratio": round(large["warm_seconds"] / small["warm_seconds"], 2),
        }
    print(json.dumps(report, indent=2))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
