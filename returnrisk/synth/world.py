"""``generate_world``: the stages in order, one seeded generator; ``write_world``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from returnrisk.progress import QUIET, StepLog
from returnrisk.synth import tables as tb
from returnrisk.synth.actions import Stages, action_truth
from returnrisk.synth.catalog import make_catalog
from returnrisk.synth.config import NEW_TABLES, SynthConfig, World
from returnrisk.synth.demand import (
    make_customers,
    make_lines,
    make_orders,
    make_prices,
    order_times,
)
from returnrisk.synth.logistics import choose_carriage, make_charges, make_transit
from returnrisk.synth.outcomes import draw_events, make_cases
from returnrisk.synth.risk import line_risks, make_truth, order_risks
from returnrisk.synth.scenarios import make_plan, make_shift, open_market
from returnrisk.synth.setting import make_calendar, make_duties, make_geography


def generate_world(cfg: SynthConfig, *, log: StepLog = QUIET) -> World:
    """Generate the whole world for ``cfg`` (deterministic in ``cfg``).

    The stages draw from one generator in a fixed order: changing the order of draws
    changes every later number.
    """
    rng = np.random.default_rng(cfg.seed)
    geo, cal = make_geography(), make_calendar(cfg)
    reference = make_duties(cfg, geo, cal)  # the real rules in force during the world's window
    plan = make_plan(cfg, geo)
    with log.step("catalogue"):
        cat = make_catalog(rng, cfg, geo)
    with log.step("orders"):
        o_sec = order_times(rng, cfg, cal)
        cust = open_market(plan, geo, make_customers(rng, cfg, cal, geo))
        orders = make_orders(rng, cfg, cal, geo, o_sec, cust, (plan.market, plan.day))
    with log.step("order lines"):
        lines = make_lines(rng, cat, orders)
        prices = make_prices(rng, cat, orders, lines)
    with log.step("shipping"):
        car = choose_carriage(rng, geo, orders, prices)
        shift = make_shift(plan, geo, reference, cat, orders, lines, prices, car)
        duties = reference if shift.duties is None else shift.duties
        transit = make_transit(cfg.days, orders, car, shift)
        charges = make_charges(rng, geo, orders, prices, car, transit, duties)
    with log.step("risk model"):
        lr = line_risks(cal, geo, cat, orders, lines, prices, car, shift)
        risks = order_risks(orders, lines, prices, car, transit, charges, lr, shift)
        truth = make_truth(risks, transit)
    with log.step("outcomes"):
        ev = draw_events(rng, orders, lines, transit, risks)
        cases = make_cases(rng, cal.t_end, orders, lines, prices, transit, charges, risks, ev)
    with log.step("tables"):
        keys = tb.make_keys(cat, cust, orders)
        hist_customers, new_customers = tb.customers_tables(cal, geo, keys, cust, orders)
        frames = {
            "skus": tb.skus_table(rng, geo, cat, keys),
            "orders": tb.orders_table(rng, geo, keys, orders, prices, car, transit, charges),
            "order_lines": tb.lines_table(keys, lines, prices),
            "customers": hist_customers,
            "new_customers": new_customers,
            "shipments": tb.shipments_table(cal, keys, orders, ev),
            "after_sales_cases": tb.cases_table(keys, lines, cases),
            "duty_rules": duties.table,
        }
        tables, new = tb.split_tables(cfg, cal, geo, cat, orders, lines, frames)
        truth["order_id"] = keys.order_ids
        truth["is_new"] = orders.o_new
        if shift.affected is not None:
            truth["scenario_affected"] = shift.affected
    log.info(
        f"{int((~orders.o_new).sum()):,} history orders, {int(orders.o_new.sum()):,} new, "
        f"{len(cases.c_ord):,} cases, {len(frames['skus']):,} SKUs"
    )
    with log.step("truth for actions"):
        stages = Stages(
            cfg.days, cal, geo, cat, orders, lines, prices, car, shift, charges, cfg.scenario_day
        )
        # the new orders, and the history orders of the default backtest window
        first, end = cfg.truth_actions_days_range
        wanted = orders.o_new | ((orders.o_day >= first) & (orders.o_day < end))
        truth_actions = action_truth(stages, keys.order_ids, wanted)
    scenario = None if plan.stationary else shift.info
    if scenario is not None and shift.affected is not None:
        log.info(f"scenario {json.dumps(scenario)}: {int(shift.affected.sum()):,} orders affected")
    return World(
        tables=tables,
        truth=truth,
        new=new,
        config=cfg,
        scenario=scenario,
        truth_actions=truth_actions,
    )


def write_world(world: World, out_dir: str | Path, *, log: StepLog = QUIET) -> Path:
    """Write every table as Parquet into ``out_dir`` (+ ``truth.parquet`` and ``new/``).

    A scenario world also gets ``scenario.json`` (what the scenario chose); the truth for
    actions (new orders and the backtest window's) goes to ``truth_actions.parquet``.
    """
    out = Path(out_dir)
    with log.step(f"writing {out}"):
        out.mkdir(parents=True, exist_ok=True)
        for name, df in world.tables.items():
            df.to_parquet(out / f"{name}.parquet", index=False)
        world.truth.to_parquet(out / "truth.parquet", index=False)
        if world.truth_actions is not None and len(world.truth_actions):
            world.truth_actions.to_parquet(out / "truth_actions.parquet", index=False)
        else:  # no rows: do not leave a previous run's truth for actions behind
            (out / "truth_actions.parquet").unlink(missing_ok=True)
        if world.new:
            (out / "new").mkdir(exist_ok=True)
            for name, df in world.new.items():
                df.to_parquet(out / "new" / f"{name}.parquet", index=False)
        else:  # no new orders: do not leave a previous run's new orders behind
            for name in NEW_TABLES:
                (out / "new" / f"{name}.parquet").unlink(missing_ok=True)
        if world.scenario is not None:
            text = json.dumps(world.scenario, indent=2, sort_keys=True) + "\n"
            (out / "scenario.json").write_text(text, encoding="utf-8")
        else:  # stationary: do not leave a previous run's scenario behind
            (out / "scenario.json").unlink(missing_ok=True)
    return out
