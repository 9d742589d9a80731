"""How much of the generator's truth AUC is knowable: the truth with the customers' hidden case
tendency removed, on the test slice ``bench_train_quality.py`` evaluates; prints JSON.

    .venv/bin/python benchmarks/bench_truth_ceiling.py [--orders 200000] [--seed 0]

The synthetic truth ``p_case`` uses every hidden cause, including each customer's hidden case
tendency (``c_lat``: N(2.8, 0.5) for serial returners, N(0, 0.6) for the others, in the
logits of returns, claims and duty disputes). No model sees it for a first order, and for a
customer with a few orders only a noisy estimate. This recomputes the truth with the same
hidden variables but that tendency replaced: by 0 for every customer (``no_customer_tendency``),
and by 0 for everyone but the serial returners (``serial_tendency_only``), then reports the
AUC of each against the realised labels of the default test slice. The difference to the full
truth is the part of the truth's AUC that rests on the per-customer tendency.

It wraps the generator's risk stage (``returnrisk.synth.world.line_risks`` / ``order_risks``)
to keep its inputs: a measurement, not a feature of the generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import numpy as np
    from sklearn.metrics import roc_auc_score

    import returnrisk.synth.world as world_mod
    from returnrisk.contract import coerce_tables
    from returnrisk.synth import SynthConfig
    from returnrisk.synth.risk import make_truth
    from returnrisk.train.pipeline import SplitConfig, prepare_data, time_split

    kept: dict[str, tuple] = {}
    line_risks, order_risks = world_mod.line_risks, world_mod.order_risks

    def keep_line_risks(*a):
        kept["line"] = a
        return line_risks(*a)

    def keep_order_risks(*a):
        kept["order"] = a
        return order_risks(*a)

    world_mod.line_risks, world_mod.order_risks = keep_line_risks, keep_order_risks
    try:
        world = world_mod.generate_world(
            SynthConfig(n_orders=args.orders, seed=args.seed, new_days=1)
        )
    finally:
        world_mod.line_risks, world_mod.order_risks = line_risks, order_risks
    cal, geo, cat, orders, lines, prices, car, shift = kept["line"]
    transit, charges = kept["order"][4], kept["order"][5]
    serial = orders.o_lat > 1.5  # serial returners' tendency is N(2.8, 0.5): a clean cut

    def truth_with(o_lat: np.ndarray) -> np.ndarray:
        o = dataclasses.replace(orders, o_lat=o_lat)
        lr = line_risks(cal, geo, cat, o, lines, prices, car, shift)
        risks = order_risks(o, lines, prices, car, transit, charges, lr, shift)
        return make_truth(risks, transit)["p_case"].to_numpy()

    truth = world.truth.set_index("order_id")
    variants = {
        "truth": truth["p_case"].to_numpy(),
        "serial_tendency_only": truth_with(np.where(serial, orders.o_lat, 0.0)),
        "no_customer_tendency": truth_with(np.zeros_like(orders.o_lat)),
    }
    prepared = prepare_data(coerce_tables(world.tables))
    test = time_split(prepared.features, SplitConfig())["test"]
    y = test["label"].to_numpy(dtype=np.float64)
    pos = truth.index.get_indexer(test["order_id"])
    out = {
        "orders": args.orders,
        "seed": args.seed,
        "n_test": len(test),
        "test_window": [str(test["order_ts"].min()), str(test["order_ts"].max())],
        "serial_share_of_orders": round(float(serial.mean()), 4),
        "test_auc": {
            name: round(float(roc_auc_score(y, p[pos])), 4) for name, p in variants.items()
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
