"""Rolling-origin evaluation and the feature-family ablation (train/rolling.py) on the tiny
synthetic world: windows, no row of a test window (nor after its start) in any fit, summaries
from the per-window numbers, the ablation's columns, the LR's features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from returnrisk.train.pipeline import TrainConfig, TrainDataError

FAST = TrainConfig(seed=0, num_threads=1, n_estimators=60, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def prepared(synth_world: Path):
    from returnrisk.contract import load_tables
    from returnrisk.train.pipeline import prepare_data

    return prepare_data(load_tables(synth_world))


def _index(X: pd.DataFrame | None) -> list[Any]:
    return [] if X is None else list(X.index)


class Spy:
    """Records the rows (feature-table index) and columns every fitter is given."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        from returnrisk.train import case_types, evaluate, model

        self.calls: list[dict[str, Any]] = []
        risk_fit, ct_fit = model.RiskModel.fit, case_types.CaseTypeModel.fit
        lr = evaluate.logistic_baseline
        spy = self

        def risk(self_: Any, X: pd.DataFrame, y: Any, Xv: Any = None, yv: Any = None) -> Any:
            spy.calls.append(
                {"who": "risk", "rows": [*X.index, *_index(Xv)], "columns": list(X.columns)}
            )
            return risk_fit(self_, X, y, Xv, yv)

        def ct(self_: Any, X: pd.DataFrame, f: Any, Xv: Any = None, fv: Any = None) -> Any:
            spy.calls.append({"who": "case_types", "rows": [*X.index, *_index(Xv)]})
            return ct_fit(self_, X, f, Xv, fv)

        def logreg(X_fit: pd.DataFrame, y: Any, X_score: Any, cats: Any, **kw: Any) -> Any:
            spy.calls.append({"who": "logreg", "rows": list(X_fit.index)})
            return lr(X_fit, y, X_score, cats, **kw)

        mp.setattr(model.RiskModel, "fit", risk)
        mp.setattr(case_types.CaseTypeModel, "fit", ct)
        mp.setattr(evaluate, "logistic_baseline", logreg)


@pytest.fixture(scope="module")
def rolled(prepared, synth_world: Path):
    from returnrisk.train.rolling import RollingConfig, rolling_evaluation

    truth = pd.read_parquet(synth_world / "truth.parquet")
    before = pd.util.hash_pandas_object(prepared.features).sum(), list(prepared.feature_names)
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        result = rolling_evaluation(prepared, RollingConfig(n_windows=3), FAST, truth=truth)
    after = pd.util.hash_pandas_object(prepared.features).sum(), list(prepared.feature_names)
    assert before == after  # the prepared data is not changed
    return result, spy.calls


def test_windows_are_consecutive_disjoint_and_after_their_fitting_rows(prepared) -> None:
    from returnrisk.train.rolling import RollingConfig, rolling_windows

    f = prepared.features
    mature = f[f["mature"]]
    for gap in (0, 10):
        splits = rolling_windows(f, RollingConfig(n_windows=4, window_days=20, gap_days=gap))
        assert [s.window for s in splits] == [0, 1, 2, 3]
        day = pd.Timedelta(days=1)
        assert splits[-1].test_end == mature["order_ts"].max().floor("D") + day
        seen: set[Any] = set()
        for a, b in zip(splits, splits[1:], strict=False):
            assert a.test_end == b.test_start  # consecutive
        for s in splits:
            assert s.test_end - s.test_start == pd.Timedelta(days=20)
            te, tr, va = (s.parts[k] for k in ("test", "train", "valid"))
            assert not seen & set(te.index)  # non-overlapping
            seen |= set(te.index)
            # every mature order of the window is in its test slice, and only those
            inside = mature[
                (mature["order_ts"] >= s.test_start) & (mature["order_ts"] < s.test_end)
            ]
            assert set(te.index) == set(inside.index)
            assert tr["order_ts"].max() < va["order_ts"].min()
            assert va["order_ts"].max() < s.test_start - pd.Timedelta(days=gap)
            # the fitting rows are all the mature orders before the gap
            before = mature[mature["order_ts"] < s.test_start - pd.Timedelta(days=gap)]
            assert set(tr.index) | set(va.index) == set(before.index)


def test_no_fit_sees_a_row_of_its_test_window_or_after(rolled, prepared) -> None:
    result, calls = rolled
    ts = prepared.features["order_ts"]
    w = result.windows
    assert len(w) == 3
    per_window = [calls[i : i + 3] for i in range(0, len(calls), 3)]
    assert len(per_window) == 3
    for (_, row), fits in zip(w.iterrows(), per_window, strict=True):
        assert {c["who"] for c in fits} == {"risk", "case_types", "logreg"}
        for call in fits:
            assert ts.loc[call["rows"]].max() < row["test_start"], call["who"]
        risk = next(c for c in fits if c["who"] == "risk")
        assert len(risk["rows"]) == row["n_train"] + row["n_valid"]


def test_a_leaked_row_is_refused(prepared) -> None:
    from returnrisk.train.pipeline import check_time_order, fit_parts
    from returnrisk.train.rolling import RollingConfig, rolling_windows

    s = rolling_windows(prepared.features, RollingConfig())[-1]
    check_time_order(s.parts)  # the windows' own slices pass
    for into in ("train", "valid"):
        leaked = dict(s.parts)
        leaked[into] = pd.concat([s.parts[into], s.parts["test"].iloc[[0]]])
        with pytest.raises(TrainDataError, match=f"1 {into} order"):
            check_time_order(leaked)
        with pytest.raises(TrainDataError, match="strictly before"):
            fit_parts(prepared, leaked, FAST)


def test_summary_is_mean_and_std_of_the_windows(rolled) -> None:
    from returnrisk.train.rolling import summarize

    result, _ = rolled
    m, s = result.metrics, result.summary.set_index("score")
    assert set(m["score"]) == {"model", "base_rate", "lookback", "logreg", "truth"}
    for score, g in m.groupby("score"):
        for k in ("auc", "ap", "ece"):
            assert s.loc[score, f"{k}_mean"] == pytest.approx(np.mean(g[k]))
            assert s.loc[score, f"{k}_std"] == pytest.approx(np.std(g[k], ddof=1))
    assert (s["n_windows"] == 3).all()
    frame = pd.DataFrame({"k": ["a", "a", "b"], "x": [1.0, 3.0, 5.0]})
    out = summarize(frame, ["k"], ["x"]).set_index("k")
    assert out.loc["a", "x_mean"] == 2.0
    assert out.loc["a", "x_std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert np.isnan(out.loc["b", "x_std"])


def test_families_and_slices_are_reported_per_window(rolled) -> None:
    from returnrisk.costs import FAMILIES

    result, _ = rolled
    fam = result.families
    assert set(fam["family"]) == set(FAMILIES)
    model = fam[fam["score"] == "model"]
    assert len(model) == 3 * len(FAMILIES)
    # the families' positives are the test cases of each window
    pos = model.groupby("window")["n_pos"].sum()
    n_cases = result.metrics.query("score == 'model'").set_index("window")["base_rate"]
    n_test = result.windows.set_index("window")["n_test"]
    np.testing.assert_allclose(pos, (n_cases * n_test).round())
    assert {"customer", "region", "channel", "category"} <= set(result.slices["slice"])
    assert set(result.slices["window"]) == {0, 1, 2}


def test_logreg_has_exactly_the_model_features(rolled, prepared) -> None:
    result, _ = rolled
    for lr, model in zip(result.logreg_features, result.model_features, strict=True):
        assert model == prepared.feature_names
        assert sorted(lr) == sorted(model)  # numerics first, then categoricals
        assert len(set(lr)) == len(lr)


def test_a_new_feature_column_reaches_the_model_and_the_logreg(prepared) -> None:
    from returnrisk.train.pipeline import fit_parts
    from returnrisk.train.rolling import RollingConfig, feature_groups, rolling_windows

    rng = np.random.default_rng(0)
    f = prepared.features.assign(zz_new=rng.normal(size=len(prepared.features)))
    grown = replace(prepared, features=f, feature_names=[*prepared.feature_names, "zz_new"])
    s = rolling_windows(f, RollingConfig())[-1]
    res = fit_parts(grown, s.parts, replace(FAST, case_types=False))
    assert res.model.feature_names_[-1] == "zz_new"
    assert sorted(res.logreg_features) == sorted(res.model.feature_names_)
    assert feature_groups(grown.feature_names)["zz_new"] == ["zz_new"]  # no spec: own group


def test_feature_groups_follow_the_specs_and_explicit_groups_are_checked(prepared) -> None:
    from returnrisk.features import FEATURE_SPECS
    from returnrisk.features.specs import FeatureSpec
    from returnrisk.train.rolling import feature_groups

    names = prepared.feature_names
    groups = feature_groups(names)
    assert sorted(c for cols in groups.values() for c in cols) == sorted(names)
    for g, cols in groups.items():
        assert cols == [c for c in names if FEATURE_SPECS[c].family == g]
    specs = {**FEATURE_SPECS, "x_new": FeatureSpec("x_new", "numeric", "brand_new", "test")}
    assert feature_groups([*names, "x_new"], specs=specs)["brand_new"] == ["x_new"]
    explicit = feature_groups(names, {"hist": ["lane_case_rate", "customer_case_rate"]})
    assert explicit == {"hist": ["lane_case_rate", "customer_case_rate"]}
    with pytest.raises(ValueError, match="not model features: \\['nope'\\]"):
        feature_groups(names, {"bad": ["lane_case_rate", "nope"]})


def test_ablation_drops_exactly_each_familys_columns(prepared) -> None:
    from returnrisk.features import FEATURE_SPECS
    from returnrisk.train.rolling import AblationConfig, RollingConfig, ablation

    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        res = ablation(prepared, RollingConfig(), FAST, AblationConfig(windows=1))
    fits = [c["columns"] for c in spy.calls if c["who"] == "risk"]
    names = prepared.feature_names
    families = list(dict.fromkeys(FEATURE_SPECS[c].family for c in names))
    assert fits[0] == names  # the full model first
    assert len(fits) == 1 + len(families)
    for fam, cols in zip(families, fits[1:], strict=True):
        assert cols == [c for c in names if FEATURE_SPECS[c].family != fam], fam
    assert {c["who"] for c in spy.calls} == {"risk"}  # no baselines, no case-type model
    pw = res.per_window
    assert list(pw["group"]) == families
    np.testing.assert_allclose(pw["delta_auc"], pw["auc"] - pw["auc_full"])
    assert set(res.summary["group"]) == set(families)
    assert res.summary["delta_auc_mean"].is_monotonic_increasing


def test_each_fitting_slice_tunes_its_own_study(prepared, tracking_uri) -> None:
    """A study resumed by name must have been tuned on the same rows and columns: else a later
    window (or a fit after `train --tune-trials` on the same data, whose fitting rows run into
    the rolling windows) would reuse trials chosen on other rows."""
    from returnrisk.train.pipeline import fit_parts
    from returnrisk.train.rolling import RollingConfig, rolling_windows, without_features

    cfg = replace(FAST, tune_trials=1, baselines=False, case_types=False, tracking_uri=tracking_uri)
    a, b = rolling_windows(prepared.features, RollingConfig(n_windows=2))
    names = {
        fit_parts(prepared, a.parts, cfg).tune["study_name"],
        fit_parts(prepared, b.parts, cfg).tune["study_name"],
        fit_parts(without_features(prepared, ["lane_case_rate"]), b.parts, cfg).tune["study_name"],
    }
    assert len(names) == 3
    again = fit_parts(prepared, b.parts, cfg).tune  # the same slice: the same study, resumed
    assert again["study_name"] in names
    assert again["n_trials"] == 1
