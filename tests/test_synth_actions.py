"""The generator's truth for actions: same hidden variables, same causes, another carriage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnrisk.synth import SynthConfig, generate_world, write_world
from returnrisk.synth.actions import FAMILY_CAUSES, family_truth


@pytest.fixture(scope="module")
def world():
    """New orders only (``truth_actions_days=0``): the tests of the truth itself."""
    return generate_world(SynthConfig(n_orders=6000, seed=4, new_days=20, truth_actions_days=0))


def test_ship_rows_are_the_worlds_truth_and_cover_every_new_order(world) -> None:
    ta, truth = world.truth_actions, world.truth.set_index("order_id")
    ship = ta[ta["action"] == "ship"].set_index("order_id")
    new_ids = set(world.new["orders"]["order_id"])
    assert set(ship.index) == new_ids
    assert ship.index.is_unique
    assert set(ta[ta["action"] == "ship_ddp"]["order_id"]) == new_ids
    np.testing.assert_array_equal(ship["p_case_true"], truth.loc[ship.index, "p_case"])
    fam = family_truth(truth.loc[ship.index])
    for f in FAMILY_CAUSES:
        np.testing.assert_array_equal(ship[f"p_{f}"], fam[f"p_{f}"])


def test_ship_ddp_removes_duty_risk_only_where_duties_were_due(world) -> None:
    ta = world.truth_actions
    new = world.new["orders"].set_index("order_id")
    ship = ta[ta["action"] == "ship"].set_index("order_id")
    ddp = ta[ta["action"] == "ship_ddp"].set_index("order_id").loc[ship.index]
    was_ddp = (new.loc[ship.index, "incoterm"] == "DDP").fillna(False).to_numpy()
    # an order already DDP is unchanged; a DDU one never gets more duty disputes
    np.testing.assert_array_equal(
        ship["p_case_true"].to_numpy()[was_ddp], ddp["p_case_true"].to_numpy()[was_ddp]
    )
    assert (ddp["p_duties"] <= ship["p_duties"] + 1e-15).all()
    drop = ship["p_duties"] - ddp["p_duties"]
    assert drop.max() > 0.1  # DDU above the de minimis: a large part of the risk is duties
    # the causes stay: a parcel no longer refused at customs is delivered, and can arrive damaged
    assert (ddp["p_logistics"] >= ship["p_logistics"]).all()
    np.testing.assert_array_equal(ship["p_other"], ddp["p_other"])


def test_switch_carrier_offers_the_services_seen_on_the_lane_and_keeps_the_order(world) -> None:
    ta = world.truth_actions
    hist = world.tables["orders"]
    seen = set(zip(hist["destination_country"], hist["carrier_id"].astype(object), strict=True))
    sw = ta[ta["action"] == "switch_carrier"]
    dest = sw["order_id"].map(world.new["orders"].set_index("order_id")["destination_country"])
    assert len(sw) > len(world.new["orders"])  # several alternatives per order
    assert all((d, c) in seen for d, c in zip(dest, sw["carrier_id"], strict=True))
    own = ta[ta["action"] == "ship"].set_index("order_id")["carrier_id"]
    assert (sw["carrier_id"].to_numpy() != own.loc[sw["order_id"]].to_numpy()).all()
    # the same customer and items: a cause independent of the carrier stays exactly the same
    # ("other" cases: miscellaneous ones, and refused cash on delivery, which needs a delivery)
    pay = sw["order_id"].map(world.new["orders"].set_index("order_id")["payment_method"])
    not_cod = (pay != "cod").to_numpy()
    ship_other = ta[ta["action"] == "ship"].set_index("order_id")["p_other"]
    np.testing.assert_array_equal(
        sw["p_other"].to_numpy()[not_cod], ship_other.loc[sw["order_id"]].to_numpy()[not_cod]
    )
    # and the carrier matters: logistics risk varies across the alternatives of an order
    spread = sw.groupby("order_id")["p_logistics"].agg(lambda s: s.max() - s.min())
    assert spread.median() > 0.005


def test_lane_collapse_follows_the_carrier_not_the_order() -> None:
    cfg = SynthConfig(
        n_orders=6000, seed=4, new_days=20, scenario="lane_collapse", truth_actions_days=0
    )
    w = generate_world(cfg)
    carrier, lanes = w.scenario["carrier_id"], w.scenario["countries"]
    ta = w.truth_actions
    dest = ta["order_id"].map(w.new["orders"].set_index("order_id")["destination_country"])
    on_lane = dest.isin(lanes).to_numpy()
    ship = ta[(ta["action"] == "ship") & on_lane & (ta["carrier_id"] == carrier)]
    assert len(ship), "no new order on a collapsed lane"
    alt = ta[(ta["action"] == "switch_carrier") & ta["order_id"].isin(ship["order_id"])]
    best = alt.groupby("order_id")["p_logistics"].min()
    assert (best < ship.set_index("order_id").loc[best.index, "p_logistics"]).mean() > 0.9


def test_written_with_new_orders_and_deterministic(tmp_path: Path) -> None:
    cfg = SynthConfig(n_orders=2000, seed=9, new_days=2)
    write_world(generate_world(cfg), tmp_path / "a")
    write_world(generate_world(cfg), tmp_path / "b")
    a = pd.read_parquet(tmp_path / "a" / "truth_actions.parquet")
    pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "b" / "truth_actions.parquet"))
    assert list(a.columns[:4]) == ["order_id", "action", "carrier_id", "p_case_true"]
    cfg = SynthConfig(n_orders=2000, seed=9, new_days=0, truth_actions_days=0)
    write_world(generate_world(cfg), tmp_path / "a")
    assert not (tmp_path / "a" / "truth_actions.parquet").exists()


def test_the_default_backtest_window_has_its_truth(tmp_path: Path) -> None:
    """``truth_actions_days`` (default 84, backtest's 12 weeks): every order of the window
    ``returnrisk backtest`` chooses by default (and of a shorter one) has its truth for
    actions, as do the new orders; nothing else of the world changes."""
    from returnrisk.contract import load_tables
    from returnrisk.serve.backtest import choose_window

    cfg = SynthConfig(n_orders=6000, seed=4, days=400, new_days=2)
    assert cfg.truth_actions_days == 84
    world = generate_world(cfg)
    write_world(world, tmp_path / "w")
    ta = pd.read_parquet(tmp_path / "w" / "truth_actions.parquet")
    ship = ta[ta["action"] == "ship"].set_index("order_id")
    assert ship.index.is_unique
    tables = load_tables(tmp_path / "w")
    o = tables.orders
    for weeks in (12, 1):
        w = choose_window(tables, None, None, weeks)
        ids = o.loc[(o["order_ts"] >= w.start) & (o["order_ts"] < w.end), "order_id"]
        assert len(ids) > 50 * weeks
        assert set(ids) <= set(ship.index)
    new_ids = set(world.new["orders"]["order_id"])
    assert new_ids <= set(ship.index)
    # only those: the window (a day's margin either side), not the whole history
    hist = set(ship.index) - new_ids
    w = choose_window(tables, None, None)
    placed = o.set_index("order_id").loc[sorted(hist), "order_ts"]
    assert placed.min() >= w.start - pd.Timedelta(days=2)
    assert placed.max() < w.end + pd.Timedelta(days=2)
    assert len(hist) < len(o) / 3
    # the same truth as the world's, and per order the same rows as a new-orders-only world
    truth = world.truth.set_index("order_id")
    np.testing.assert_array_equal(ship["p_case_true"], truth.loc[ship.index, "p_case"])
    other = generate_world(SynthConfig(n_orders=6000, seed=4, days=400, new_days=2,
                                       truth_actions_days=0))  # fmt: skip
    for name, df in world.tables.items():
        pd.testing.assert_frame_equal(df, other.tables[name])
    only_new = ta[ta["order_id"].isin(new_ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(only_new, other.truth_actions.reset_index(drop=True))
    # the window's orders get the same alternatives: DDP and the carriers of their lane
    assert set(ta.loc[ta["order_id"].isin(hist), "action"]) == {"ship", "ship_ddp",
                                                                 "switch_carrier"}  # fmt: skip


def test_truth_actions_days_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="truth_actions_days: must be >= 0"):
        SynthConfig(truth_actions_days=-1)


def test_ship_ddp_follows_the_duty_rule_in_force_at_the_orders_time() -> None:
    """The default window crosses the US rule of 2025-05-02 (de minimis 0): US DDU orders
    under the old de minimis owe no duty before it (shipping them DDP changes nothing) and
    owe it after (DDP removes a real part of their risk), in the truth for actions as in the
    world's truth."""
    world = generate_world(SynthConfig(n_orders=6000, seed=4, new_days=20))  # default window
    rule = world.tables["duty_rules"].set_index("rule_id").loc["US-2025-05"]
    us = world.tables["countries"].set_index("country_code").loc["US"]
    old = us["duty_de_minimis"]
    assert old > rule["duty_de_minimis"]
    assert us["default_incoterm"] == "DDU"  # an order without an incoterm is DDU
    orders = pd.concat([world.tables["orders"], world.new["orders"]]).set_index("order_id")
    ta = world.truth_actions
    ship = ta[ta["action"] == "ship"].set_index("order_id")
    ddp = ta[ta["action"] == "ship_ddp"].set_index("order_id").loc[ship.index]
    o = orders.loc[ship.index]
    low_ddu = (o["destination_country"] == "US") & (o["incoterm"].fillna("DDU") == "DDU")
    low_ddu &= o["order_value"] <= old
    after = (o["order_ts"] >= rule["valid_from"]).to_numpy()
    drop = (ship["p_duties"] - ddp["p_duties"]).to_numpy()
    before_rows, after_rows = low_ddu.to_numpy() & ~after, low_ddu.to_numpy() & after
    assert before_rows.sum() >= 20  # the default backtest window's orders, before the rule
    assert after_rows.sum() >= 20  # the new orders, after it
    np.testing.assert_array_equal(drop[before_rows], 0.0)
    assert drop[after_rows].min() > 0.005
    assert drop[after_rows].mean() > 0.05
