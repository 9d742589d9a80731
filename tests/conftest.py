"""Shared fixtures: a small synthetic world, the real data sets, a temporary MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
