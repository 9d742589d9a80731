"""Shared fixtures: a small synthetic world, the real data sets, a temporary MLflow store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from returnrisk.serve.model_protocol import ScoringModel

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# LightGBM's OpenMP threads spin while waiting; on a shared 2-core machine that halves speed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic world (history + `new/` orders to screen), generated once per session."""
    from returnrisk.synth import SynthConfig, generate_world, write_world

    out = tmp_path_factory.mktemp("world")
    world = generate_world(SynthConfig(n_orders=4000, seed=7, new_days=1))
    write_world(world, out)
    return out


@pytest.fixture(scope="module")
def registry(synth_world: Path, tmp_path_factory: pytest.TempPathFactory):
    """(tracking uri, LoadedModel of @champion): a tiny model trained with returnrisk.train on the
    session's synthetic world, registered in a temporary MLflow store and promoted (once per
    module that asks for it: a module may register more versions without touching another's)."""
    import warnings

    from returnrisk.train.pipeline import TrainConfig, train
    from returnrisk.train.registry import configure_tracking, load_model, promote

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own warnings while logging a model
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mp.chdir(tmp)
        configure_tracking(uri)
        cfg = TrainConfig(
            data=synth_world,
            n_estimators=40,
            early_stopping_rounds=10,
            baselines=False,
            figures=False,
            tracking_uri=uri,
        )
        promote(str(train(cfg).version))
        model = load_model()
    return uri, model


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets in ../shared/data; tests using them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (it exists only in CI/dev)")
    return SHARED_DATA


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite MLflow tracking + registry store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


# ---------------------------------------------------------------------------------------------
# a fake trained model satisfying serve.model_protocol.ScoringModel (no LightGBM): P(case) is a
# fixed logistic function of the numeric features (each squashed to (-1, 1); the first family's
# raise the risk, the others' lower it), so probabilities differ between orders and reasons have
# both signs; the contributions are the terms of that sum, bias last. No unseen categories.
FAKE_BIAS = -2.0


@dataclass(frozen=True)
class FakePredictor:
    feature_names_: tuple[str, ...]
    weights: tuple[float, ...]

    def encode(self, X: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
        cols = [np.asarray(X[c], dtype=np.float64) for c in self.feature_names_]
        return np.column_stack(cols), {}

    def _terms(self, matrix: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(matrix, dtype=np.float64))
        return x / (1.0 + np.abs(x)) * np.asarray(self.weights)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(FAKE_BIAS + self._terms(matrix).sum(axis=1))))

    def contributions_matrix(self, matrix: np.ndarray) -> np.ndarray:
        terms = self._terms(matrix)
        return np.column_stack([terms, np.full(len(terms), FAKE_BIAS)])

    # what the SKU report uses of a trained model, on frames
    def predict_case(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_matrix(self.encode(X)[0])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        values = self.contributions_matrix(self.encode(X)[0])
        return pd.DataFrame(values, columns=[*self.feature_names_, "bias"], index=X.index)


@dataclass(frozen=True)
class FakeModel:
    risk_model: FakePredictor
    uri: str = "fake:/return-risk"
    version: str = "fake-1"
    run_id: str = "fake-run"
    metrics: dict[str, float] = field(default_factory=lambda: {"test_auc": 0.5})
    data_window: dict[str, Any] = field(default_factory=lambda: {"n_train": 1000})


@pytest.fixture(scope="session")
def fake_model() -> ScoringModel:
    """A fake trained model (no LightGBM) over every numeric feature of ``FEATURE_SPECS``:
    P(case) a fixed logistic function of the features, contributions its terms (bias last).
    For serve's tests that need a model but not a trained one (policy, reasons formatting,
    request validation, refusals, CSV, docs, metrics)."""
    from returnrisk.features import FEATURE_SPECS

    numeric = [spec for spec in FEATURE_SPECS.values() if spec.kind == "numeric"]
    raising = numeric[0].family  # its features raise the risk, every other family's lower it
    weights = tuple(1.5 if spec.family == raising else -0.4 for spec in numeric)
    return FakeModel(FakePredictor(tuple(spec.name for spec in numeric), weights))
