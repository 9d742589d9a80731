"""Benchmark: generate and write a synthetic world; prints JSON (orders, seconds, peak RSS).

Usage: python benchmarks/bench_synth.py [N_ORDERS]   (default 1,000,000)
Generation runs in a child process so peak memory is that of the generator alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time, resource
import pandas as pd
from returnrisk.synth import SynthConfig, generate_world, write_world
n, out = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
world = generate_world(SynthConfig(n_orders=n, seed=0))
t_gen = time.perf_counter() - t
write_world(world, out)
seconds = time.perf_counter() - t
orders, cases = world.tables["orders"], world.tables["after_sales_cases"]
as_of = orders["order_ts"].max()
mature = orders["order_ts"] + pd.Timedelta(days=90) <= as_of
c = cases.merge(orders[["order_id", "order_ts"]], on="order_id")
in_window = c.loc[c["opened_ts"] - c["order_ts"] <= pd.Timedelta(days=90), "order_id"]
label = orders.loc[mature, "order_id"].isin(in_window)
print(json.dumps({
    "generate_seconds": round(t_gen, 2),
    "seconds": round(seconds, 2),
    "history_orders": len(orders),
    "order_lines": len(world.tables["order_lines"]),
    "cases": len(cases),
    "case_rate": round(float(label.mean()), 4),
    "truth_p_case_mean": round(float(world.truth["p_case"].mean()), 4),
}))
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), tmp], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    result = {"benchmark": "synth", "orders": n, **json.loads(proc.stdout.strip().splitlines()[-1])}
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["wall_seconds_incl_startup"] = round(wall, 2)
    result["peak_rss_mb"] = round(peak_kb / 1024, 1)
    result["goal"] = {"seconds": 60, "peak_rss_mb": 4096}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
