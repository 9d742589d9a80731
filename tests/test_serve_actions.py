"""``POST /v1/score?actions=none|flagged|all``: the what-if actions of ``score --actions``, from
the same decision rule (``serve/decisions.py``), on the fast path and the full path alike."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.contract import load_tables
from returnrisk.costs import ACTIONS, read_cost_file, resolve_costs
from returnrisk.features import build_features
from returnrisk.features.online import features_frame
from returnrisk.serve.app import (
    ScoreRequest,
    ServeConfig,
    create_app,
    online_order,
    orders_to_json,
    request_frames,
)
from returnrisk.serve.decisions import ACTION_COLUMNS, TABLE_COLUMNS, Decider, with_actions
from returnrisk.serve.policy import PolicyConfig
from returnrisk.serve.scoring import ScoreConfig, ScoringState, read_new_orders, validate_new

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's httpx notice
    from fastapi.testclient import TestClient

POLICY = PolicyConfig(flag_above=0.1)


@pytest.fixture(scope="module")
def state(synth_world: Path, registry) -> ScoringState:
    """The trained model of conftest's registry (with its case-type model)."""
    return ScoringState(load_tables(synth_world), registry[1])


@pytest.fixture(scope="module")
def new_raw(synth_world: Path) -> dict[str, pd.DataFrame]:
    return read_new_orders(synth_world / "new")


@pytest.fixture(scope="module")
def client(state: ScoringState):
    with TestClient(create_app(ServeConfig(policy=POLICY), state=state)) as c:
        yield c


def _body(raw: dict[str, pd.DataFrame]) -> dict:
    return json.loads(json.dumps(orders_to_json(raw)))


def _singles(raw: dict[str, pd.DataFrame]) -> list[dict]:
    body = _body(raw)
    return [{**body, "orders": [o]} for o in body["orders"]]


def _score_actions(state: ScoringState, body: dict, which: str):
    """What ``returnrisk score --actions`` computes for the orders of ``body``."""
    frames = request_frames(ScoreRequest.model_validate(body))
    result = state.score(frames, ScoreConfig(policy=POLICY))
    costs = resolve_costs(None, state.tables.after_sales_cases)
    return with_actions(state, frames, result, costs, which)


def _check_same(record: dict, results: pd.DataFrame, table: pd.DataFrame, which: str) -> None:
    row = results.set_index("order_id").loc[record["order_id"]]
    assert record["recommended_action"] == row["recommended_action"]
    want_carrier = row["recommended_carrier"]
    assert record["recommended_carrier"] == (None if pd.isna(want_carrier) else want_carrier)
    assert record["expected_saving"] == pytest.approx(row["expected_saving"], abs=1e-9)
    assert record["p_case_if"] == pytest.approx(row["p_case_if"], abs=1e-12)
    if which == "all":
        got = pd.DataFrame(record["actions"])
        want = table[table["order_id"] == record["order_id"]].reset_index(drop=True)
        assert list(got.columns) == [c for c in TABLE_COLUMNS if c != "order_id"]
        assert got["action"].tolist() == want["action"].tolist()
        assert got["carrier_id"].tolist() == want["carrier_id"].tolist()
        for c in got.columns[2:]:
            np.testing.assert_allclose(got[c], want[c].to_numpy(np.float64), rtol=0, atol=1e-9)


def test_fast_path_actions_equal_score_actions(client, state, new_raw) -> None:
    """One order at a time (the online store's what-if rows): the same recommendation and the
    same table as ``score --actions`` (``with_actions``) on that order."""

    def online_requests() -> float:
        key = 'returnrisk_score_requests_total{path="online"'
        text = client.get("/metrics").text
        return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(key))

    before, flagged = online_requests(), 0
    for body in _singles(new_raw):
        r = client.post("/v1/score?actions=all", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["actions"] == "all"
        (record,) = r.json()["results"]
        assert record["status"] == "scored"
        results, table = _score_actions(state, body, "all")
        _check_same(record, results, table, "all")
        assert {a["action"] for a in record["actions"]} >= {"ship", "hold_inspect", "cancel"}
        flagged += record["flagged"]
    assert flagged > 0  # some orders of the world are flagged at this threshold
    assert online_requests() == before + len(_singles(new_raw))  # all on the fast path


def _unusual_singles(raw: dict[str, pd.DataFrame]) -> list[dict]:
    """An order already DDP, and one by a carrier service the history never saw (its row in
    the request: a lane never seen, for the order as it is and changed to DDP)."""
    ddp, cold = _singles(raw)[:2]
    ddp = {**ddp, "orders": [{**ddp["orders"][0], "incoterm": "DDP"}]}
    k_new = {"carrier_id": "K-NEW", "carrier_name": "New Post", "service_level": "economy"}
    order = {**cold["orders"][0], "carrier_id": "K-NEW", "incoterm": "DDU"}
    return [ddp, {**cold, "orders": [order], "carriers": [k_new]}]


def test_online_what_if_rows_are_the_batch_rows(state, new_raw) -> None:
    """The online variants of an order (DDP, each switch of carrier: ``OnlineFeatures.variants``
    from the order's own row) are, bit for bit and every column, the rows built afresh for the
    order changed by hand: by the full online path (``order_features``) and by
    ``build_features``. Orders as sent, one already DDP, one on a lane never seen."""
    d = Decider.build(state.feature_history, state.risk_model, resolve_costs(None))
    checked = {"ship_ddp": 0, "switch_carrier": 0, "ddp_already": 0, "cold_lane": 0}
    for body in _singles(new_raw)[:6] + _unusual_singles(new_raw):
        new = online_order(ScoreRequest.model_validate(body))
        got = features_frame(d.online_variant_features(state.online, new))
        acts = d.online_variant_features(state.online, new)["action"]
        # the fast path hands score_one's row over as the base: the same variants
        one = state.score_one(new)
        assert one is not None
        given = features_frame(d.online_variant_features(state.online, new, one.features))
        pd.testing.assert_frame_equal(given, got)
        frames = request_frames(ScoreRequest.model_validate(body))
        v = validate_new(frames, state.history)
        o = v.orders
        as_of = max(state.as_of, o["order_ts"].max())
        checked["ddp_already"] += got["effective_incoterm"].iloc[0] == "DDP"
        checked["cold_lane"] += bool((got["lane_prior_orders"] == 0).any())
        for i, (action, carrier) in enumerate(zip(acts, got["carrier_id"], strict=True)):
            change = {"incoterm": "DDP"} if action == "ship_ddp" else {}
            if action == "switch_carrier":
                change = {"carrier_id": carrier}
            row = got.iloc[[i]].reset_index(drop=True)
            afresh = state.online.order_features(replace(new, order={**new.order, **change}))
            pd.testing.assert_frame_equal(row, features_frame(afresh), check_exact=True)
            orders = o.assign(**change)
            static = {k: df for k, df in v.static.items() if len(df)}
            want = build_features(
                {"orders": orders, "order_lines": v.order_lines, **static},
                order_ids=orders["order_id"].tolist(),
                as_of=as_of,
                history=state.feature_history,
            )
            pd.testing.assert_frame_equal(row, want[got.columns], check_exact=True)
            checked[action] = checked.get(action, 0) + 1
    assert checked["ship"] == 8
    assert checked["ship_ddp"] == 8 - checked["ddp_already"] >= 1  # every order not DDP
    assert checked["switch_carrier"] > 12  # the carriers of several orders
    assert checked["ddp_already"] >= 1
    assert checked["cold_lane"] >= 1


def test_an_orders_variants_are_one_batch_for_each_model(state, new_raw, monkeypatch) -> None:
    """The fast path's what-if of one order: every variant encoded in one matrix, one predict
    of the risk model and one of the case-type model (not one per variant), and no whole
    feature row built again (the variants come from the order's own row)."""
    from returnrisk.serve.decisions import online_action_fields

    d = Decider.build(state.feature_history, state.risk_model, resolve_costs(None))
    assert d.case_types is not None  # the registered model carries one
    body = _singles(new_raw)[0]
    new = online_order(ScoreRequest.model_validate(body))
    one = state.score_one(new)
    assert one is not None
    calls: dict[str, list[int]] = {"risk": [], "case_types": [], "rows": []}
    rm, ct = state.risk_model, d.case_types
    real_risk, real_ct = rm.predict_matrix, ct.predict_family_proba

    def risk(matrix):
        calls["risk"].append(len(matrix))
        return real_risk(matrix)

    def families(X):
        calls["case_types"].append(len(X["order_id"]))
        return real_ct(X)

    def whole_row(order):
        calls["rows"].append(1)
        raise AssertionError("a whole row built again")

    monkeypatch.setattr(rm, "predict_matrix", risk)
    monkeypatch.setattr(ct, "predict_family_proba", families)
    monkeypatch.setattr(state.online, "order_features", whole_row)
    fields = online_action_fields(d, state.online, new, True, "all", one.features)
    monkeypatch.undo()
    n_variants = len({(a["action"], a["carrier_id"]) for a in fields["actions"]
                      if a["action"] in ("ship", "ship_ddp", "switch_carrier")})  # fmt: skip
    assert n_variants >= 3
    assert calls == {"risk": [n_variants], "case_types": [n_variants], "rows": []}


def test_full_path_actions_equal_score_actions(client, state, new_raw) -> None:
    body = _body(new_raw)
    for which in ("flagged", "all"):
        r = client.post(f"/v1/score?actions={which}", json=body)
        assert r.status_code == 200, r.text
        results, table = _score_actions(state, body, which)
        records = r.json()["results"]
        assert len(records) == len(results)
        for record in records:
            if which == "flagged" and not record["flagged"]:
                assert all(record[c] is None for c in ACTION_COLUMNS)
                assert "actions" not in record
                continue
            _check_same(record, results, table, which)


def test_default_is_flagged_and_none_leaves_the_answer_as_it_was(client, new_raw) -> None:
    seen = {True: 0, False: 0}
    for body in _singles(new_raw):
        default = client.post("/v1/score", json=body).json()
        assert default["actions"] == "flagged"
        (rec,) = default["results"]
        seen[rec["flagged"]] += 1
        if rec["flagged"]:
            assert rec["recommended_action"] in ACTIONS
            assert rec["expected_saving"] >= 0
        else:  # nothing computed for an unflagged order: the fast path stays fast
            assert all(rec[c] is None for c in ACTION_COLUMNS)
        assert "actions" not in rec
        plain = client.post("/v1/score?actions=none", json=body).json()
        assert plain["actions"] == "none"
        (p,) = plain["results"]
        assert not set(ACTION_COLUMNS) & set(p)
        assert {k: rec[k] for k in p} == p  # the score itself does not change
    assert seen[True]
    assert seen[False]


def test_bad_actions_value_is_422_naming_the_parameter(client, new_raw) -> None:
    body = _singles(new_raw)[0]
    r = client.post("/v1/score?actions=some", json=body)
    assert r.status_code == 422
    out = r.json()
    assert out["errors"][0]["field"] == "actions"
    assert "actions" in out["detail"]
    assert "'none', 'flagged' or 'all'" in out["detail"]


def test_openapi_documents_actions(client) -> None:
    doc = client.get("/openapi.json").json()
    params = doc["paths"]["/v1/score"]["post"]["parameters"]
    (p,) = [p for p in params if p["name"] == "actions"]
    assert p["in"] == "query"
    assert p["schema"]["enum"] == ["none", "flagged", "all"]
    assert p["schema"]["default"] == "flagged"
    assert "not a causal guarantee" in p["description"]
    scored = doc["components"]["schemas"]["ScoredOut"]["properties"]
    assert {"recommended_action", "recommended_carrier", "expected_saving", "actions"} <= set(
        scored
    )
    assert "ActionOut" in doc["components"]["schemas"]


def test_the_service_uses_its_cost_file(state, new_raw, tmp_path: Path) -> None:
    """``serve --costs``: every action dearer than any saving -> every order is shipped as is."""
    f = tmp_path / "costs.yaml"
    f.write_text(
        "actions:\n" + "".join(f"  {a}: {{cost: 1000000}}\n" for a in ACTIONS if a != "ship"),
        encoding="utf-8",
    )
    cfg = ServeConfig(
        policy=PolicyConfig(flag_above=0.0), costs=read_cost_file(f), costs_source=str(f)
    )
    with TestClient(create_app(cfg, state=state)) as c:
        for body in [_body(new_raw), *_singles(new_raw)[:3]]:
            recs = c.post("/v1/score?actions=all", json=body).json()["results"]
            assert all(r["recommended_action"] == "ship" for r in recs)
            assert all(r["expected_saving"] == 0 for r in recs)
            costs = {a["action"]: a["action_cost"] for a in recs[0]["actions"]}
            assert costs["hold_inspect"] >= 1e6


def test_serve_refuses_a_bad_cost_file_before_loading(tmp_path: Path, synth_world: Path) -> None:
    from returnrisk.cli import app

    f = tmp_path / "c.yaml"
    f.write_text("actions: {ship_fast: {cost: 1}}\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["serve", "--data", str(synth_world), "--costs", str(f)])
    assert r.exit_code == 1
    assert str(f) in r.output
    assert "'ship_fast'" in r.output
    assert "Traceback" not in r.output


def test_an_unknown_query_parameter_is_422(client, new_raw) -> None:
    r = client.post("/v1/score?action=all", json=_singles(new_raw)[0])
    assert r.status_code == 422
    assert "unknown query parameter 'action'" in r.json()["detail"]
