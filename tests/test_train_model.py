"""RiskModel, metrics, gate logic and the registry round trip on a synthetic feature table."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from returnrisk.train import evaluate as ev
from returnrisk.train.model import ModelInputError, RiskModel
from returnrisk.train.registry import GateConfig, gate_decision

# mlflow.pyfunc emits this UserWarning from its own import (ANSI-coloured message).
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")


def feature_table(n: int = 6000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Time-sorted table with the documented columns and a known true probability."""
    rng = np.random.default_rng(seed)
    days = np.sort(rng.uniform(0, 300, n))
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(days, unit="D")
    x1 = rng.normal(size=n)
    x2 = rng.uniform(size=n)
    cat = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    effect = pd.Series(cat).map({"a": -0.8, "b": 0.0, "c": 0.5, "d": 1.2}).to_numpy()
    p = 1 / (1 + np.exp(-(-2.2 + 0.9 * x1 + effect + 0.8 * x2)))
    y = (rng.uniform(size=n) < p).astype(float)
    frame = pd.DataFrame(
        {
            "order_id": [f"o{i:06d}" for i in range(n)],
            "order_ts": ts,
            "mature": True,
            "label": y,
            "x1": x1,
            "x2": np.where(rng.uniform(size=n) < 0.1, np.nan, x2),
            "cat": pd.Series(np.where(rng.uniform(size=n) < 0.05, None, cat), dtype="str"),
        }
    )
    return frame, p


FEATURES = ["x1", "x2", "cat"]


def fitted(seed: int = 0, n: int = 6000) -> tuple[RiskModel, pd.DataFrame, np.ndarray]:
    df, p = feature_table(n)
    a, b = int(n * 0.6), int(n * 0.8)
    model = RiskModel({"min_data_in_leaf": 30, "num_threads": 1}, seed=seed).fit(
        df[FEATURES].iloc[:a], df["label"].iloc[:a], df[FEATURES].iloc[a:b], df["label"].iloc[a:b]
    )
    return model, df.iloc[b:], p[b:]


def test_fit_predict_is_calibrated_and_ranks_like_truth():
    model, test, p_true = fitted()
    proba = model.predict_case(test[FEATURES])
    assert proba.shape == (len(test),)
    assert np.all((proba >= 0) & (proba <= 1))
    y = test["label"].to_numpy()
    m = ev.binary_metrics(y, proba)
    truth = ev.binary_metrics(y, p_true)
    assert m["auc"] > truth["auc"] - 0.05
    assert abs(m["mean_pred"] - m["base_rate"]) < 0.03
    assert model.calibration_ in ("isotonic", "sigmoid")
    assert set(model.calibration_scores_) == {"isotonic", "sigmoid"}
    assert model.categorical_features_ == ["cat"]
    assert model.categories_["cat"] == ["a", "b", "c", "d"]


def test_same_data_and_seed_give_identical_model_and_scores():
    m1, test, _ = fitted(seed=3)
    m2, _, _ = fitted(seed=3)
    assert m1.booster_.model_to_string() == m2.booster_.model_to_string()
    np.testing.assert_array_equal(m1.predict_case(test[FEATURES]), m2.predict_case(test[FEATURES]))


def test_unseen_categories_are_counted_and_treated_as_missing():
    model, test, _ = fitted()
    X = test[FEATURES].head(20).copy()
    before = X.copy()
    X_unseen = X.copy()
    X_unseen.loc[X_unseen.index[:4], "cat"] = "never-seen"
    prepared, unseen = model.prepare(X_unseen)
    assert unseen == {"cat": 4}
    assert prepared["cat"].isna().sum() == X["cat"].isna().sum() + 4 - X["cat"].head(4).isna().sum()
    X_missing = X.copy()
    X_missing.loc[X_missing.index[:4], "cat"] = None
    np.testing.assert_array_equal(model.predict_case(X_unseen), model.predict_case(X_missing))
    pd.testing.assert_frame_equal(X, before)  # input untouched


def test_contributions_sum_to_raw_score():
    model, test, _ = fitted()
    X = test[FEATURES].head(50)
    contrib = model.contributions(X)
    assert list(contrib.columns) == [*FEATURES, "bias"]
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), model.raw_score(X), atol=1e-8)


def test_contributions_equal_shap_tree_explainer():
    """The reason codes use pred_contrib; it must be what shap.TreeExplainer computes."""
    shap = pytest.importorskip("shap")
    model, test, _ = fitted()
    X = test[FEATURES].head(40)
    prepared, _ = model.prepare(X)
    explainer = shap.TreeExplainer(model.booster_)
    with warnings.catch_warnings():  # shap notes a change of its own output format
        warnings.filterwarnings("ignore", "LightGBM binary classifier", UserWarning)
        values = explainer.shap_values(prepared)
    expected = np.asarray(values[-1] if isinstance(values, list) else values, dtype=np.float64)
    got = model.contributions(X)
    np.testing.assert_allclose(got[FEATURES].to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(got["bias"].to_numpy(), explainer.expected_value, atol=1e-6)


def test_bad_input_is_named():
    model, test, _ = fitted()
    with pytest.raises(ModelInputError, match="x2"):
        model.prepare(test[["x1", "cat"]])
    df, _ = feature_table(500)
    y = df["label"].to_numpy().copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match="1 row"):
        RiskModel().fit(df[FEATURES], y, df[FEATURES], df["label"])


def _with_unseen(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with 5 unseen categories and 5 more missing ones in ``cat``."""
    X = X.copy()
    X.loc[X.index[:5], "cat"] = "never-seen"
    X.loc[X.index[5:10], "cat"] = None
    return X


@pytest.mark.parametrize("cat_dtype", ["str", "object", "category"])
def test_encode_feeds_the_booster_exactly_what_prepare_does(cat_dtype):
    model, test, _ = fitted()
    X = _with_unseen(test[FEATURES].head(300)).astype({"cat": cat_dtype})
    prepared, unseen_prepare = model.prepare(X)
    matrix, unseen = model.encode(X)
    assert unseen == unseen_prepare
    assert unseen["cat"] == 5
    assert matrix.dtype == np.float64
    assert matrix.flags.c_contiguous
    assert matrix.shape == (len(X), len(FEATURES))
    booster = model.booster_
    np.testing.assert_array_equal(
        booster.predict(matrix, raw_score=True), booster.predict(prepared, raw_score=True)
    )
    np.testing.assert_array_equal(
        booster.predict(matrix, pred_contrib=True), booster.predict(prepared, pred_contrib=True)
    )
    # the public paths go through the matrix and agree with the prepared frame
    it = model.best_iteration_
    raw = booster.predict(prepared, raw_score=True, num_iteration=it)
    proba, unseen_predict = model.predict_with_unseen(X)
    np.testing.assert_array_equal(proba, np.clip(model.calibrator_.predict(raw), 0, 1))
    assert unseen_predict == unseen
    np.testing.assert_array_equal(model.predict_matrix(matrix), proba)
    contrib = model.contributions(X)
    np.testing.assert_array_equal(
        contrib.to_numpy(), booster.predict(prepared, pred_contrib=True, num_iteration=it)
    )
    assert contrib.index.equals(X.index)
    np.testing.assert_array_equal(model.contributions_matrix(matrix), contrib.to_numpy())


def test_encode_accepts_a_mapping_of_plain_values():
    model, test, _ = fitted()
    X = _with_unseen(test[FEATURES].head(12))
    X.loc[X.index[0], "x2"] = np.nan
    X.loc[X.index[11], "cat"] = model.categories_["cat"][1]
    for i in (0, 6, 11):  # unseen category + missing x2, missing category, known category
        row = X.iloc[[i]]
        cat = row["cat"].iloc[0]
        plain = {
            "x1": [float(row["x1"].iloc[0])],
            "x2": [None if pd.isna(row["x2"].iloc[0]) else float(row["x2"].iloc[0])],
            "cat": [None if pd.isna(cat) else str(cat)],
            "not_a_feature": ["ignored"],
        }
        got, unseen = model.encode(plain)
        expected, unseen_frame = model.encode(row)
        np.testing.assert_array_equal(got, expected)
        assert unseen == unseen_frame
        np.testing.assert_array_equal(
            model.predict_with_unseen(plain)[0], model.predict_with_unseen(row)[0]
        )
    # ndarrays / pandas arrays of several rows, non-str categories compared as str(value)
    columns = {
        "x1": X["x1"].to_numpy(),
        "x2": pd.array(X["x2"], dtype="Float64"),
        "cat": X["cat"].astype("object").to_numpy(),
    }
    np.testing.assert_array_equal(model.encode(columns)[0], model.encode(X)[0])
    as_ints = model.encode({"x1": [0.0, 0.0], "x2": [1, 2], "cat": [1, np.nan]})
    assert as_ints[1] == {"cat": 1}
    assert np.isnan(as_ints[0][:, 2]).all()


def test_pickled_model_predicts_the_same():
    model, test, _ = fitted()
    X = _with_unseen(test[FEATURES].head(50))
    proba, unseen = model.predict_with_unseen(X)  # builds the encoding cache
    assert "_encoding_cache" in vars(model)
    assert set(vars(model)) - set(model.__getstate__()) == {"_encoding_cache"}
    loaded = pickle.loads(pickle.dumps(model))
    assert "_encoding_cache" not in vars(loaded)  # like a model pickled before the cache existed
    proba_loaded, unseen_loaded = loaded.predict_with_unseen(X)
    np.testing.assert_array_equal(proba_loaded, proba)
    assert unseen_loaded == unseen
    np.testing.assert_array_equal(loaded.contributions(X), model.contributions(X))


def test_encode_bad_input_is_named():
    model, test, _ = fitted()
    X = test[FEATURES].head(3)
    plain = {c: X[c].tolist() for c in FEATURES}
    with pytest.raises(ModelInputError, match="x2"):
        model.encode({"x1": plain["x1"], "cat": plain["cat"]})
    with pytest.raises(ModelInputError, match="x2"):
        model.predict_with_unseen(X[["x1", "cat"]])
    with pytest.raises(ModelInputError, match="x1"):
        model.encode({**plain, "x1": ["1.5", "abc", None]})
    with pytest.raises(ModelInputError, match="x1"):
        model.encode(X.astype({"x1": "object"}).assign(x1=["1.5", "abc", None]))
    with pytest.raises(ModelInputError, match="cat"):
        model.encode({**plain, "cat": ["a", "b"]})
    with pytest.raises(ModelInputError, match="columns"):
        model.predict_matrix(np.zeros((2, len(FEATURES) + 1)))
    assert model.predict_with_unseen(X.iloc[:0])[0].shape == (0,)
    assert model.contributions_matrix(np.empty((0, len(FEATURES)))).shape == (0, 4)


def test_metrics_known_values():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=float)
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.9, 0.4])
    m = ev.binary_metrics(y, p)
    assert m["auc"] == pytest.approx(1.0)
    assert m["precision_at_10pct"] == 1.0  # top 1 of 10 is a case
    assert m["recall_at_10pct"] == 0.5
    assert m["lift_at_10pct"] == pytest.approx(5.0)
    # perfectly calibrated within equal-mass bins -> ECE 0; shifted by 0.1 -> 0.1
    yy = np.repeat([0.0, 1.0], 50)
    pp = np.repeat([0.0, 1.0], 50)
    assert ev.expected_calibration_error(yy, pp) == pytest.approx(0.0)
    assert ev.expected_calibration_error(yy, np.clip(pp + 0.1, 0, 1)) == pytest.approx(0.05)


def test_lookback_heuristic_uses_sku_and_lane_history():
    lines = pd.DataFrame(
        {
            "order_id": ["f1", "f2", "f3", "t1", "t2"],
            "sku_id": ["bad", "bad", "good", "bad", "good"],
        }
    )
    fit = pd.DataFrame(
        {
            "order_id": ["f1", "f2", "f3"],
            "destination_country": ["DE"] * 3,
            "carrier_id": ["c1", "c1", "c2"],
            "label": [1.0, 1.0, 0.0],
        }
    )
    score = pd.DataFrame(
        {"order_id": ["t1", "t2"], "destination_country": ["DE", "DE"], "carrier_id": ["c1", "c2"]}
    )
    s = ev.lookback_heuristic(lines, fit, score, prior_strength=0.0)
    np.testing.assert_allclose(s, [1.0, 0.0])


def test_gate_rules():
    good = {"auc": 0.75, "ap": 0.30, "ece": 0.01, "base_rate": 0.1}
    worse = {"auc": 0.70, "ap": 0.25, "ece": 0.01, "base_rate": 0.1}
    cfg = GateConfig()
    d = gate_decision(
        worse, good, challenger_version="2", champion_version="1", missing_features=(), config=cfg
    )
    assert not d.promote
    assert {c.name for c in d.checks if not c.passed} == {"average_precision", "roc_auc"}
    d = gate_decision(
        good, worse, challenger_version="2", champion_version="1", missing_features=(), config=cfg
    )
    assert d.promote
    d = gate_decision(
        good,
        worse,
        challenger_version="2",
        champion_version="1",
        missing_features=("lane_case_rate",),
        config=cfg,
    )
    assert not d.promote
    assert "lane_case_rate" in d.summary
    d = gate_decision(
        {**good, "ece": 0.08},
        None,
        challenger_version="1",
        champion_version=None,
        missing_features=(),
        config=cfg,
    )
    assert not d.promote
    assert "absolute" in d.summary
    d = gate_decision(
        good, None, challenger_version="1", champion_version=None, missing_features=(), config=cfg
    )
    assert d.promote


def test_registry_round_trip_promote_rollback(tracking_uri):
    import mlflow

    from returnrisk.train import registry

    registry.configure_tracking(tracking_uri)
    model, test, _ = fitted()
    X = test[FEATURES]
    mlflow.set_experiment("returnrisk-test")
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            mlflow.log_metric("test_auc", 0.7)
            versions.append(
                registry.log_and_register(model, X, version_tags={"data_window": '{"n_test": 3}'})
            )
    assert versions == ["1", "2"]
    assert registry.alias_version("challenger") == "2"
    assert registry.alias_version("champion") is None
    with pytest.raises(registry.RegistryError, match="no @champion"):
        registry.rollback()
    registry.promote("1")
    registry.promote("2")
    loaded = registry.load_model()
    assert loaded.version == "2"
    assert loaded.metrics["test_auc"] == 0.7
    assert loaded.data_window == {"n_test": 3}
    expected = model.predict_case(X)
    np.testing.assert_array_equal(loaded.risk_model.predict_case(X), expected)
    pyfunc = mlflow.pyfunc.load_model("models:/return-risk@champion")
    X_plain = X.astype({"cat": "object"})
    np.testing.assert_array_equal(pyfunc.predict(X_plain).to_numpy(), expected)
    X_new = X_plain.copy()
    X_new.loc[X_new.index[:2], "cat"] = "zz"
    pyfunc.predict(X_new)
    assert pyfunc.unwrap_python_model().last_unseen_ == {"cat": 2}
    assert registry.rollback() == ("2", "1")
    assert registry.alias_version("champion") == "1"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback()
    with pytest.raises(registry.RegistryError, match="no version 9"):
        registry.promote("9")


def test_tuning_resumes_its_study(tmp_path):
    from returnrisk.train.tune import TuneConfig, storage_for, tune

    df, _ = feature_table(3000)
    storage = storage_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert storage.endswith("mlflow-optuna.db")
    cfg = TuneConfig(
        n_trials=2,
        n_folds=2,
        seed=0,
        n_estimators=50,
        early_stopping_rounds=10,
        storage=storage,
        study_name="s1",
    )
    first = tune(df[FEATURES], df["label"].to_numpy(), ["cat"], cfg)
    assert first.n_trials == 2
    assert first.n_complete >= 1
    # "interrupted" after 2 of 3 trials: re-running only adds the missing one
    again = tune(df[FEATURES], df["label"].to_numpy(), ["cat"], replace(cfg, n_trials=3))
    assert again.n_trials == 3
    assert set(again.best_params) >= {"learning_rate", "num_leaves", "min_data_in_leaf"}


@pytest.mark.parametrize(("n", "k", "gap"), [(1000, 3, 0), (1003, 4, 25), (57, 2, 3)])
def test_time_folds_are_sklearn_time_series_split(n, k, gap):
    from sklearn.model_selection import TimeSeriesSplit

    from returnrisk.train.tune import time_folds

    folds = time_folds(n, k, gap)
    expected = list(TimeSeriesSplit(n_splits=k, gap=gap).split(np.empty((n, 1))))
    assert len(folds) == k
    for (tr, va), (etr, eva) in zip(folds, expected, strict=True):
        np.testing.assert_array_equal(np.arange(n)[tr], etr)
        np.testing.assert_array_equal(np.arange(n)[va], eva)
        assert tr.stop + gap == va.start  # time-ordered: training ends before validation
    assert [va.stop for _, va in folds][-1] == n
    assert all(a[1].stop == b[1].start for a, b in zip(folds, folds[1:], strict=False))


def test_risk_model_is_a_scikit_learn_estimator():
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import NotFittedError

    model, test, _ = fitted(seed=1)
    twin = clone(model)
    assert is_classifier(model)
    assert twin.get_params() == model.get_params()
    assert twin.get_params()["seed"] == 1
    assert not hasattr(twin, "booster_")
    assert hasattr(model, "booster_")
    with pytest.raises(NotFittedError):
        twin.predict_proba(test[FEATURES])
    with pytest.raises(NotFittedError):
        twin.encode(test[FEATURES])
    proba = model.predict_proba(test[FEATURES])
    assert proba.shape == (len(test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    p = model.predict_case(test[FEATURES])
    np.testing.assert_array_equal(proba[:, 1], p)
    np.testing.assert_array_equal(p, model.predict_matrix(model.encode(test[FEATURES])[0]))
    np.testing.assert_array_equal(model.predict(test[FEATURES]), (p >= 0.5).astype(float))
    assert list(model.classes_) == [0.0, 1.0]
    # the clone refits to the same model (deterministic), with the same validation slice
    df, _ = feature_table(6000)
    a, b = int(6000 * 0.6), int(6000 * 0.8)
    twin.fit(
        df[FEATURES].iloc[:a], df["label"].iloc[:a], df[FEATURES].iloc[a:b], df["label"].iloc[a:b]
    )
    assert twin.booster_.model_to_string() == model.booster_.model_to_string()
    # fit(X, y) alone: the last valid_fraction of the (time-sorted) rows calibrates, in order
    alone = RiskModel({"min_data_in_leaf": 30, "num_threads": 1}, seed=1, valid_fraction=0.25).fit(
        df[FEATURES].iloc[:b], df["label"].iloc[:b]
    )
    assert (alone.n_train_, alone.n_valid_) == (a, b - a)
    assert alone.booster_.model_to_string() == model.booster_.model_to_string()
    np.testing.assert_array_equal(alone.predict_case(test[FEATURES]), p)
    with pytest.raises(ValueError, match="both X_valid and y_valid"):
        RiskModel().fit(df[FEATURES], df["label"], df[FEATURES])
