"""Speed of `returnrisk train` (no tuning) on a synthetic world: wall time, step times, peak RSS.

    .venv/bin/python benchmarks/bench_train.py [--orders 1000000] [--seed 0]

Generates the world into a temporary directory (not timed), then runs the whole command
(load + validate tables, point-in-time features, LightGBM, baselines, figures, MLflow logging and
registration into a temporary sqlite store) in a subprocess. Goal (issue 4): <= 120 s for 1M
orders on the 2-core machine. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from returnrisk.synth import SynthConfig, generate_world, write_world

    exe = Path(sys.executable).with_name("returnrisk")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "world"
        t0 = time.perf_counter()
        write_world(generate_world(SynthConfig(n_orders=args.orders, seed=args.seed)), data)
        t_gen = time.perf_counter() - t0
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        t1 = time.perf_counter()
        proc = subprocess.run(
            [str(exe), "train", str(data), "--seed", str(args.seed)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t1
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"returnrisk train failed with exit code {proc.returncode}")
    steps = {}
    for m in re.finditer(r"\] (.+?) done in ([0-9.]+)s", proc.stderr):
        name = m.group(1)
        if name.startswith(
            (
                "load tables",
                "fit LightGBM",
                "build point-in-time",
                "baselines",
                "figures",
                "log run",
                "evaluate",
                "fingerprint",
            )
        ):
            steps[re.sub(r" \d[\d,]* orders.*| from .*", "", name)] = float(m.group(2))
    out = {
        "orders": args.orders,
        "seconds_generate_world": round(t_gen, 1),
        "seconds_train_command": round(wall, 1),
        "goal_seconds": 120,
        "goal_ok": wall <= 120,
        "step_seconds": steps,
        "peak_rss_mb_train_command": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "summary": proc.stdout.strip().splitlines(),
        "load_average_1m": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
