"""Risk by case-type family: the families add up to P(case), and they are informative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnrisk.contract import load_tables
from returnrisk.costs import FAMILIES
from returnrisk.train.case_types import (
    CaseTypeModel,
    evaluate_families,
    family_risk,
    first_case_family,
    fit_case_types,
)
from returnrisk.train.model import RiskModel
from returnrisk.train.pipeline import SplitConfig, prepare_data, time_split


@pytest.fixture(scope="module")
def fitted(synth_world: Path):
    prepared = prepare_data(load_tables(synth_world))
    parts = time_split(prepared.features, SplitConfig())
    names, cats = prepared.feature_names, prepared.categorical
    tr, va, te = parts["train"], parts["valid"], parts["test"]
    risk = RiskModel({"num_threads": 1}, n_estimators=200, categorical_features=cats)
    risk.fit(tr[names], tr["label"].to_numpy(), va[names], va["label"].to_numpy())
    ct = fit_case_types(tr, va, prepared.tables, names, cats, num_threads=1)
    return prepared, te, risk, ct


def test_first_case_family_is_the_labelling_case() -> None:
    orders = pd.DataFrame({"order_id": ["a", "b", "c"]})
    ts = pd.to_datetime(["2024-01-05", "2024-01-02", "2024-01-02", "2024-01-03"], utc=True)
    cases = pd.DataFrame(
        {
            "case_id": ["k4", "k2", "k1", "k3"],
            "order_id": ["a", "a", "a", "b"],
            "opened_ts": ts,
            "case_type": ["return", "damaged", "duty_dispute", "wrong_item"],
        }
    )
    fam = first_case_family(orders, cases, ["c", "a", "b"])
    # a: two cases at the same time, the lower case_id (k1, duty_dispute) first
    assert list(fam.index) == ["c", "a", "b"]
    assert pd.isna(fam["c"])
    assert fam["a"] == "duties"
    assert fam["b"] == "product"


def test_family_probabilities_add_up_to_p_case(fitted) -> None:
    prepared, te, risk, ct = fitted
    names = prepared.feature_names
    given = ct.predict_family_proba(te[names])
    assert given.shape == (len(te), len(FAMILIES))
    np.testing.assert_allclose(given.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    p_case = risk.predict_case(te[names])
    fam = family_risk(p_case, given)
    assert list(fam.columns) == [f"p_{f}" for f in FAMILIES]
    np.testing.assert_allclose(fam.sum(axis=1).to_numpy(), p_case, rtol=1e-12, atol=1e-15)
    assert (fam.to_numpy() >= 0).all()


def test_the_matrix_path_predicts_what_the_frame_of_categoricals_does(fitted) -> None:
    """``predict_family_proba`` reads the float matrix LightGBM makes of ``_prepare``'s frame:
    the same numbers, for a frame, for a mapping of columns (the online rows), with unseen and
    missing categories."""
    prepared, te, _, ct = fitted
    names = prepared.feature_names
    X = te[names].head(300).copy()
    cat = next(c for c in names if c in ct.categories_)
    X[cat] = X[cat].astype("str").where(np.arange(len(X)) % 7 != 0, "never-seen")
    X.loc[X.index[1], cat] = None
    raw = ct.booster_.predict(ct._prepare(X), num_iteration=ct.best_iteration_)
    want = raw / raw.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(ct.predict_family_proba(X), want)
    cols = {c: X[c].to_numpy() if c not in ct.categories_ else X[c].tolist() for c in names}
    np.testing.assert_array_equal(ct.predict_family_proba(cols), want)


def test_families_are_informative_and_evaluated(fitted) -> None:
    prepared, te, risk, ct = fitted
    names = prepared.feature_names
    p = family_risk(risk.predict_case(te[names]), ct.predict_family_proba(te[names]))
    fam = first_case_family(
        prepared.tables.orders, prepared.tables.after_sales_cases, te["order_id"]
    )
    fam = fam.where(te["label"].to_numpy() == 1)  # only the case inside the label window counts
    rep = evaluate_families(fam.to_numpy(dtype=object), p)
    assert set(rep) == set(FAMILIES)
    assert sum(r["n_pos"] for r in rep.values()) == te["label"].sum()
    # duty disputes follow DDU above the de minimis: the model must see that
    assert rep["duties"]["auc"] > 0.75
    assert all(0 <= r["ece"] < 0.1 for r in rep.values())


def test_bad_family_and_unfitted_model_are_refused() -> None:
    X = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown case-type family"):
        CaseTypeModel().fit(X, ["logistics", "shoes"])
    with pytest.raises(RuntimeError, match="not fitted"):
        CaseTypeModel().predict_family_proba(X)


def test_the_registered_model_carries_its_case_type_model(tracking_uri, synth_world: Path):
    """Same model, same version: the training code fits the family model into the RiskModel."""
    from returnrisk.train.pipeline import TrainConfig, train
    from returnrisk.train.registry import configure_tracking, load_model

    configure_tracking(tracking_uri)
    cfg = TrainConfig(data=synth_world, n_estimators=40, early_stopping_rounds=10,
                      baselines=False, figures=False, tracking_uri=tracking_uri)  # fmt: skip
    result = train(cfg)
    loaded = load_model(f"models:/return-risk/{result.version}")
    ct = loaded.risk_model.case_types_
    te = result.test
    given = ct.predict_family_proba(te)
    np.testing.assert_allclose(given, result.model.case_types_.predict_family_proba(te))
    p = family_risk(loaded.risk_model.predict_case(te), given)
    np.testing.assert_allclose(p.sum(axis=1), result.test_proba, rtol=1e-12)


def test_positive_orders_without_cases_are_left_out_and_counted(synth_world: Path) -> None:
    prepared = prepare_data(load_tables(synth_world))
    parts = time_split(prepared.features, SplitConfig())
    tr, va = parts["train"], parts["valid"]
    names, cats = prepared.feature_names, prepared.categorical
    # labels from elsewhere: a few negative orders called positive (they have no case)
    fake = tr.index[tr["label"] == 0][:7]
    tr2 = tr.copy()
    tr2.loc[fake, "label"] = 1.0
    ct = fit_case_types(tr2, va, prepared.tables, names, cats, num_threads=1)
    assert ct.n_without_family_ == 7
    assert fit_case_types(tr2.loc[fake], va.iloc[0:0], prepared.tables, names, cats) is None


def test_a_few_rows_are_predicted_on_one_thread(fitted, monkeypatch) -> None:
    """The service's what-if variants (a handful of rows): one thread, as the risk model
    predicts them (waking LightGBM's thread team costs more than the rows on a busy host)."""
    prepared, te, _, ct = fitted
    names = prepared.feature_names
    calls: list[dict] = []
    real = ct.booster_.predict

    def spy(matrix, **kw):
        calls.append({"rows": len(matrix), **kw})
        return real(matrix, **kw)

    monkeypatch.setattr(ct.booster_, "predict", spy)
    few = ct.predict_family_proba(te[names].head(8))
    many = ct.predict_family_proba(pd.concat([te[names]] * (1 + 200 // len(te))))
    assert calls[0]["rows"] == 8
    assert calls[0]["num_threads"] == 1
    assert "num_threads" not in calls[1]  # a batch keeps the model's threads
    monkeypatch.undo()
    np.testing.assert_array_equal(few, ct.predict_family_proba(te[names].head(8)))
    assert len(many) > 128
