"""Importer figures on the real exports in ../shared/data: seconds, peak memory, counts (JSON).

Each importer runs in its own subprocess so its peak RSS is its own.
Usage: python benchmarks/bench_importers.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _one(name: str, data: Path, out: Path) -> dict:
    from returnrisk.importers import (
        OnlineRetailConfig,
        SuperstoreConfig,
        import_online_retail,
        import_superstore,
    )

    start = time.perf_counter()
    if name == "online-retail":
        src = data / "online_retail" / "online_retail_II_2009_2010.parquet"
        result = import_online_retail(OnlineRetailConfig(files=(src,), out=out))
    else:
        folder = data / "global_superstore"
        cfg = SuperstoreConfig(
            folder / "Global_Superstore2.csv.zip",
            folder / "Returns.csv",
            out,
            all_markets=name == "superstore-all-markets",
        )
        result = import_superstore(cfg)
    seconds = time.perf_counter() - start
    return {
        "importer": name,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "figures": {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.figures.items()
        },
        "refused_by_reason": result.refused_counts(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.data, args.out)))
        return
    if not args.data.is_dir():
        print(json.dumps({"skipped": f"{args.data} is absent"}))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("online-retail", "superstore", "superstore-all-markets"):
            cmd = [sys.executable, __file__, "--one", name, "--data", str(args.data)]
            cmd += ["--out", str(Path(tmp) / name)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"importers": results}, indent=2))


if __name__ == "__main__":
    main()
