"""The service watches its own requests (serve/watch.py): rolling-window gauges (score PSI
against the model's reference, unseen-category share, flag rate, refusals by reason), their
settings, reload, and the Prometheus alert rules in deploy/prometheus/ that use them."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from returnrisk.serve.app import ServeConfig, create_app, orders_to_json
from returnrisk.serve.policy import PolicyConfig
from returnrisk.serve.scoring import ScoringState, read_new_orders
from returnrisk.serve.watch import Watch, model_reference, reason_key
from returnrisk.train.reference import numeric_shares, quantile_edges

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette prefers httpx2 over httpx
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def _rule(name: str) -> dict:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("alert") == name)


def _threshold(name: str) -> float:
    """The number after ``>`` in the alert's expression."""
    return float(_rule(name)["expr"].rsplit(">", 1)[1])


def _reference(sample: np.ndarray) -> dict:
    """A monitoring reference's score part, as train/reference.py builds it."""
    edges = quantile_edges(sample, 10)
    return {
        "score": {"edges": edges, "shares": numeric_shares(sample, edges).tolist()},
        "expected_case_rate": float(np.mean(sample)),
    }


def _gauge(client: TestClient, name: str, **labels: str) -> float | None:
    """The value of one series of ``/metrics`` (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


# ---------------------------------------------------------------------------------------------
# the window, on its own


def test_score_psi_crosses_the_alert_threshold_only_when_scores_shift() -> None:
    rng = np.random.default_rng(3)
    ref = _reference(rng.beta(2, 12, 20_000))
    limit = _threshold("ReturnRiskScoreDrift")
    assert limit == 0.2  # the monitor's default score_psi
    like, shifted = Watch(1000, 300, ref, []), Watch(1000, 300, ref, [])
    for p in rng.beta(2, 12, 600):
        like.record_one(float(p), False, {})
    for p in rng.beta(4, 12, 600):
        shifted.record_one(float(p), False, {})
    assert like.snapshot()["score_psi"] < limit / 4
    assert shifted.snapshot()["score_psi"] > limit


def test_window_size_and_min_orders_are_honoured() -> None:
    ref = _reference(np.linspace(0.01, 0.5, 1000))
    w = Watch(50, 20, ref, ["channel"])
    for i in range(19):
        w.record_one(0.1, i % 2 == 0, {"channel": 0})
    s = w.snapshot()
    assert s["scored"] == 19
    assert all(math.isnan(s[k]) for k in ("score_psi", "flag_rate", "mean_probability"))
    assert math.isnan(s["unseen_share"]["channel"])
    w.record_one(0.1, False, {"channel": 1})
    s = w.snapshot()
    assert not math.isnan(s["score_psi"])
    assert s["flag_rate"] == pytest.approx(10 / 20)
    assert s["unseen_share"]["channel"] == pytest.approx(1 / 20)
    for _ in range(70):  # the ring wraps: only the last 50 orders count
        w.record_one(0.3, True, {"channel": 0})
    s = w.snapshot()
    assert s["scored"] == 50
    assert s["flag_rate"] == 1.0
    assert s["unseen_share"]["channel"] == 0.0
    assert s["mean_probability"] == pytest.approx(0.3)


def test_batches_wrap_and_keep_their_tail() -> None:
    w = Watch(10, 1, None, ["channel"])
    n = 25
    results = pd.DataFrame(
        {
            "status": ["scored"] * n,
            "probability": np.arange(n) / 100,
            "flagged": pd.array([False] * 20 + [True] * 5, dtype="boolean"),
            "refused_reason": pd.Series([None] * n, dtype="str"),
        }
    )
    assert w.record_batch(results, {"channel": 0}) == {}
    s = w.snapshot()
    assert s["scored"] == 10
    assert s["mean_probability"] == pytest.approx(np.arange(15, 25).mean() / 100)
    assert s["flag_rate"] == pytest.approx(0.5)
    assert math.isnan(s["score_psi"])  # no reference


def test_refusal_reasons_are_bounded_labels() -> None:
    assert reason_key("orders.destination_country: unknown destination_country 'ZZ' (x)") == (
        "orders.destination_country"
    )
    assert reason_key("order_lines: order has no lines") == "order_lines"
    w = Watch(100, 1, None, [])
    results = pd.DataFrame(
        {
            "status": ["refused", "scored", "refused", "refused"],
            "probability": [np.nan, 0.2, np.nan, np.nan],
            "flagged": pd.array([pd.NA, True, pd.NA, pd.NA], dtype="boolean"),
            "refused_reason": [
                "order_lines.quantity: >= 1; orders.order_value: >= 0",
                None,
                "order_lines.quantity: >= 1",
                "order_lines.quantity: >= 1; order_lines.quantity: integer",
            ],
        }
    )
    counts = w.record_batch(results, {})
    assert counts == {"order_lines.quantity": 3, "orders.order_value": 1}
    s = w.snapshot()
    assert s["refused_share"] == {"order_lines.quantity": 0.75, "orders.order_value": 0.25}
    assert s["refused"] == 3
    assert s["scored"] == 1
    assert s["flag_rate"] == 1.0


def test_recording_is_thread_safe() -> None:
    w = Watch(10_000, 1, None, ["channel"])

    def work() -> None:
        for _ in range(2000):
            w.record_one(0.5, True, {"channel": 1})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = w.snapshot()
    assert s["scored"] == 8000
    assert s["flag_rate"] == 1.0
    assert s["unseen_share"]["channel"] == 1.0


def test_a_model_without_reference_logs_and_reports_no_psi(caplog) -> None:
    class Old:  # a model trained before monitoring existed: its run has no reference
        version, run_id = "3", ""

    with caplog.at_level(logging.WARNING, logger="returnrisk.serve"):
        assert model_reference(Old()) is None
    assert "model version 3" in caplog.text
    assert "retrain" in caplog.text
    w = Watch(10, 1, None, [])
    w.record_one(0.2, False, {})
    assert math.isnan(w.snapshot()["score_psi"])


# ---------------------------------------------------------------------------------------------
# the service


@pytest.fixture(scope="module")
def state(synth_world: Path, registry) -> ScoringState:
    from returnrisk.contract import load_tables

    return ScoringState(load_tables(synth_world), registry[1])


@pytest.fixture(scope="module")
def body(synth_world: Path) -> dict:
    return json.loads(json.dumps(orders_to_json(read_new_orders(synth_world / "new"))))


def _client(state: ScoringState, references: list, **settings) -> TestClient:
    """An app whose loader serves ``state`` with the next of ``references`` as its model's."""
    app = create_app(
        ServeConfig(policy=PolicyConfig(flag_above=0.2), **settings), loader=lambda: state
    )
    refs = iter(references)
    app.state.service.reference_of = lambda model: next(refs)
    return TestClient(app)


def _ready(c: TestClient) -> None:
    deadline = time.monotonic() + 60
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.02)


def _send_singles(c: TestClient, body: dict, n: int, **changes) -> list[dict]:
    """``n`` one-order requests (the fast path), cycling over the new orders."""
    out = []
    orders = body["orders"]
    for i in range(n):
        order = {**orders[i % len(orders)], **changes}
        resp = c.post("/v1/score", json={**body, "orders": [order]})
        assert resp.status_code == 200, resp.text
        out.append(resp.json()["results"][0])
    return out


def test_service_score_psi_vs_the_reference(state, body) -> None:
    """The same requests: below the alert threshold against a reference like their scores,
    above it against one the scores have shifted from."""
    limit = _threshold("ReturnRiskScoreDrift")
    with TestClient(create_app(ServeConfig(), state=state)) as probe:  # the scores to expect
        p = np.array([r["probability"] for r in _send_singles(probe, body, len(body["orders"]))])
    like = _reference(np.tile(p, 50))
    shifted = _reference(np.tile(p, 50) * 0.5)
    n = 120
    with _client(state, [like], watch_window=1000, watch_min_orders=n) as c:
        _ready(c)
        _send_singles(c, body, n - 1)
        assert math.isnan(_gauge(c, "returnrisk_watch_score_psi"))  # below min_orders
        _send_singles(c, body, 1)
        assert _gauge(c, "returnrisk_watch_orders", status="scored") == n
        assert _gauge(c, "returnrisk_watch_score_psi") < limit
        assert _gauge(c, "returnrisk_watch_reference_loaded") == 1.0
    with _client(state, [shifted], watch_window=1000, watch_min_orders=n) as c:
        _ready(c)
        _send_singles(c, body, n)
        assert _gauge(c, "returnrisk_watch_score_psi") > limit


def test_service_flag_rate_and_unseen_share(state, body) -> None:
    n = 40
    with _client(state, [None], watch_window=200, watch_min_orders=n) as c:
        _ready(c)
        plain = _send_singles(c, body, n // 2)
        new = _send_singles(c, body, n // 2, channel="brand-new-marketplace")
        flagged = sum(r["flagged"] for r in plain + new)
        assert _gauge(c, "returnrisk_watch_flag_rate") == pytest.approx(flagged / n)
        assert _gauge(c, "returnrisk_watch_unseen_share", feature="channel") == pytest.approx(0.5)
        limit = _threshold("ReturnRiskUnseenCategories")
        assert _gauge(c, "returnrisk_watch_unseen_share", feature="channel") > limit
        assert math.isnan(_gauge(c, "returnrisk_watch_score_psi"))  # no reference
        assert _gauge(c, "returnrisk_watch_reference_loaded") == 0.0


def test_service_counts_refusals_by_reason(state, body) -> None:
    orders = [dict(o) for o in body["orders"]]
    assert len(orders) >= 4
    orders[0]["destination_country"] = "ZZ"
    orders[1]["order_value"] = -1.0
    orders[2]["destination_country"] = "ZZ"
    with _client(state, [None], watch_window=100, watch_min_orders=1) as c:
        _ready(c)
        resp = c.post("/v1/score", json={**body, "orders": orders})
        assert resp.status_code == 200, resp.text
        assert resp.json()["n_refused"] == 3, resp.text
        key = "returnrisk_orders_refused_by_reason_total"
        assert _gauge(c, key, reason="orders.destination_country") == 2
        assert _gauge(c, key, reason="orders.order_value") == 1
        share = _gauge(c, "returnrisk_watch_refused_share", reason="orders.destination_country")
        assert share == pytest.approx(2 / len(orders))
        assert _gauge(c, "returnrisk_watch_orders", status="refused") == 3


def test_reload_swaps_the_reference_and_starts_a_new_window(state, body) -> None:
    with TestClient(create_app(ServeConfig(), state=state)) as probe:
        p = np.array([r["probability"] for r in _send_singles(probe, body, len(body["orders"]))])
    first, second = _reference(np.tile(p, 50)), _reference(np.tile(p, 50) * 3.0)
    with _client(state, [first, second], watch_window=500, watch_min_orders=30) as c:
        _ready(c)
        _send_singles(c, body, 30)
        before = _gauge(c, "returnrisk_watch_score_psi")
        assert _gauge(c, "returnrisk_watch_reference_mean_probability") == pytest.approx(p.mean())
        assert c.post("/v1/reload").status_code == 200
        assert _gauge(c, "returnrisk_watch_orders", status="scored") == 0
        assert _gauge(c, "returnrisk_watch_reference_mean_probability") == pytest.approx(
            3 * p.mean()
        )
        _send_singles(c, body, 30)
        after = _gauge(c, "returnrisk_watch_score_psi")
        assert before < _threshold("ReturnRiskScoreDrift") < after


def test_the_served_model_reference_is_read_from_its_run(state, registry) -> None:
    from returnrisk.train.reference import load_reference

    ref = load_reference(registry[1].run_id)
    with TestClient(create_app(ServeConfig(), state=state)) as c:
        assert _gauge(c, "returnrisk_watch_reference_loaded") == 1.0
        assert _gauge(c, "returnrisk_watch_reference_mean_probability") == pytest.approx(
            ref["expected_case_rate"]
        )
        assert _gauge(c, "returnrisk_watch_window_size") == ServeConfig().watch_window


def test_watch_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="watch_window"):
        ServeConfig(watch_window=0)
    with pytest.raises(ValueError, match="could never report"):
        ServeConfig(watch_window=100, watch_min_orders=101)


# ---------------------------------------------------------------------------------------------
# the alert rules


def test_alert_rules_use_the_service_gauges() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "ReturnRiskScoreDrift",
        "ReturnRiskUnseenCategories",
        "ReturnRiskFlagRateHigh",
        "ReturnRiskRefusals",
    }
    for r in rules:
        assert "returnrisk_watch_" in r["expr"], r["alert"]
        assert r.get("for"), r["alert"]
    from returnrisk.serve.monitor import DEFAULT_THRESHOLDS

    assert _threshold("ReturnRiskScoreDrift") == DEFAULT_THRESHOLDS["score_psi"]
    assert _threshold("ReturnRiskUnseenCategories") == DEFAULT_THRESHOLDS["unseen_share"]
    assert (
        _threshold("ReturnRiskExpectedCaseRateShift")
        == (DEFAULT_THRESHOLDS["expected_case_rate_change"])
    )


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian: apt-get install prometheus); CI installs it",
)
def test_promtool_checks_and_tests_the_rules() -> None:
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS_TEST)]):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_serve_refuses_a_window_that_could_never_report(tmp_path) -> None:
    from typer.testing import CliRunner

    from returnrisk.cli import app as cli

    args = ["serve", "--data", str(tmp_path), "--watch-window", "10", "--watch-min-orders", "20"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "--watch-min-orders 20 > --watch-window 10" in result.output
    assert "Traceback" not in result.output


def test_a_served_model_without_reference_scores_and_says_so(state, body, caplog) -> None:
    """A model trained before monitoring existed: one log line at start, no PSI, no crash."""
    import copy
    import dataclasses

    old = copy.copy(state)
    old.model = dataclasses.replace(state.model, run_id="")
    with caplog.at_level(logging.WARNING, logger="returnrisk.serve"):
        app = create_app(ServeConfig(watch_window=50, watch_min_orders=5), state=old)
    assert "returnrisk_watch_score_psi is NaN" in caplog.text
    assert "retrain" in caplog.text
    with TestClient(app) as c:
        _send_singles(c, body, 5)
        assert _gauge(c, "returnrisk_watch_orders", status="scored") == 5
        assert math.isnan(_gauge(c, "returnrisk_watch_score_psi"))
        assert _gauge(c, "returnrisk_watch_reference_loaded") == 0.0
        assert not math.isnan(_gauge(c, "returnrisk_watch_flag_rate"))
