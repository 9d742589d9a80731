"""Decisions on a synthetic world: a policy backtest in money, the recommended actions against
the generator's truth, and what the what-if actions cost in time; prints JSON.

    .venv/bin/python benchmarks/bench_decisions.py [--orders 200000] [--seed 0] [--weeks 12]
        [--capacity 0.05] [--score-orders 100000]

1. **backtest** (issue 12's figures): ``returnrisk backtest``'s steps (``serve.backtest``:
   load the tables, choose the default window of ``--weeks`` weeks of mature orders, train a
   model as of its start with the project's training code, replay it day by day, evaluate,
   write backtest.json + .html), each timed; the policy flags the top ``--capacity`` of each
   day's orders and takes the recommended action.
   - net saving per 1,000 orders of the window for the scorers ``model``, ``lookback``,
     ``truth`` and ``hindsight``. Goals: model >= 1.5 x lookback and >= 80 % of truth.
   - the model's flagged orders: recommended action == the truth-best action (from
     ``truth_actions.parquet``, which synth writes for the window) for >= 70 %; regret (the
     truth-best saving - the true saving of the recommended action) <= 15 % of the truth-best
     saving.
   - wall time of the backtest: goal <= 120 s for 12 weeks on 200k orders.
2. **score**: the last ``--score-orders`` orders of the world scored as new orders against the
   history before them (``ScoringState.score``, reasons for the flagged top 5 %), then with the
   what-if actions for the flagged ones (``with_actions``, what ``score --actions flagged``
   adds). Goal: with actions <= 2 x the time without.

The machine's other load counts in every time (said in the JSON: ``cpus``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--capacity", type=float, default=0.05)
    ap.add_argument("--score-orders", type=int, default=100_000)
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads libgomp

    import pandas as pd

    from returnrisk.contract import load_tables
    from returnrisk.costs import resolve_costs
    from returnrisk.progress import StepLog
    from returnrisk.serve.backtest import (
        Policy,
        choose_window,
        cut_tables,
        run_backtest,
        train_as_of,
        write_backtest,
    )
    from returnrisk.synth import SynthConfig, generate_world, write_world

    log = StepLog(quiet=False, stream=sys.stderr)
    out: dict = {"cpus": os.cpu_count(), "orders": args.orders, "seed": args.seed}
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "world"
        t0 = time.perf_counter()
        with log.step(f"generate and write a {args.orders:,}-order world"):
            cfg = SynthConfig(
                n_orders=args.orders, seed=args.seed, truth_actions_days=7 * args.weeks
            )
            write_world(generate_world(cfg), data)
        out["synth_seconds"] = round(time.perf_counter() - t0, 1)

        # -- 1. the backtest, step by step as backtest_dir runs it
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        tables = load_tables(data)
        window = choose_window(tables, None, None, args.weeks)
        costs = resolve_costs(None, cut_tables(tables, window.start).after_sales_cases)
        truth = pd.read_parquet(data / "truth.parquet")
        truth_actions = pd.read_parquet(data / "truth_actions.parquet")
        steps["load"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        rep = train_as_of(tables, window.start, costs, seed=args.seed, log=log)
        steps["train"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        name = f"capacity {100 * args.capacity:g} %"
        result = run_backtest(
            tables, policies=[Policy(name, "capacity", args.capacity)], costs=costs,
            window=window, replayer=rep, truth=truth, truth_actions=truth_actions,
            seed=args.seed, log=log,
        )  # fmt: skip
        steps["replay_and_evaluate"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        write_backtest(result, Path(d) / "bt")
        steps["write"] = time.perf_counter() - t1
        backtest_s = time.perf_counter() - t0

        pol = result.report["policies"][name]["scorers"]
        per_1000 = {k: round(v["net_saving_per_1000_orders"], 1) for k, v in pol.items()}
        vs = pol["model"]["vs_truth_actions"]
        model, look, tru = per_1000["model"], per_1000["lookback"], per_1000.get("truth")
        out["backtest"] = {
            "window": result.report["window"],
            "policy": name,
            "net_saving_per_1000_orders": per_1000,
            "net_saving": {k: round(v["net_saving"], 0) for k, v in pol.items()},
            "net_saving_ci90": {
                k: [round(x, 0) for x in v["net_saving_ci90"]] for k, v in pol.items()
            },  # fmt: skip
            "flagged": pol["model"]["flagged"],
            "model_over_lookback": round(model / look, 2) if look > 0 else None,
            "model_share_of_truth": round(model / tru, 3) if tru else None,
            "recommended_is_truth_best": round(vs["agreement"], 3),
            "regret_share": round(vs["regret_share"], 3),
            "truth_compared_orders": int(vs["n"]),
            "wall_seconds": round(backtest_s, 1),
            "step_seconds": {k: round(v, 1) for k, v in steps.items()},
            "goals": {
                "model >= 1.5 x lookback": look > 0 and model >= 1.5 * look,
                "model >= 80 % of truth": bool(tru) and model >= 0.8 * tru,
                "agreement >= 70 %": vs["agreement"] >= 0.7,
                "regret <= 15 %": vs["regret_share"] <= 0.15,
                "backtest <= 120 s": backtest_s <= 120,
            },
        }
        print(json.dumps(out["backtest"]["goals"]), file=sys.stderr)
        out["score"] = bench_score(tables, rep, costs, args.score_orders, log)
    out["peak_rss_mb"] = round(_peak_mb())
    print(json.dumps(out, indent=2))


def bench_score(tables, rep, costs, n: int, log) -> dict:
    """The last ``n`` orders scored against the history before them, without and with the
    what-if actions of the flagged 5 %."""
    import numpy as np

    from returnrisk.serve.backtest import cut_tables
    from returnrisk.serve.decisions import with_actions
    from returnrisk.serve.policy import PolicyConfig
    from returnrisk.serve.scoring import ScoreConfig, ScoringState

    class Loaded:  # what ScoringState needs of a loaded model
        def __init__(self, rm):
            self.risk_model, self.version, self.uri = rm, "bench", "memory"
            self.run_id, self.metrics, self.data_window = "", {}, {}

    o = tables.orders.sort_values(["order_ts", "order_id"], kind="stable")
    first = o["order_ts"].iloc[len(o) - n]
    cut = cut_tables(tables, first)
    new_o = tables.orders[tables.orders["order_ts"] >= first]
    ids = set(new_o["order_id"])
    lines = tables.order_lines[tables.order_lines["order_id"].isin(ids)]
    known = set(cut.customers["customer_id"])
    cust = tables.customers[tables.customers["customer_id"].isin(set(new_o["customer_id"]) - known)]
    raw = {"orders": new_o.reset_index(drop=True), "order_lines": lines, "customers": cust}
    with log.step("scoring state on the history before the scored orders"):
        state = ScoringState(cut, Loaded(rep.risk_model))
    cfg = ScoreConfig(policy=PolicyConfig(flag_top=5), explain="flagged")
    t0 = time.perf_counter()
    with log.step(f"score {len(new_o):,} orders"):
        result = state.score(raw, cfg)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    with log.step(f"what-if actions for the {result.n_flagged:,} flagged"):
        results, table = with_actions(state, raw, result, costs, "flagged")
    actions = time.perf_counter() - t0
    rec = results.loc[results["flagged"].fillna(False).astype(bool), "recommended_action"]
    return {
        "orders": len(new_o),
        "scored": result.n_scored,
        "flagged": result.n_flagged,
        "score_seconds": round(plain, 1),
        "actions_seconds": round(actions, 1),
        "with_actions_over_without": round((plain + actions) / plain, 2),
        "recommended_actions": {str(k): int(v) for k, v in rec.value_counts().items()},
        "table_rows": len(table),
        "goal_with_actions_le_2x": bool((plain + actions) <= 2 * plain),
        "nan_savings": int(np.isnan(table["saving"].to_numpy()).sum()),
    }


if __name__ == "__main__":
    main()
