"""returnrisk.features on the synthetic world, through the CLI, and on the real data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import coerce_tables, load_tables
from returnrisk.features import FEATURE_SPECS, build_features


@pytest.fixture(scope="module")
def synth_tables(synth_world: Path):
    return load_tables(synth_world)


@pytest.fixture(scope="module")
def synth_features(synth_tables):
    return build_features(synth_tables)


def test_synth_shape_and_labels(synth_tables, synth_features):
    f = synth_features
    assert len(f) == len(synth_tables.orders)
    assert f["order_id"].is_unique
    assert f[["order_ts", "order_id"]].equals(
        f[["order_ts", "order_id"]].sort_values(["order_ts", "order_id"]).reset_index(drop=True)
    )
    assert f["mature"].any()
    assert not f["mature"].all()
    assert f.loc[~f["mature"], "label"].isna().all()
    assert set(f.loc[f["mature"], "label"].unique()) == {0.0, 1.0}
    # label = a case within 90 days; computed independently here
    cases = synth_tables.after_sales_cases.merge(
        synth_tables.orders[["order_id", "order_ts"]], on="order_id"
    )
    in_window = cases["opened_ts"] <= cases["order_ts"] + pd.Timedelta(days=90)
    positive = set(cases.loc[in_window, "order_id"])
    mature = f.loc[f["mature"]]
    assert (mature["label"] == mature["order_id"].isin(positive).astype(float)).all()
    # no rate is ever missing, whatever the cold start
    rates = [c for c in FEATURE_SPECS if "_rate" in c]
    assert f[rates].notna().all().all()
    assert ((f[rates] >= 0) & (f[rates] <= 1)).all().all()


def test_synth_history_counts_match_independent_computation(synth_tables, synth_features):
    """customer / lane prior counts recomputed with plain pandas (rank with ties = 'min')."""
    o = synth_tables.orders
    f = synth_features.set_index("order_id").loc[o["order_id"]]
    cust_rank = o.groupby("customer_id")["order_ts"].rank(method="min") - 1
    np.testing.assert_array_equal(f["customer_prior_orders"].to_numpy(), cust_rank.to_numpy())
    lane_rank = (
        o.assign(c=o["carrier_id"].fillna("<none>"))
        .groupby(["destination_country", "c"])["order_ts"]
        .rank(method="min")
        - 1
    )
    np.testing.assert_array_equal(f["lane_prior_orders"].to_numpy(), lane_rank.to_numpy())
    # prior cases of the customer: every (order, earlier-known case) pair of the same customer
    cases = synth_tables.after_sales_cases.merge(o[["order_id", "customer_id"]], on="order_id")
    pairs = o[["order_id", "customer_id", "order_ts"]].merge(
        cases[["customer_id", "opened_ts"]], on="customer_id"
    )
    known = pairs.loc[pairs["opened_ts"] < pairs["order_ts"]].groupby("order_id").size()
    expected = known.reindex(o["order_id"], fill_value=0).to_numpy(dtype=float)
    np.testing.assert_array_equal(f["customer_prior_cases"].to_numpy(), expected)
    assert expected.max() > 0


def test_synth_scoring_new_orders(synth_world: Path, synth_tables, synth_features):
    """Scoring: new orders are concatenated into the tables and built with order_ids."""
    new_dir = synth_world / "new"
    new = {p.stem: pd.read_parquet(p) for p in new_dir.glob("*.parquet")}
    assert "orders" in new
    assert len(new["orders"])
    frames = synth_tables.as_dict()
    for name, df in new.items():
        frames[name] = pd.concat([frames[name], df], ignore_index=True)
    merged = coerce_tables(frames)
    now = merged.orders["order_ts"].max() + pd.Timedelta(minutes=1)
    ids = new["orders"]["order_id"].astype(str).tolist()
    scored = build_features(merged, order_ids=ids, as_of=now)
    assert sorted(scored["order_id"]) == sorted(ids)
    assert not scored["mature"].any()
    assert scored["label"].isna().all()
    # history orders are unchanged by adding the new ones (they come later)
    again = build_features(merged, order_ids=synth_features["order_id"].iloc[-200:].tolist())
    cols = [c for c in again.columns if c not in ("mature", "label", "first_case_ts")]
    tail = synth_features.iloc[-200:].reset_index(drop=True)
    pd.testing.assert_frame_equal(again[cols], tail[cols])


def test_cli_features_parquet_and_csv(synth_world: Path, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "f.parquet"
    res = runner.invoke(app, ["features", str(synth_world), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out)
    assert list(table.columns[:7]) == [
        "order_id",
        "order_ts",
        "customer_id",
        "destination_country",
        "carrier_id",
        "mature",
        "label",
    ]
    assert set(FEATURE_SPECS) <= set(table.columns)
    csv = tmp_path / "f.csv"
    res = runner.invoke(
        app,
        ["features", str(synth_world), "--out", str(csv), "-q", "--label-window-days", "30"],
    )
    assert res.exit_code == 0, res.output
    table30 = pd.read_csv(csv)
    assert len(table30) == len(table)
    assert table30["mature"].sum() > table["mature"].sum()  # shorter window: more mature


def test_cli_features_errors(synth_world: Path, tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["features", str(synth_world), "--out", str(tmp_path / "f.txt")])
    assert res.exit_code == 1
    assert "error: --out must end in .parquet or .csv" in res.output
    res = runner.invoke(
        app, ["features", str(synth_world), "--out", str(tmp_path / "f.csv"), "--as-of", "soon"]
    )
    assert res.exit_code == 1
    assert "--as-of" in res.output
    assert "Traceback" not in res.output


def test_cli_as_of_makes_recent_orders_immature(synth_world: Path, tmp_path: Path):
    tables = load_tables(synth_world)
    t = tables.orders["order_ts"].quantile(0.5)
    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(
        app, ["features", str(synth_world), "--out", str(out), "-q", "--as-of", t.isoformat()]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out)
    late = table["order_ts"] > t - pd.Timedelta(days=90)
    assert not table.loc[late, "mature"].any()
    assert table.loc[~late, "mature"].all()


@pytest.mark.slow
def test_real_data_sets(shared_data: Path, tmp_path: Path):
    """Both real exports import and build (runs where ../shared/data exists)."""
    from returnrisk.importers import (
        OnlineRetailConfig,
        SuperstoreConfig,
        import_online_retail,
        import_superstore,
    )

    retail = shared_data / "online_retail" / "online_retail_II_2009_2010.parquet"
    store = shared_data / "global_superstore"
    import_online_retail(OnlineRetailConfig(files=(retail,), out=tmp_path / "or"))
    import_superstore(
        SuperstoreConfig(
            orders_csv=store / "Global_Superstore2.csv.zip",
            returns_csv=store / "Returns.csv",
            out=tmp_path / "ss",
        )
    )
    for name in ("or", "ss"):
        tables = load_tables(tmp_path / name)
        f = build_features(tables)
        assert len(f) == len(tables.orders), name
        assert f["mature"].sum() > 1000, name
        assert 0 < f["label"].mean() < 1, name
        assert f["customer_prior_orders"].max() > 0, name
        rates = [c for c in FEATURE_SPECS if "_rate" in c]
        assert f[rates].notna().all().all(), name


def test_synth_no_leakage_cut_at_t(synth_tables, synth_features):
    """Rebuild from what the merchant had at T: features of every order up to T are identical."""
    t = synth_features["order_ts"].quantile(0.6, interpolation="nearest")
    fr = synth_tables.as_dict()
    orders = fr["orders"].loc[fr["orders"]["order_ts"] <= t]
    ships = fr["shipments"].loc[fr["shipments"]["shipped_ts"] <= t].copy()
    ships.loc[ships["delivered_ts"] > t, "delivered_ts"] = pd.NaT
    cut = {
        **fr,
        "orders": orders,
        "order_lines": fr["order_lines"].loc[
            fr["order_lines"]["order_id"].isin(orders["order_id"])
        ],
        "after_sales_cases": fr["after_sales_cases"].loc[fr["after_sales_cases"]["opened_ts"] <= t],
        "shipments": ships,
    }
    rebuilt = build_features(coerce_tables(cut), as_of=t)
    before = synth_features.loc[synth_features["order_ts"] <= t].reset_index(drop=True)
    cols = [c for c in before.columns if c not in ("mature", "label", "first_case_ts")]
    assert len(rebuilt) == len(before) > 1000
    pd.testing.assert_frame_equal(rebuilt[cols], before[cols], check_exact=True)
