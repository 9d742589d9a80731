"""SKU risk review: attribution maths, aggregation, page, route, command and browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from returnrisk.serve.report_skus import (
    ReportConfig,
    ReportError,
    aggregate,
    build_sku_report,
    family_contributions,
    line_shares,
    order_outcomes,
    parse_window,
    render_html,
    wilson_interval,
)

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# ---------------------------------------------------------------------------------------------
# small pure helpers


@pytest.mark.parametrize(
    ("text", "days"), [("28d", 28), ("4w", 28), ("7", 7), (" 90D ", 90), (14, 14)]
)
def test_parse_window(text: str | int, days: int) -> None:
    assert parse_window(text) == days


@pytest.mark.parametrize("text", ["", "0d", "-3d", "28 days", "1.5w", "d", "99999d", "600w"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ReportError, match="window"):
        parse_window(text)


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(np.array([0, 5, 10, 0]), np.array([10, 10, 10, 0]))
    # reference values (Wilson 1927; e.g. statsmodels proportion_confint(method="wilson"))
    np.testing.assert_allclose(lo[:3], [0.0, 0.236593, 0.722467], atol=1e-6)
    np.testing.assert_allclose(hi[:3], [0.277533, 0.763407, 1.0], atol=1e-6)
    assert np.isnan(lo[3])
    assert np.isnan(hi[3])
    # more orders, same rate -> narrower interval
    lo2, hi2 = wilson_interval(np.array([50]), np.array([100]))
    assert hi2[0] - lo2[0] < hi[1] - lo[1]


def test_line_shares_split_by_value_then_quantity() -> None:
    lines = pd.DataFrame(
        {
            "order_id": ["a", "a", "a", "b", "b", "c"],
            "sku_id": ["x", "y", "x", "x", "z", "y"],
            "quantity": [1, 1, 2, 1, 3, 1],
            "unit_price": [10.0, 30.0, 5.0, 0.0, 0.0, 7.0],
        }
    )
    before = lines.copy()
    s = line_shares(lines).set_index(["order_id", "sku_id"])
    pd.testing.assert_frame_equal(lines, before)  # input untouched
    # order a: x worth 10 + 2*5 = 20, y worth 30 -> 0.4 / 0.6; duplicate lines merged
    assert s.loc[("a", "x"), "share"] == pytest.approx(0.4)
    assert s.loc[("a", "y"), "share"] == pytest.approx(0.6)
    assert s.loc[("a", "x"), "quantity"] == 3
    # order b is worth 0: split by quantity 1 : 3
    assert s.loc[("b", "x"), "share"] == pytest.approx(0.25)
    assert s.loc[("b", "z"), "share"] == pytest.approx(0.75)
    assert s.loc[("c", "y"), "share"] == pytest.approx(1.0)
    np.testing.assert_allclose(s.groupby(level="order_id")["share"].sum(), 1.0)


def test_order_outcomes_label_and_maturity() -> None:
    t0 = pd.Timestamp("2025-01-01", tz="UTC")
    orders = pd.DataFrame(
        {"order_id": ["a", "b", "c", "d"], "order_ts": [t0, t0, t0, t0 + pd.Timedelta(days=50)]}
    )
    cases = pd.DataFrame(
        {
            "order_id": ["a", "b", "d"],
            "opened_ts": [t0 + pd.Timedelta(days=10), t0 + pd.Timedelta(days=95), t0],
        }
    )
    out = order_outcomes(orders, cases, as_of=t0 + pd.Timedelta(days=100), label_window_days=90)
    assert out["mature"].tolist() == [True, True, True, False]
    assert out["label"].iloc[:3].tolist() == [1.0, 0.0, 0.0]  # b's case came after 90 days
    assert np.isnan(out["label"].iloc[3])


def test_family_contributions_sum_by_family() -> None:
    contrib = pd.DataFrame({"f1": [1.0, 2.0], "f2": [0.5, -1.0], "f3": [3.0, 0.0], "bias": 9.0})
    fam = family_contributions(
        contrib, {"f1": "price", "f2": "listing", "f3": "price"}, ["listing", "price"]
    )
    assert fam.columns.tolist() == ["listing", "price"]
    np.testing.assert_allclose(fam.to_numpy(), [[0.5, 4.0], [-1.0, 2.0]])


def test_aggregate_exact_numbers() -> None:
    window = pd.DataFrame(
        {
            "order_id": ["o1", "o1", "o2", "o3"],
            "sku_id": ["x", "y", "x", "y"],
            "share": [0.25, 0.75, 1.0, 1.0],
            "p": [0.4, 0.4, 0.1, 0.2],
            "value": [10.0, 30.0, 5.0, 8.0],
            "quantity": [1.0, 3.0, 1.0, 2.0],
            "listing": [1.0, 1.0, -1.0, 0.0],
        }
    )
    previous = pd.DataFrame({"order_id": ["q1", "q2"], "sku_id": ["x", "x"], "p": [0.3, 0.1]})
    mature = pd.DataFrame(
        {
            "order_id": ["m1", "m2", "m3", "m4"],
            "sku_id": ["x", "x", "x", "z"],
            "label": [1.0, 0, 0, 1],
        }
    )
    out = aggregate(window, previous, mature, ["sku_id"], ["listing"], min_orders_for_rate=2)
    x = out.set_index("sku_id").loc["x"]
    y = out.set_index("sku_id").loc["y"]
    assert x["expected_cases"] == pytest.approx(0.25 * 0.4 + 0.1)
    assert y["expected_cases"] == pytest.approx(0.75 * 0.4 + 0.2)
    assert out["sku_id"].tolist() == ["y", "x"]  # ranked by expected cases
    assert out["rank"].tolist() == [1, 2]
    assert x["orders"] == 2
    assert x["units"] == 2
    assert x["sales"] == pytest.approx(15.0)
    assert x["predicted_rate"] == pytest.approx(0.25)
    assert x["prev_orders"] == 2
    assert x["prev_predicted_rate"] == pytest.approx(0.2)
    assert x["orders_trend"] == pytest.approx(0.0)
    assert x["risk_trend"] == pytest.approx(0.05)
    assert x["mature_orders"] == 3
    assert x["mature_cases"] == 1
    assert x["actual_rate"] == pytest.approx(1 / 3)
    lo, hi = wilson_interval(np.array([1]), np.array([3]))
    assert x["actual_lo"] == pytest.approx(lo[0])
    assert x["actual_hi"] == pytest.approx(hi[0])
    assert y["mature_orders"] == 0
    assert np.isnan(y["actual_rate"])
    assert np.isnan(y["orders_trend"])  # no orders before: no trend, not +inf
    # drivers: share-weighted mean of the family contribution
    assert x["driver_listing"] == pytest.approx((0.25 * 1.0 + 1.0 * -1.0) / 1.25)
    assert y["main_drivers"] == "Listing content"
    assert y["drivers_detail"].startswith("Listing content +0.")
    assert x["main_drivers"] == "no strong driver"
    assert "z" not in set(out["sku_id"])  # not sold in the window


def test_report_config_validates() -> None:
    with pytest.raises(ReportError, match="window_days"):
        ReportConfig(window_days=0)


# ---------------------------------------------------------------------------------------------
# on a synthetic world with a real (small) model


@pytest.fixture(scope="module")
def world(synth_world: Path):
    """(tables, loaded model, features) for the synthetic world; model trained on mature orders."""
    from returnrisk.contract import load_tables
    from returnrisk.features import FEATURE_SPECS, build_features
    from returnrisk.train.model import RiskModel
    from returnrisk.train.registry import LoadedModel

    tables = load_tables(synth_world)
    feats = build_features(tables)
    mature = feats.loc[feats["mature"]]
    names = list(FEATURE_SPECS)
    cut = int(len(mature) * 0.8)
    model = RiskModel(n_estimators=150, early_stopping_rounds=30, seed=0).fit(
        mature[names].iloc[:cut],
        mature["label"].iloc[:cut],
        mature[names].iloc[cut:],
        mature["label"].iloc[cut:],
    )
    loaded = LoadedModel(
        risk_model=model,
        uri="models:/return-risk@champion",
        version="7",
        run_id="testrun",
        metrics={"test_roc_auc": 0.5},
        data_window={"train_end": str(mature["order_ts"].iloc[cut - 1])},
    )
    return tables, loaded, feats


@pytest.fixture(scope="module")
def report(world):
    tables, loaded, _ = world
    return build_sku_report(tables, loaded, window_days=28)


def test_report_conserves_expected_cases(world, report) -> None:
    tables, loaded, feats = world
    m = report.meta
    end = tables.orders["order_ts"].max()
    recent = feats.loc[feats["order_ts"] > end - pd.Timedelta(days=28)]
    p = loaded.risk_model.predict_case(recent[loaded.risk_model.feature_names_])
    assert m["n_window_orders"] == len(recent)
    assert m["expected_cases"] == pytest.approx(p.sum())
    # every view splits the same total: SKUs (by value share), categories, countries, carriers
    for frame in (report.skus, report.by_category, report.by_country, report.by_carrier):
        assert frame["expected_cases"].sum() == pytest.approx(p.sum(), rel=1e-9)
    assert report.by_country["orders"].sum() == len(recent)
    assert report.by_carrier["orders"].sum() == len(recent)
    assert report.skus["expected_cases"].is_monotonic_decreasing
    assert report.skus["rank"].tolist() == list(range(1, len(report.skus) + 1))


def test_report_sku_counts_match_an_independent_count(world, report) -> None:
    tables, _, feats = world
    end = tables.orders["order_ts"].max()
    recent_ids = set(feats.loc[feats["order_ts"] > end - pd.Timedelta(days=28), "order_id"])
    lines = tables.order_lines.loc[tables.order_lines["order_id"].isin(recent_ids)]
    expected = lines.drop_duplicates(["order_id", "sku_id"]).groupby("sku_id").size()
    got = report.skus.set_index("sku_id")["orders"]
    pd.testing.assert_series_equal(
        got.sort_index(), expected.sort_index(), check_names=False, check_dtype=False
    )


def test_report_actual_rates_use_the_feature_label(world, report) -> None:
    """Actual case rates come from the same label definition as training (build_features)."""
    tables, _, feats = world
    outcomes = order_outcomes(tables.orders, tables.after_sales_cases, as_of=tables.as_of())
    merged = feats[["order_id", "mature", "label"]].merge(outcomes, on="order_id")
    assert (merged["mature_x"] == merged["mature_y"]).all()
    both = merged.loc[merged["mature_x"]]
    np.testing.assert_array_equal(both["label_x"].to_numpy(), both["label_y"].to_numpy())
    sk = report.skus
    has = sk["mature_orders"] > 0
    assert has.any()
    np.testing.assert_allclose(
        sk.loc[has, "actual_rate"], sk.loc[has, "mature_cases"] / sk.loc[has, "mature_orders"]
    )
    assert (sk.loc[has, "actual_lo"] <= sk.loc[has, "actual_rate"]).all()
    assert (sk.loc[has, "actual_rate"] <= sk.loc[has, "actual_hi"]).all()


def test_report_drivers_add_up_to_the_shap_total(world, report) -> None:
    """Per SKU, the family drivers add up to the share-weighted SHAP total (raw score - bias)."""
    tables, loaded, feats = world
    rm = loaded.risk_model
    end = tables.orders["order_ts"].max()
    recent = feats.loc[feats["order_ts"] > end - pd.Timedelta(days=28)]
    contrib = rm.contributions(recent[rm.feature_names_])
    total = contrib.drop(columns="bias").sum(axis=1).to_numpy()
    shares = line_shares(tables.order_lines)
    pairs = shares.merge(
        pd.DataFrame({"order_id": recent["order_id"].to_numpy(), "t": total}), on="order_id"
    )
    pairs["w"] = pairs["t"] * pairs["share"]
    g = pairs.groupby("sku_id")
    want = (g["w"].sum() / g["share"].sum()).sort_index()
    drivers = report.skus.set_index("sku_id")[[f"driver_{f}" for f in report.families]]
    np.testing.assert_allclose(
        drivers.sum(axis=1).sort_index().to_numpy(), want.to_numpy(), atol=1e-9
    )
    assert set(report.global_drivers["family"]) == set(report.families)
    assert report.global_drivers["weight"].sum() == pytest.approx(1.0)


def test_report_ranks_truly_risky_skus_high(synth_world: Path, world) -> None:
    """Against the synthetic truth: per SKU, the model's expected cases track the expected cases
    from the true probabilities the generator drew, better than order volume alone does."""
    tables, loaded, _ = world
    rep = build_sku_report(tables, loaded, window_days=90)
    truth = pd.read_parquet(synth_world / "truth.parquet")
    end = tables.orders["order_ts"].max()
    recent = tables.orders.loc[tables.orders["order_ts"] > end - pd.Timedelta(days=90)]
    pairs = line_shares(tables.order_lines).merge(recent[["order_id"]], on="order_id")
    pairs = pairs.merge(truth[["order_id", "p_case"]], on="order_id")
    true_expected = (pairs["p_case"] * pairs["share"]).groupby(pairs["sku_id"]).sum()
    true_rate = pairs.groupby("sku_id")["p_case"].mean()
    sk = rep.skus.set_index("sku_id")
    busy = sk.index[sk["orders"] >= 3]
    assert len(busy) >= 40
    rho = sk.loc[busy, "expected_cases"].corr(true_expected.loc[busy], method="spearman")
    rho_volume = sk.loc[busy, "orders"].corr(true_expected.loc[busy], method="spearman")
    assert rho > 0.7, rho
    assert rho > rho_volume + 0.05, (rho, rho_volume)
    rho_rate = sk.loc[busy, "predicted_rate"].corr(true_rate.loc[busy], method="spearman")
    assert rho_rate > 0.4, rho_rate


def test_report_does_not_mutate_tables(world) -> None:
    tables, loaded, _ = world
    before = {k: v.copy() for k, v in tables.as_dict().items()}
    build_sku_report(tables, loaded, window_days=14)
    for name, frame in tables.as_dict().items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)


def test_report_window_without_orders_is_a_clear_error(world) -> None:
    tables, loaded, _ = world
    early = tables.orders["order_ts"].min() - pd.Timedelta(days=400)
    with pytest.raises(ReportError, match="orders: no order placed before"):
        build_sku_report(tables, loaded, as_of=early)


def test_render_html_is_self_contained_and_deterministic(report) -> None:
    page = render_html(report)
    assert page == render_html(report)  # same report -> same bytes (figures included)
    assert page.startswith("<!DOCTYPE html>")
    # nothing fetched from anywhere: no external src/href, no @import, no fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert "fetch(" not in page
    assert page.count('src="data:image/png;base64,') == 4
    for sku in report.skus["sku_id"].head(10):
        assert f">{sku}<" in page
    assert "model <b>7</b>" in page
    data = json.loads(re.search(r'id="sku-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["rows"]) == len(report.skus)
    assert data["cols"][:3] == ["rank", "rate_rank", "sku_id"]
    assert data["rows"][0][2] == report.skus["sku_id"].iloc[0]


HOSTILE = '<!--<script>"x</script><script>alert(1)</script>\u2028\u2029&amp;'
FORMULA = '=HYPERLINK("http://example.invalid","click")'


def _hostile(report):
    """The report with a page-breaking brand on the first SKU and a spreadsheet formula as the
    supplier of the first two SKUs (strings a seller's catalogue export can contain)."""
    import dataclasses

    skus = report.skus.copy()
    skus["brand"] = skus["brand"].astype(object)
    skus["supplier_id"] = skus["supplier_id"].astype(object)
    skus.loc[skus.index[0], "brand"] = HOSTILE
    skus.loc[skus.index[:2], "supplier_id"] = FORMULA
    return dataclasses.replace(report, skus=skus)


def test_embedded_data_is_safe_for_any_string(report) -> None:
    page = render_html(_hostile(report))
    blocks = re.findall(r'<script type="application/json" id="sku-data">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    block = blocks[0]
    assert not set(block) & {"<", ">", "&", "\u2028", "\u2029"}
    data = json.loads(block)
    brand = data["cols"].index("brand")
    assert data["rows"][0][brand] == HOSTILE
    assert data["rows"][0][data["cols"].index("supplier_id")] == FORMULA
    # the visible table escapes it too: the hostile text never appears raw in the page
    assert HOSTILE not in page
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the template's autoescape
    assert page.count("<script") == 2  # the data block and the page's own script


def test_report_measures_lift_and_calibration_as_training_does() -> None:
    """One definition of top-10 % lift and of the calibration bins: train.evaluate's."""
    from returnrisk.serve.report_aggregate import _eval_metrics, calibration_table, lift_table
    from returnrisk.train.evaluate import binary_metrics, reliability_table, top_k_metrics

    rng = np.random.default_rng(3)
    for n in (97, 250, 1_001):
        p = rng.random(n).round(1) * 0.5  # many ties, as a calibrated model's scores have
        y = (rng.random(n) < p).astype("float64")
        expected = top_k_metrics(y, p)["lift_at_10pct"]
        assert _eval_metrics(p, y)["top10_lift"] == pytest.approx(expected, rel=1e-12)
        lift = lift_table(p, y)
        assert lift["lift"].iloc[0] == pytest.approx(expected, rel=1e-12)
        assert lift["n"].sum() == n
        assert lift["cases_caught"].iloc[-1] == pytest.approx(1.0)
        cal = calibration_table(p, y)
        rel = reliability_table(y, p)
        np.testing.assert_array_equal(cal["n"], rel["n"])
        np.testing.assert_allclose(cal["predicted"], rel["mean_predicted"], rtol=1e-12)
        np.testing.assert_allclose(cal["observed"], rel["observed_rate"], rtol=1e-12)
        assert (cal["observed_lo"] <= cal["observed"]).all()
        assert (cal["observed"] <= cal["observed_hi"]).all()
        m = binary_metrics(y, p)
        assert _eval_metrics(p, y)["roc_auc"] == m["auc"]
        assert _eval_metrics(p, y)["brier"] == m["brier"]


def _get(app, *urls: str, headers: dict[str, str] | None = None) -> list:
    """GET each URL in order through the ASGI app (httpx transport, no server, no network)."""
    import asyncio

    import httpx

    async def run() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.get(u, headers=headers) for u in urls]

    return asyncio.run(run())


def test_route_serves_the_page(world) -> None:
    from fastapi import FastAPI

    from returnrisk.serve.report_route import router

    tables, loaded, _ = world
    app = FastAPI()
    app.include_router(router)
    (empty,) = _get(app, "/report/skus")
    assert empty.status_code == 503  # no scoring state yet
    app.state.service = SimpleNamespace(state=SimpleNamespace(tables=tables, model=loaded))
    url = "/report/skus?window=4w"
    r, again, bad = _get(app, url, url, "/report/skus?window=soon")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "SKU after-sales risk review" in r.text
    assert "Orders of the last 28 days" in r.text
    assert again.text == r.text  # cached, same page
    assert bad.status_code == 422
    assert "window" in bad.json()["detail"]


def test_window_out_of_range_is_a_422_naming_the_parameter(world) -> None:
    from returnrisk.serve.app import ServeConfig, create_app
    from returnrisk.serve.scoring import ScoringState

    tables, loaded, _ = world
    app = create_app(ServeConfig(), state=ScoringState(tables, loaded))
    (r,) = _get(app, "/report/skus?window=64000d")
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("window must be at most")


def test_cli_window_out_of_range_is_one_line(synth_world: Path) -> None:
    from typer.testing import CliRunner

    from returnrisk.cli import app

    res = CliRunner().invoke(app, ["report", "skus", str(synth_world), "--window", "99999d", "-q"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        "error: --window must be at most 3660 days, got '99999d'"
    ]


def _score_body(synth_world: Path) -> dict:
    from returnrisk.serve.app import orders_to_json
    from returnrisk.serve.scoring import read_new_orders

    body = orders_to_json(read_new_orders(synth_world / "new"))
    return {**body, "orders": body["orders"][:1]}


def test_report_renders_once_at_a_time_and_scoring_goes_on(world, synth_world, monkeypatch):
    """Four report windows and three requests for one page at once: each page is rendered once,
    never two at a time, off the event loop -- score requests answer while a page renders."""
    import asyncio
    import threading
    import time

    import httpx

    from returnrisk.serve import report_skus as rs
    from returnrisk.serve.app import ServeConfig, create_app
    from returnrisk.serve.scoring import ScoringState

    tables, loaded, _ = world
    app = create_app(ServeConfig(), state=ScoringState(tables, loaded))
    gauge = {"now": 0, "max": 0, "renders": 0}
    lock = threading.Lock()
    render_s = 0.6

    def slow_build(tables, loaded, window_days=None, **kw):
        with lock:
            gauge["now"] += 1
            gauge["max"] = max(gauge["max"], gauge["now"])
            gauge["renders"] += 1
        time.sleep(render_s)  # a worker thread: the event loop is free meanwhile
        with lock:
            gauge["now"] -= 1
        return window_days

    monkeypatch.setattr(rs, "build_sku_report", slow_build)
    monkeypatch.setattr(rs, "render_html", lambda days: f"<html>{days} days</html>")
    body = _score_body(synth_world)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            windows = ["7d", "14d", "21d", "28d", "28d", "4w"]
            reports = [asyncio.create_task(c.get(f"/report/skus?window={w}")) for w in windows]
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            scores = [await c.post("/v1/score", json=body) for _ in range(5)]
            score_s = time.perf_counter() - t0
            pending = sum(not t.done() for t in reports)
            return [await t for t in reports], scores, score_s, pending

    reports, scores, score_s, pending = asyncio.run(run())
    assert all(r.status_code == 200 for r in reports), [r.text for r in reports]
    assert [r.text for r in reports] == [f"<html>{d} days</html>" for d in (7, 14, 21, 28, 28, 28)]
    assert gauge["renders"] == 4  # 28d asked three times, rendered once
    assert gauge["max"] == 1  # one render at a time
    assert all(r.status_code == 200 for r in scores)
    assert pending >= 3  # the score requests were answered while reports were still rendering
    assert score_s < render_s  # and none of them waited for a render
    again = asyncio.run(_aget(app, "/report/skus?window=7d"))
    assert again.status_code == 200
    assert gauge["renders"] == 4


async def _aget(app, url: str):
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.get(url)


# ---------------------------------------------------------------------------------------------
# the command, against a real MLflow registry


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*type hint is inferred as AnyType:UserWarning")
def test_cli_writes_the_report(world, synth_world: Path, tracking_uri: str, tmp_path: Path) -> None:
    import mlflow
    from typer.testing import CliRunner

    from returnrisk.cli import app
    from returnrisk.train.registry import CHAMPION, configure_tracking, log_and_register

    _, loaded, feats = world
    rm = loaded.risk_model
    configure_tracking(tracking_uri)  # this process; the command resolves $MLFLOW_TRACKING_URI
    mlflow.set_experiment("report-test")  # MLflow's active experiment is process-global too
    with mlflow.start_run():
        mlflow.log_metric("test_roc_auc", 0.61)
        log_and_register(rm, feats[rm.feature_names_].head(5), alias=CHAMPION)
    out = tmp_path / "out" / "report.html"
    runner = CliRunner()
    res = runner.invoke(app, ["report", "skus", str(synth_world), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert "models:/return-risk@champion" in page
    assert "test_roc_auc" in page
    bad = runner.invoke(app, ["report", "skus", str(synth_world), "--window", "x", "-q"])
    assert bad.exit_code == 1
    assert "error: --window" in bad.output
    missing = runner.invoke(
        app, ["report", "skus", str(synth_world), "--model", "models:/return-risk@nope", "-q"]
    )
    assert missing.exit_code == 1
    assert "cannot load model" in missing.output
    assert "Traceback" not in missing.output


# ---------------------------------------------------------------------------------------------
# in a real browser


def _visible_col(page, n: int, col: int) -> list[str]:
    """The first n visible rows' values in column col (data-v, else the text)."""
    return page.eval_on_selector_all(
        "#sku-table tbody tr",
        f"rs => rs.filter(r => r.style.display !== 'none').slice(0, {n})"
        f".map(r => r.cells[{col}].getAttribute('data-v')"
        f" || r.cells[{col}].textContent.trim())",
    )


def _check_render_and_sort(page, skus: pd.DataFrame) -> None:
    """Renders in the report's order with the expected top SKUs; sorts by predicted rate."""
    assert page.locator("#sku-table tbody tr").count() == len(skus)
    assert _visible_col(page, 5, 1) == skus["sku_id"].head(5).tolist()
    assert page.inner_text("#sku-count") == f"{len(skus)} of {len(skus)} SKUs shown"
    # sort by predicted case rate (first click: highest first), then the other way
    header = page.locator("#sku-table thead th", has_text="Predicted case rate")
    header.click()
    top_rate = skus.sort_values(["predicted_rate"], ascending=False, kind="mergesort")
    assert _visible_col(page, 3, 1) == top_rate["sku_id"].head(3).tolist()
    header.click()
    low_rate = skus.sort_values(["predicted_rate"], ascending=True, kind="mergesort")
    assert _visible_col(page, 1, 1) == low_rate["sku_id"].head(1).tolist()


def _check_filters(page, skus: pd.DataFrame, category: str) -> None:
    """Filter by category, then by text; both filters cleared at the end."""
    page.select_option("#sku-category", category)
    n_cat = int((skus["category"] == category).sum())
    assert page.inner_text("#sku-count") == f"{n_cat} of {len(skus)} SKUs shown"
    shown = page.eval_on_selector_all(
        "#sku-table tbody tr",
        "rs => rs.filter(r => r.style.display !== 'none').map(r => r.cells[2].textContent)",
    )
    assert len(shown) == n_cat
    assert set(shown) == {category}
    page.select_option("#sku-category", "")
    target = skus["sku_id"].iloc[2]
    page.fill("#sku-filter", target)
    assert target in _visible_col(page, 50, 1)
    visible = page.eval_on_selector_all(
        "#sku-table tbody tr",
        "rs => rs.filter(r => r.style.display !== 'none').map(r => r.textContent)",
    )
    assert visible
    assert all(target.lower() in v.lower() for v in visible)
    page.fill("#sku-filter", "")


def _export_csv(page, path: Path) -> pd.DataFrame:
    with page.expect_download() as info:
        page.click("#sku-export")
    info.value.save_as(path)
    return pd.read_csv(path)


def _check_csv_export(page, skus: pd.DataFrame, category: str, tmp_path: Path) -> None:
    """CSV export of what is shown; formula cells neutralised as serve/csvsafe.py does."""
    csv_path = tmp_path / "export.csv"
    page.select_option("#sku-category", category)
    exported = _export_csv(page, csv_path)
    assert len(exported) == int((skus["category"] == category).sum())
    assert set(exported["category"]) == {category}
    assert {"sku_id", "expected_cases", "actual_rate", "actual_lo"} <= set(exported.columns)
    # numbers stay numbers
    page.select_option("#sku-category", "")
    exported = _export_csv(page, csv_path)
    assert len(exported) == len(skus)
    by_sku = exported.set_index("sku_id")
    first_two = skus["sku_id"].head(2).tolist()
    assert by_sku.loc[first_two, "supplier_id"].tolist() == ["'" + FORMULA] * 2
    assert by_sku.loc[first_two[0], "brand"] == HOSTILE
    assert exported["expected_cases"].dtype == np.float64
    assert not exported["supplier_id"].astype(str).str.match(r"^[=+\-@]").any()
    page.select_option("#sku-category", category)


@pytest.mark.browser
def test_report_in_headless_chromium(report, tmp_path: Path) -> None:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    page_file = tmp_path / "sku_report.html"
    report = _hostile(report)  # a page-breaking brand and a formula: the page still works
    page_file.write_text(render_html(report), encoding="utf-8")
    skus = report.skus
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1440, "height": 1000}, accept_downloads=True
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())

            _check_render_and_sort(page, skus)
            category = skus["category"].iloc[0]
            _check_filters(page, skus, category)
            _check_csv_export(page, skus, category, tmp_path)

            # back to the default view for the screenshot
            page.select_option("#sku-category", "")
            page.locator("#sku-table thead th", has_text="Expected cases").click()
            assert _visible_col(page, 5, 1) == skus["sku_id"].head(5).tolist()
            page.screenshot(path=str(ARTIFACTS / "sku_report.png"), full_page=False)
            page.screenshot(path=str(ARTIFACTS / "sku_report_full.png"), full_page=True)
            assert not errors, errors
            assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests
            context.close()
        finally:
            browser.close()
    assert (ARTIFACTS / "sku_report.png").stat().st_size > 10_000


def test_service_app_serves_the_report_behind_the_api_key(world) -> None:
    """The serve engineer's app includes this router, with the API key when one is set."""
    from returnrisk.serve.app import ServeConfig, create_app
    from returnrisk.serve.scoring import ScoringState

    tables, loaded, _ = world
    app = create_app(ServeConfig(api_key="s3cret"), state=ScoringState(tables, loaded))
    (denied,) = _get(app, "/report/skus")
    assert denied.status_code == 401
    (ok,) = _get(app, "/report/skus", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert f"model <b>{loaded.version}</b>" in ok.text


def test_render_caps_the_table_for_big_catalogues(report) -> None:
    import dataclasses

    small = dataclasses.replace(report, meta={**report.meta, "table_max_skus": 5})
    page = render_html(small)
    data = json.loads(re.search(r'id="sku-data">(.*?)</script>', page, re.S).group(1))
    assert [r[2] for r in data["rows"]] == report.skus["sku_id"].head(5).tolist()
    assert page.count("<tr data-i=") >= 5
    body = re.search(r'<table id="sku-table".*?</table>', page, re.S).group(0)
    assert body.count("<tr data-i=") == 5
    assert f"Showing the top 5 of {len(report.skus):,} SKUs by expected cases." in page


def test_report_as_of_in_the_past_sees_only_what_was_known(world) -> None:
    """With an earlier as_of, later orders and later cases do not exist for the report."""
    tables, loaded, _ = world
    as_of = tables.orders["order_ts"].max() - pd.Timedelta(days=120)
    rep = build_sku_report(tables, loaded, window_days=28, as_of=as_of)
    assert rep.meta["window_end"] <= as_of
    kept = tables.orders.loc[tables.orders["order_ts"] <= as_of]
    past = tables.replace(
        orders=kept,
        order_lines=tables.order_lines.loc[tables.order_lines["order_id"].isin(kept["order_id"])],
        after_sales_cases=tables.after_sales_cases.loc[
            tables.after_sales_cases["opened_ts"] <= as_of
        ],
    )
    truncated = build_sku_report(past, loaded, window_days=28, as_of=as_of)
    cols = ["sku_id", "orders", "expected_cases", "mature_orders", "mature_cases", "actual_rate"]
    pd.testing.assert_frame_equal(rep.skus[cols], truncated.skus[cols])
