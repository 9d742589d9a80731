"""``returnrisk monitor`` over a 365-day replay per drift scenario. Prints one JSON object.

    .venv/bin/python benchmarks/bench_monitor_scenarios.py [--orders 100000] [--days 825]

For each world (``returnrisk.synth``, one per scenario and seed): a RiskModel is trained at
``T0`` (``--train-at``) on what was known then (``cut_tables(tables, T0)``: the mature orders
of the 90-day label window, the time split of training, the reference built as training does)
and **never retrained**; the monitor then runs at ``T0 + 7 d, T0 + 14 d, ...`` (52 runs, one
year) with the default ``MonitorConfig``. ``T0`` leaves a full mature year before it, so the
month-matched drift reference covers every calendar month.

- ``stationary`` worlds (``--stationary-seeds``): all 52 runs; a run with at least one alert is
  a false alert (per year = per 52 runs). The early-realised intervals of every run's 13 weekly
  cohorts are checked against the cases opened by then: the monitor's interval (model-based,
  with the dispersion term) and, as "the truth", the interval built the same way from
  ``truth.parquet``'s true probabilities ``p_case`` x the reference's time-to-case curve.
  ``poisson_only`` is the monitor's interval without the dispersion term (the interval before).
- drift scenarios (``--scenario-seed``; onset ``--onset``, a run day): the two runs before the
  onset (false alerts there are reported) and the runs after it until the first alert (at most
  ``--max-weeks``): the days from the onset to the first alert and what fired.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

SCENARIOS = ("lane_collapse", "de_minimis_drop", "new_market", "quality_drop")


def train_at(tables, T, seed: int = 0):
    """A RiskModel trained on what was known at ``T``, its reference, as a LoadedModel."""
    import pandas as pd

    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.serve.monitor_signals import cut_tables
    from returnrisk.train.evaluate import binary_metrics
    from returnrisk.train.model import RiskModel
    from returnrisk.train.pipeline import SplitConfig, time_split
    from returnrisk.train.reference import build_reference
    from returnrisk.train.registry import LoadedModel

    parts = time_split(build_features(cut_tables(tables, T), as_of=T), SplitConfig())
    names = list(FEATURE_SPECS)
    tr, va, te = parts["train"], parts["valid"], parts["test"]
    model = RiskModel({"num_threads": 1}, n_estimators=300, early_stopping_rounds=30, seed=seed)
    model.fit(tr[names], tr["label"], va[names], va["label"])
    reference = build_reference(model, va, mature=list(parts.values()))
    test_auc = binary_metrics(te["label"].to_numpy(float), model.predict_case(te[names]))["auc"]
    window = {"valid_end": pd.Timestamp(va["order_ts"].max()).isoformat()}
    return LoadedModel(model, "bench", "bench", "", {"test_auc": test_auc}, window), reference


def truth_coverage(tables, truth, reference, T, window_days: int = 90) -> tuple[int, int]:
    """Of the early cohorts at ``T``: how many have their opened cases inside the 95 % interval
    built from the true probabilities (``p_case`` x F(age), Poisson-binomial variance)."""
    import numpy as np
    import pandas as pd

    from returnrisk.serve.monitor_signals import time_to_case_share

    o = tables.orders[["order_id", "order_ts"]]
    age = (T - o["order_ts"]).dt.total_seconds().to_numpy() / 86_400.0
    keep = (age >= 0) & (age < window_days)
    o, age = o.loc[keep], age[keep]
    c = tables.after_sales_cases
    c = c.loc[c["opened_ts"] <= T].groupby("order_id")["opened_ts"].min()
    first = pd.Series(o["order_id"].map(c).to_numpy(), index=o.index)
    opened = (first.notna() & (first >= o["order_ts"])).to_numpy(dtype=float)
    p = o["order_id"].map(truth.set_index("order_id")["p_case"]).to_numpy(dtype=float)
    q = p * time_to_case_share(age, reference["time_to_case"])
    week = np.floor(age / 7).astype(int)
    n = int(np.ceil(window_days / 7))
    exp = np.bincount(week, weights=q, minlength=n)
    sd = np.sqrt(np.bincount(week, weights=q * (1 - q), minlength=n))
    obs = np.bincount(week, weights=opened, minlength=n)
    judged = exp > 0
    inside = np.abs(obs - exp) <= 1.96 * sd
    return int((inside & judged).sum()), int(judged.sum())


def model_coverage(report) -> dict[str, int]:
    """The monitor's early-realised intervals: inside / judged, with and without dispersion."""
    rel = report["recalibration"]["rel_sd"] or 0.0
    out = {"inside": 0, "inside_poisson_only": 0, "judged": 0}
    for c in report["early_realised"]:
        if not c["expected"]:
            continue
        sd = (c["high"] - c["expected"]) / 1.96
        sd0 = max(sd**2 - (rel * c["expected"]) ** 2, 0.0) ** 0.5
        out["judged"] += 1
        out["inside"] += abs(c["opened"] - c["expected"]) <= 1.96 * sd
        out["inside_poisson_only"] += abs(c["opened"] - c["expected"]) <= 1.96 * sd0
    return out


def main() -> None:  # noqa: PLR0915 - the benchmark's steps in order, printed as they run
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=825)
    parser.add_argument("--train-at", default="2025-04-01")
    parser.add_argument("--onset", default="2025-08-05")
    parser.add_argument("--stationary-seeds", default="21,22")
    parser.add_argument("--scenario-seed", type=int, default=31)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--max-weeks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=52)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import pandas as pd

    from returnrisk.contract import load_tables
    from returnrisk.serve.monitor import MonitorConfig, monitor_tables
    from returnrisk.synth import SynthConfig, generate_world, write_world

    T0 = pd.Timestamp(args.train_at, tz="UTC")
    onset = pd.Timestamp(args.onset, tz="UTC")
    if (onset - T0).days % 7:
        raise SystemExit(f"--onset {args.onset} is not a run day (T0 + 7 k)")
    config = MonitorConfig()
    out: dict = {
        "benchmark": "monitor_scenarios",
        "orders": args.orders,
        "days": args.days,
        "world": f"2024-01-01 + {args.days} days, without the reference's duty changes",
        "trained_at": T0.isoformat(),
        "runs_every_days": 7,
        "onset": onset.isoformat(),
        "config": "MonitorConfig() defaults",
        "stationary": {},
        "scenarios": {},
    }
    t_start = time.perf_counter()

    def world(scenario: str, seed: int, tmp: Path):
        cfg = SynthConfig(
            n_orders=args.orders,
            seed=seed,
            days=args.days,
            scenario=scenario,
            scenario_start=None if scenario == "stationary" else date.fromisoformat(args.onset),
            # the window crosses the US de-minimis change of 2025-05-02, a real drift in every
            # world: measure what the scenarios make fire, as before the rules were dated
            duty_changes=False,
        )
        d = tmp / f"{scenario}-{seed}"
        w = generate_world(cfg)
        write_world(w, d)
        return load_tables(d), w.truth, w.scenario

    def run(tables, loaded, reference, T):
        return monitor_tables(tables, loaded, reference, as_of=T, config=config).report

    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.stationary_seeds.split(",") if s]:
            tables, truth, _ = world("stationary", seed, Path(tmp))
            loaded, reference = train_at(tables, T0)
            fired, by_metric = [], {}
            cov = {"inside": 0, "inside_poisson_only": 0, "judged": 0}
            t_in = t_judged = 0
            for k in range(1, args.runs + 1):
                T = T0 + pd.Timedelta(days=7 * k)
                rep = run(tables, loaded, reference, T)
                if rep["alerts"]:
                    fired.append(
                        {
                            "as_of": T.date().isoformat(),
                            "alerts": [f"{a['metric']}:{a['subject']}" for a in rep["alerts"]],
                        }
                    )
                for a in rep["alerts"]:
                    by_metric[a["metric"]] = by_metric.get(a["metric"], 0) + 1
                for key, v in model_coverage(rep).items():
                    cov[key] += v
                i, j = truth_coverage(tables, truth, reference, T)
                t_in, t_judged = t_in + i, t_judged + j
            out["stationary"][f"seed_{seed}"] = {
                "runs": args.runs,
                "runs_with_alert": len(fired),
                "false_alerts_per_year": round(len(fired) * 52 / args.runs, 2),
                "alerts_by_metric": by_metric,
                "fired": fired,
                "early_cohorts_inside_95pct_model": f"{cov['inside']}/{cov['judged']}",
                "model_coverage": round(cov["inside"] / max(cov["judged"], 1), 3),
                "model_coverage_poisson_only": round(
                    cov["inside_poisson_only"] / max(cov["judged"], 1), 3
                ),
                "truth_coverage": round(t_in / max(t_judged, 1), 3),
                "early_cohorts_inside_95pct_truth": f"{t_in}/{t_judged}",
                "rel_sd_last_run": rep["recalibration"]["rel_sd"],
                "feature_reference_last_run": rep["drift"]["feature_reference"],
            }
            print(json.dumps({"progress": f"stationary seed {seed}"}), flush=True)

        for scenario in [s for s in args.scenarios.split(",") if s]:
            seed = args.scenario_seed
            tables, truth, info = world(scenario, seed, Path(tmp))
            loaded, reference = train_at(tables, T0)
            before = {}
            for k in (2, 1):
                T = onset - pd.Timedelta(days=7 * k)
                rep = run(tables, loaded, reference, T)
                before[T.date().isoformat()] = [
                    f"{a['metric']}:{a['subject']}" for a in rep["alerts"]
                ]
            first = None
            for k in range(1, args.max_weeks + 1):
                T = onset + pd.Timedelta(days=7 * k)
                rep = run(tables, loaded, reference, T)
                if rep["alerts"]:
                    first = {
                        "days_to_first_alert": 7 * k,
                        "as_of": T.date().isoformat(),
                        "metrics": sorted({a["metric"] for a in rep["alerts"]}),
                        "alerts": [f"{a['metric']}:{a['subject']}" for a in rep["alerts"]][:8],
                    }
                    break
            affected = truth["scenario_affected"].to_numpy()
            out["scenarios"][scenario] = {
                "seed": seed,
                "chose": {k: v for k, v in info.items() if k not in ("scenario",)},
                "affected_orders": int(affected.sum()),
                "alerts_before_onset": before,
                **(first or {"days_to_first_alert": None, "weeks_watched": args.max_weeks}),
            }
            print(json.dumps({"progress": scenario}), flush=True)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
