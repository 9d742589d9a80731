"""``returnrisk backtest``: out of time, day by day, in money; bad input refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import load_tables
from returnrisk.costs import ACTIONS, FAMILIES, resolve_costs
from returnrisk.serve.backtest import (
    BacktestError,
    Policy,
    Replayer,
    Window,
    _labelled_before,
    check_model_window,
    choose_window,
    cut_tables,
    parse_policy,
    realised_costs,
    replay,
    run_backtest,
)
from returnrisk.synth import SynthConfig, generate_world, write_world
from returnrisk.train.model import RiskModel
from returnrisk.train.pipeline import SplitConfig, prepare_data, time_split

FROM, TO = "2024-07-01", "2024-07-08"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt")
    write_world(generate_world(SynthConfig(n_orders=8000, seed=5, days=300, new_days=1)), out)
    return out


@pytest.fixture(scope="module")
def tables(world: Path):
    return load_tables(world)


@pytest.fixture(scope="module")
def window(tables) -> Window:
    return choose_window(tables, FROM, TO)


@pytest.fixture(scope="module")
def replayer(tables, window) -> Replayer:
    """A small model trained on the tables cut at the window's start (fast, for the tests)."""
    cut = cut_tables(tables, window.start)
    prepared = prepare_data(cut, as_of=window.start)
    parts = time_split(prepared.features, SplitConfig())
    names, cats = prepared.feature_names, prepared.categorical
    tr, va = parts["train"], parts["valid"]
    risk = RiskModel({"num_threads": 1}, n_estimators=80, categorical_features=cats)
    risk.fit(tr[names], tr["label"].to_numpy(), va[names], va["label"].to_numpy())
    costs = resolve_costs(None, cut.after_sales_cases)
    return Replayer(risk, None, costs, "test model", _labelled_before(tables, window.start))


def test_cut_tables_keeps_only_what_was_known(tables) -> None:
    t = pd.Timestamp("2024-05-01", tz="UTC")
    cut = cut_tables(tables, t)
    assert (cut.orders["order_ts"] < t).all()
    assert len(cut.orders) < len(tables.orders)
    assert (cut.after_sales_cases["opened_ts"] < t).all()
    assert (cut.shipments["shipped_ts"] < t).all()
    assert (cut.shipments["delivered_ts"].dropna() < t).all()
    # a parcel in transit at t: shipped, its delivery not known yet
    late = tables.shipments.set_index("order_id").loc[cut.shipments["order_id"], "delivered_ts"]
    assert (cut.shipments["delivered_ts"].isna().to_numpy() & (late >= t).to_numpy()).any()
    assert cut.as_of() < t


def test_the_backtest_reads_nothing_after_each_day(tables, window, replayer) -> None:
    """Cut-at-T: the decisions of the first days are the same when nothing after them exists."""
    full = replay(tables, window, replayer)
    day3 = window.start + pd.Timedelta(days=3)
    cut = cut_tables(tables, day3)
    short = replay(cut, Window(window.start, day3), replayer)
    head = full[full["day"] < day3].reset_index(drop=True)
    assert len(head) == len(short) > 0
    pd.testing.assert_frame_equal(head, short, check_exact=True)
    # and the other way: a future that differs (every later case gone) changes nothing either
    later = tables.after_sales_cases["opened_ts"] >= day3
    other = tables.replace(after_sales_cases=tables.after_sales_cases[~later])
    again = replay(other, Window(window.start, day3), replayer)
    pd.testing.assert_frame_equal(again, short, check_exact=True)


def test_policies_in_money(tables, window, replayer, world: Path) -> None:
    truth = pd.read_parquet(world / "truth.parquet")
    policies = [
        Policy(),
        Policy("cancel everything", "capacity", 1.0, "cancel"),
        Policy("nobody", "capacity", 0.0, "hold_inspect"),
        parse_policy(
            {
                "name": "b2b allowed, dear orders held",
                "flag": {"threshold": 0.2},
                "rules": [
                    {"when": {"customer_segment": "b2b"}, "then": "allow"},
                    {"when": {"order_value_above": 150}, "then": "hold_inspect"},
                ],
                "action": "contact_buyer",
            }
        ),
    ]
    res = run_backtest(
        tables, policies=policies, costs=replayer.costs, window=window, replayer=replayer,
        truth=truth,
    )  # fmt: skip
    rep = res.report
    assert rep["window"]["days"] == 8
    assert rep["window"]["orders"] == len(res.decisions)
    pol = rep["policies"]
    assert set(pol["capacity 5 %"]["scorers"]) == {"model", "lookback", "truth", "hindsight"}
    # cancelling every order: every realised case cost avoided, every order's cancel cost paid
    ids = res.decisions["order_id"]
    real = realised_costs(tables, ids, replayer.costs)
    value = tables.orders.set_index("order_id").loc[ids, "order_value"].to_numpy()
    want = (
        real[[f"cost_{f}" for f in FAMILIES]].to_numpy().sum()
        - replayer.costs.costs_of("cancel", value).sum()
    )
    everything = pol["cancel everything"]["scorers"]["model"]
    assert everything["net_saving"] == pytest.approx(want)
    paid = replayer.costs.costs_of("cancel", value).sum()
    assert everything["action_cost"] == pytest.approx(paid)
    assert everything["actions"] == {"cancel": len(ids)}
    assert everything["flagged"] == len(ids)
    assert everything["families"]["duties"]["recall"] == 1.0
    n_cases = real[[f"n_{f}" for f in FAMILIES]].to_numpy().sum()
    assert everything["cases_avoided"] == pytest.approx(n_cases)
    assert pol["nobody"]["net_saving"] == 0
    assert pol["nobody"]["flagged"] == 0
    # per policy: the interval, the flags per day, the curve 0 .. 20 %, hindsight the ceiling
    top = pol["capacity 5 %"]["scorers"]
    for name, sc in top.items():
        lo, hi = sc["net_saving_ci90"]
        assert lo <= sc["net_saving"] <= hi, name
        assert sum(sc["flagged_per_day"].values()) == sc["flagged"]
        assert len(sc["flagged_per_day"]) == 8
        assert [p["capacity"] for p in sc["curve"]][:3] == [0.0, 0.01, 0.02]
        assert sc["curve"][0]["net_saving"] == 0.0
        assert sc["net_saving"] <= top["hindsight"]["net_saving"] + 1e-9
    per_day = res.decisions.groupby("day").size()
    assert top["model"]["flagged"] == int(np.ceil(per_day * 0.05 - 1e-9).sum())
    # rules: no b2b order flagged, every dear non-b2b order held
    rules = pol["b2b allowed, dear orders held"]
    assert rules["scorers"]["model"]["actions"].get("hold_inspect", 0) > 0
    assert set(rules["scorers"]["model"]["actions"]) <= {"hold_inspect", "contact_buyer"}
    assert "vs_first_policy" in rules["scorers"]["model"]
    assert set(res.decisions["recommended_action"]) <= set(ACTIONS)


def test_recommended_actions_against_the_truth_for_actions(
    tables, window, replayer, world: Path
) -> None:
    """``truth_actions.parquet`` covers the window (synth's default): the model's flagged
    orders' recommended actions are compared with the truth-best ones, as compare_to_truth."""
    from returnrisk.serve.decisions import compare_recommendations, truth_action_table

    ta = pd.read_parquet(world / "truth_actions.parquet")
    res = run_backtest(
        tables, costs=replayer.costs, window=window, replayer=replayer, truth_actions=ta,
        policies=[Policy(), Policy("hold all", "capacity", 0.05, "hold_inspect")],
    )  # fmt: skip
    pol = res.report["policies"]
    vs = pol["capacity 5 %"]["scorers"]["model"]["vs_truth_actions"]
    assert vs["n"] == pol["capacity 5 %"]["scorers"]["model"]["flagged"]  # all covered
    assert 0 <= vs["agreement"] <= 1
    assert vs["truth_best_saving"] > 0
    assert vs["recommended_true_saving"] <= vs["truth_best_saving"] + 1e-9
    assert "vs_truth_actions" not in pol["hold all"]["scorers"]["model"]  # a fixed action
    # the same figures as comparing by hand: the top 5 % of each day by P(case)
    d = res.decisions
    rank = d.groupby("day")["p_case"].rank(ascending=False, method="first")
    top = d[rank <= np.ceil(d.groupby("day")["p_case"].transform("size") * 0.05 - 1e-9)]
    value = tables.orders.set_index("order_id")["order_value"]
    truth = truth_action_table(ta[ta["order_id"].isin(d["order_id"])], replayer.costs, value)
    want = compare_recommendations(top, truth)
    assert want["n"] == vs["n"]
    assert want["agreement"] == pytest.approx(vs["agreement"])
    assert want["regret_share"] == pytest.approx(vs["regret_share"])


def test_a_model_trained_on_the_window_is_refused(window) -> None:
    start = window.start
    inside = {"train_end": "2024-05-01T00:00:00+00:00", "valid_end": str(start)}
    with pytest.raises(BacktestError, match="overlaps the window starting 2024-07-01") as err:
        check_model_window(inside, "models:/return-risk/3", start)
    assert "models:/return-risk/3" in str(err.value)
    ok = {"train_end": "2024-05-01T00:00:00+00:00", "valid_end": "2024-06-20T10:00:00+00:00"}
    check_model_window(ok, "models:/return-risk/2", start)
    with pytest.raises(BacktestError, match="no training window"):
        check_model_window({}, "models:/return-risk/1", start)


@pytest.mark.parametrize(
    ("date_from", "date_to", "match"),
    [
        ("2024-07-01", "2024-07-05", "5 day\\(s\\); a backtest needs at least 7"),
        ("2024-07-01", "2024-10-20", "not mature"),
        ("2023-01-01", "2023-02-01", "no mature orders in the window"),
        ("2024-13-01", None, "--from: not a date"),
    ],
)
def test_bad_windows(tables, date_from, date_to, match) -> None:
    with pytest.raises(BacktestError, match=match):
        choose_window(tables, date_from, date_to)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"colour": 1}, "colour: unknown key"),
        ({"flag": {"top": 0.05}}, "flag: unknown flag rule"),
        ({"flag": {"capacity": -0.1}}, "flag.capacity: must be a number >= 0, got -0.1"),
        ({"flag": {"capacity": 5}}, "flag.capacity: must be in \\[0, 1\\], got 5"),
        ({"action": "teleport"}, "action: unknown action.*'teleport'"),
        ({"rules": [{"when": {"shoe_size": "42"}, "then": "allow"}]}, "unknown field.*shoe_size"),
        ({"rules": [{"when": {"channel": "ebay"}, "then": "burn"}]}, "rules\\[0\\].then"),
        ({"rules": [{"when": {"order_value_above": -5}, "then": "allow"}]}, "-5"),
    ],
)
def test_bad_policy_files_name_key_and_value(tmp_path: Path, raw, match) -> None:
    import yaml

    f = tmp_path / "policy.yaml"
    f.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["backtest", str(tmp_path), "--out", str(out), "--policy", str(f)])
    assert r.exit_code == 1
    assert str(f) in r.output
    assert "Traceback" not in r.output
    import re

    assert re.search(match, r.output), r.output
    assert not out.exists()  # refused before any work


def test_cli_refuses_bad_cost_file_and_window_before_work(tmp_path: Path, world: Path) -> None:
    f = tmp_path / "costs.yaml"
    f.write_text("actions: {cancel: {cost: -3}}\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["backtest", str(world), "--out", str(tmp_path / "o"),
                                 "--costs", str(f)])  # fmt: skip
    assert r.exit_code == 1
    assert "actions.cancel.cost" in r.output
    assert "-3" in r.output
    r = CliRunner().invoke(app, ["backtest", str(world), "--out", str(tmp_path / "o"),
                                 "--from", "2024-07-01", "--to", "2024-07-03"])  # fmt: skip
    assert r.exit_code == 1
    assert "at least 7" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_trains_as_of_the_window_and_writes_json_and_html(tmp_path: Path, world: Path):
    out = tmp_path / "bt"
    r = CliRunner().invoke(
        app, ["backtest", str(world), "--out", str(out), "--from", FROM, "--to", TO, "--quiet"]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "backtest.json").read_text())
    assert rep["model"] == "trained as of 2024-07-01"
    pol = rep["policies"]["capacity 5 %"]
    assert set(pol["scorers"]) == {"model", "lookback", "truth", "hindsight"}
    assert len(pol["net_saving_ci90"]) == 2
    assert len(pol["curve"]) == 21
    page = (out / "backtest.html").read_text()
    assert "<svg" in page
    assert "http" not in page.replace("http-equiv", "")
    assert "net saving" in r.output


@pytest.mark.slow
def test_cli_model_option_refuses_a_model_trained_on_the_window(
    tmp_path: Path, world: Path, tables, window, tracking_uri
) -> None:
    from returnrisk.train.pipeline import TrainConfig, train_prepared
    from returnrisk.train.registry import MODEL_NAME, configure_tracking

    configure_tracking(tracking_uri)
    cfg = TrainConfig(seed=0, num_threads=1, baselines=False, figures=False, n_estimators=80)
    on_all = train_prepared(prepare_data(tables), cfg)  # its training reaches into the window
    before = train_prepared(prepare_data(cut_tables(tables, window.start), as_of=window.start), cfg)
    # a window inside the first model's calibration (validation) slice
    start = pd.Timestamp(on_all.data_window["valid_start"]).floor("D")
    inside = ["--from", str(start.date()), "--to", str((start + pd.Timedelta(days=7)).date())]
    r = CliRunner().invoke(app, ["backtest", str(world), *inside, "--quiet", "--model",
                                 f"models:/{MODEL_NAME}/{on_all.version}", "--out",
                                 str(tmp_path / "a")])  # fmt: skip
    assert r.exit_code == 1
    assert f"overlaps the window starting {start.date()}" in r.output
    assert on_all.data_window["valid_end"][:10] in r.output
    args = ["backtest", str(world), "--from", FROM, "--to", TO, "--quiet", "--model"]
    assert not (tmp_path / "a").exists()
    r = CliRunner().invoke(app, [*args, f"models:/{MODEL_NAME}/{before.version}", "--out",
                                 str(tmp_path / "b")])  # fmt: skip
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "b" / "backtest.json").read_text())
    assert rep["model"] == f"models:/{MODEL_NAME}/{before.version}"


def test_weeks_sets_the_default_window_length(tables) -> None:
    twelve = choose_window(tables, None, None)
    one = choose_window(tables, None, None, weeks=1)
    assert twelve.days == 84
    assert one.days == 7
    assert one.end == twelve.end  # both end at the last mature day


def _cut_by_keys(tables, t: pd.Timestamp):
    """The cut written out directly (keep the orders placed before ``t``, then the rows of
    theirs known before ``t``): the oracle ``Cutter`` is checked against."""
    o = tables.orders
    orders = o[o["order_ts"] < t]
    keep = pd.Index(orders["order_id"])
    lines = tables.order_lines[keep.get_indexer(tables.order_lines["order_id"]) >= 0]
    cases = tables.after_sales_cases
    cases = cases[(cases["opened_ts"] < t) & (keep.get_indexer(cases["order_id"]) >= 0)]
    sh = tables.shipments
    sh = sh[(sh["shipped_ts"] < t) & (keep.get_indexer(sh["order_id"]) >= 0)]
    sh = sh.assign(delivered_ts=sh["delivered_ts"].where(sh["delivered_ts"] < t))
    cust = tables.customers
    cust = cust[pd.Index(orders["customer_id"].unique()).get_indexer(cust["customer_id"]) >= 0]
    return tables.replace(
        orders=orders.reset_index(drop=True),
        order_lines=lines.reset_index(drop=True),
        after_sales_cases=cases.reset_index(drop=True),
        shipments=sh.reset_index(drop=True),
        customers=cust.reset_index(drop=True),
    )


def test_the_replays_cutter_cuts_as_cut_tables(tables) -> None:
    from returnrisk.serve.backtest import Cutter

    cutter = Cutter(tables)
    first = tables.orders["order_ts"].min()
    days = [pd.Timestamp(d, tz="UTC") for d in ("2024-05-01", "2024-07-03")]
    after = tables.as_of() + pd.Timedelta(days=1)
    for t in [first, first + pd.Timedelta(hours=5), *days, after]:
        want, got = _cut_by_keys(tables, t), cutter.at(t)
        assert cut_tables(tables, t).orders.equals(got.orders)
        for name, df in want.as_dict().items():
            pd.testing.assert_frame_equal(got.as_dict()[name], df, check_exact=True, obj=name)
