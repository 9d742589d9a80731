"""Benchmark the service's what-if of one flagged order, in process; prints JSON.

Setup (not timed): ``bench_serve.setup``'s world (``--orders`` orders, the last 30 days new)
and its risk model, plus a case-type model fitted as ``train.pipeline`` fits one (the service
uses the one the registered model carries). ``--dir DIR`` keeps the setup there and reuses it
on the next run, so two versions of the code are timed on the same world and models.

Timed, per order of the first ``--n`` single-order requests (``bench_serve``'s bodies): what
the fast path adds for a flagged order on top of ``score_one`` --
``online_action_fields(..., which="flagged")`` from the row ``score_one`` built (the variants'
feature rows, the two models on them, the table, the recommendation) -- and the variants' rows
alone (``Decider.online_variant_features``). Each order is timed ``--repeat`` times, its best
kept; the figures are over orders. The machine is shared: figures vary with its load.

Usage: python benchmarks/bench_whatif.py [--dir DIR] [--n 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _prepare(tmp: Path, orders: int, seed: int) -> dict:
    """``bench_serve.setup`` + a case-type model pickled next to the risk model (once)."""
    import pickle

    import bench_serve

    if (tmp / "case_types.pkl").exists():
        return json.loads((tmp / "setup.json").read_text())
    info = bench_serve.setup(tmp, orders, 30, 2_000, seed)
    from returnrisk.contract import load_tables
    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.features.specs import CATEGORICAL_FEATURES
    from returnrisk.train.case_types import fit_case_types

    tables = load_tables(tmp / "world")
    feats = build_features(tables)
    mature = feats.loc[feats["mature"]]
    cut = int(len(mature) * 0.85)
    names = list(FEATURE_SPECS)
    ct = fit_case_types(
        mature.iloc[:cut], mature.iloc[cut:], tables, names, list(CATEGORICAL_FEATURES)
    )
    (tmp / "case_types.pkl").write_bytes(pickle.dumps(ct))
    (tmp / "setup.json").write_text(json.dumps(info))
    return info


def bench(tmp: Path, n: int, repeat: int) -> dict:
    import pickle

    import bench_serve

    from returnrisk.contract import load_tables
    from returnrisk.costs import resolve_costs
    from returnrisk.serve.decisions import Decider, online_action_fields
    from returnrisk.serve.schemas import ScoreRequest, online_order
    from returnrisk.serve.scoring import ScoringState
    from returnrisk.train.pyfunc import read_risk_model

    class Loaded:
        def __init__(self, rm):
            self.risk_model, self.version, self.uri = rm, "bench", "file"
            self.run_id, self.metrics, self.data_window = "", {}, {}

    info = json.loads((tmp / "setup.json").read_text())
    tables = load_tables(tmp / "world")
    rm = read_risk_model(tmp / "model" / "risk_model.pkl")
    state = ScoringState(tables, Loaded(rm))
    ct = pickle.loads((tmp / "case_types.pkl").read_bytes())
    costs = resolve_costs(None, tables.after_sales_cases)
    decider = Decider.build(state.feature_history, rm, costs, ct)
    bodies, _ = bench_serve._single_order_bodies(tmp / "world" / "new", info["as_of"])
    news = [online_order(ScoreRequest.model_validate(json.loads(b))) for b in bodies[:n]]
    total, rows, variants = [], [], []
    for new in news:
        one = state.score_one(new)
        assert one is not None
        feats = decider.online_variant_features(state.online, new, one.features)
        variants.append(len(feats["action"]) - 1)
        best_total = best_rows = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            online_action_fields(decider, state.online, new, True, "flagged", one.features)
            best_total = min(best_total, time.perf_counter() - t)
            t = time.perf_counter()
            decider.online_variant_features(state.online, new, one.features)
            best_rows = min(best_rows, time.perf_counter() - t)
        total.append(best_total)
        rows.append(best_rows)

    def figures(s: list[float]) -> dict:
        ms = np.asarray(s) * 1000
        return {
            "mean_ms": round(float(ms.mean()), 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "max_ms": round(float(ms.max()), 2),
        }

    return {
        "orders": len(news),
        "history_orders": info["history_orders"],
        "variants_per_order_mean": round(float(np.mean(variants)), 2),
        "variants_per_order_max": int(np.max(variants)),
        "what_if_per_flagged_order": figures(total),
        "variant_rows_only": figures(rows),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=None, help="keep / reuse the setup here")
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as d:
        tmp = args.dir if args.dir is not None else Path(d)
        tmp.mkdir(parents=True, exist_ok=True)
        out = {"benchmark": "what-if", "setup": _prepare(tmp, args.orders, args.seed)}
        out["what_if"] = bench(tmp, args.n, args.repeat)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
