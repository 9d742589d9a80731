"""Registry operations: the retrain lock, compare-and-set promotion, runs never left RUNNING,
model-URI errors, read-only commands that never create a store, quiet output, models from code."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.train.model import RiskModel

pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")

REPO = Path(__file__).resolve().parents[1]
LENIENT = ["--max-ece", "0.2", "--min-auc", "0.55"]


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    p = 1 / (1 + np.exp(-(-1.5 + x1 + (cat == "c"))))
    y = (rng.uniform(size=n) < p).astype(float)
    return pd.DataFrame({"x1": x1, "x2": rng.uniform(size=n), "cat": cat}), y


def _small_model(seed: int, params: dict | None = None) -> tuple[RiskModel, pd.DataFrame]:
    X, y = _frame(1500, 0)
    model = RiskModel(
        {"num_threads": 1, "min_data_in_leaf": 20, **(params or {})},
        n_estimators=60,
        seed=seed,
    ).fit(X.iloc[:900], y[:900], X.iloc[900:1200], y[900:1200])
    return model, X.iloc[1200:].reset_index(drop=True)


def _register(model: RiskModel, X: pd.DataFrame) -> str:
    import mlflow

    from returnrisk.train.registry import log_and_register

    mlflow.set_experiment("registry-ops")
    with mlflow.start_run():
        return log_and_register(model, X)


def _run_statuses(uri: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r.info.status for r in client.search_runs(exps)]


# ------------------------------------------------------------------------------------ item 1
def _hold_lock_script(uri: str) -> str:
    return textwrap.dedent(
        f"""
        import time
        from returnrisk.train.registry import resolve_store, store_lock
        with store_lock(resolve_store({uri!r})):
            print("locked", flush=True)
            time.sleep(120)
        """
    )


def test_second_retrain_exits_while_one_holds_the_store_and_a_dead_holder_is_taken_over(
    tracking_uri, synth_world
):
    from returnrisk.cli import app
    from returnrisk.progress import StepLog
    from returnrisk.train.registry import resolve_store, store_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", _hold_lock_script(tracking_uri)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = CliRunner().invoke(app, ["retrain", str(synth_world), "-q", *LENIENT])
        assert r.exit_code == 75, r.output
        assert "another retrain is running" in r.output
        assert f"pid {holder.pid}" in r.output
        assert "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1
        assert _run_statuses(tracking_uri) == []  # it started nothing
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock file still names the dead pid
        holder.wait()
        holder.stdout.close()
    store = resolve_store(tracking_uri)
    assert f"pid {holder.pid}" in store.lock_path().read_text()
    lines: list[str] = []

    class Capture:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    with store_lock(store, log=StepLog(stream=Capture())):
        assert store.lock_path().read_text().startswith("pid ")
    assert any(f"pid {holder.pid}" in x and "no longer running" in x for x in lines), lines


def test_gate_promotes_only_over_the_champion_it_was_compared_with(
    tracking_uri, synth_world, monkeypatch
):
    from dataclasses import replace

    from mlflow import MlflowClient

    from returnrisk.contract import load_tables
    from returnrisk.train import pipeline
    from returnrisk.train.pipeline import RetrainConfig, TrainConfig, retrain_prepared
    from returnrisk.train.registry import GateConfig, alias_version, configure_tracking, promote

    configure_tracking(tracking_uri)
    prepared = pipeline.prepare_data(load_tables(synth_world))
    base = TrainConfig(data=synth_world, num_threads=1, baselines=False, figures=False)
    cfg = RetrainConfig(train=base, gate=GateConfig(max_ece=0.2, min_auc=0.55))
    assert retrain_prepared(prepared, cfg).decision.promoted
    other = pipeline.train_prepared(prepared, replace(base, seed=1))  # v2, a challenger
    assert (alias_version("champion"), other.version) == ("1", "2")

    original = pipeline.train_prepared

    def meanwhile(*args, **kwargs):  # someone moves @champion while this retrain trains
        result = original(*args, **kwargs)
        promote("2", reason="manual")
        return result

    monkeypatch.setattr(pipeline, "train_prepared", meanwhile)
    result = retrain_prepared(prepared, cfg)
    d = result.decision
    assert d.promote
    assert d.champion_version == "1"
    assert d.champion_moved_to == "2"
    assert not d.promoted
    assert alias_version("champion") == "2"
    assert "KEEP CHAMPION" in d.summary
    assert "moved from v1 to v2" in d.summary
    tags = MlflowClient().get_run(result.challenger.run_id).data.tags
    assert tags["gate_decision"] == "superseded"


def test_promote_compare_and_set(tracking_uri):
    from returnrisk.train.registry import (
        ChampionMovedError,
        alias_version,
        configure_tracking,
        promote,
    )

    configure_tracking(tracking_uri)
    model, X = _small_model(0)
    v1, v2 = _register(model, X), _register(model, X)
    assert promote(v1, expected_champion=None) is None
    with pytest.raises(ChampionMovedError, match="is v1, not unset"):
        promote(v2, expected_champion=None)
    with pytest.raises(ChampionMovedError, match="is v1, not v2"):
        promote(v2, expected_champion=v2)
    assert alias_version("champion") == v1
    assert promote(v2, expected_champion=v1) == v1


def test_interrupted_retrain_ends_its_run_killed_and_releases_the_lock(
    tracking_uri, synth_world, monkeypatch
):
    from returnrisk.cli import app
    from returnrisk.train import pipeline
    from returnrisk.train.registry import resolve_store, store_lock

    def terminated(*args, **kwargs):
        raise pipeline.Terminated("signal 15")

    monkeypatch.setattr(pipeline, "log_and_register", terminated)
    r = CliRunner().invoke(app, ["retrain", str(synth_world), "-q", *LENIENT])
    assert r.exit_code == 143, r.output
    assert "interrupted (SIGTERM)" in r.output
    assert "Traceback" not in r.output
    assert _run_statuses(tracking_uri) == ["KILLED"]
    with store_lock(resolve_store(tracking_uri)):  # released
        pass


def test_sigterm_ends_the_active_run_killed(tracking_uri, tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from returnrisk.train.pipeline import mlflow_run, sigterm_as_interrupt
        from returnrisk.train.registry import configure_tracking
        configure_tracking({tracking_uri!r})
        with sigterm_as_interrupt(), mlflow_run(run_name="killed") as run:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0
    assert _run_statuses(tracking_uri) == ["KILLED"]
    assert proc.returncode != -signal.SIGTERM  # unwound, not killed where it stood


# ------------------------------------------------------------------------------------ item 2
@pytest.mark.parametrize(
    "uri",
    [
        "models:/return-risk",
        "models:/return-risk/latest",
        "models:/@champion",
        "runs:/0123/model",
        "return-risk@champion",
    ],
)
def test_malformed_model_uri_is_one_line_naming_it(uri):
    from returnrisk.train.registry import RegistryError, parse_models_uri

    with pytest.raises(RegistryError) as err:
        parse_models_uri(uri)
    text = str(err.value)
    assert repr(uri) in text
    assert "\n" not in text
    assert "models:/NAME@ALIAS" in text


def test_missing_version_files_are_named_for_score_and_promote(tracking_uri, synth_world):
    import shutil

    from mlflow import MlflowClient

    from returnrisk.cli import app
    from returnrisk.train.registry import configure_tracking, promote

    configure_tracking(tracking_uri)
    model, X = _small_model(0)
    v1 = _register(model, X)
    v2 = _register(model, X)
    promote(v1)
    files = Path(MlflowClient().get_model_version_download_uri("return-risk", v2))
    shutil.rmtree(files)
    runner = CliRunner()
    out = str(synth_world / "o.csv")
    for args in (
        ["score", str(synth_world), "--orders", str(synth_world / "new"), "--out", out,
         "--model", f"models:/return-risk/{v2}", "-q"],
        ["promote", v2, "-q"],
    ):  # fmt: skip
        r = runner.invoke(app, args)
        assert r.exit_code == 1, r.output
        line = r.output.strip()
        assert "\n" not in line
        assert "Traceback" not in line
        assert f"models:/return-risk/{v2}" in line
        assert f"v{v2}" in line
        assert "files are missing" in line
        assert str(files) in line
        assert "train a model first" not in line
    assert MlflowClient().get_model_version_by_alias("return-risk", "champion").version == 1


def test_train_a_model_first_only_when_there_is_no_model(tracking_uri, synth_world):
    from mlflow import MlflowClient

    from returnrisk.cli import app
    from returnrisk.train.registry import configure_tracking

    configure_tracking(tracking_uri)
    MlflowClient().search_experiments()  # an empty store
    runner = CliRunner()
    args = ["score", str(synth_world), "--orders", str(synth_world / "new"), "--out", "o.csv"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    assert "train a model first" in r.output
    model, X = _small_model(0)
    _register(model, X)  # v1 @challenger, no @champion
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "train a model first" not in r.output
    assert "no alias @champion" in r.output
    assert "@challenger -> v1" in r.output
    r = runner.invoke(app, [*args, "--model", "models:/return-risk/4"])
    assert "no version 4 (versions 1;" in r.output
    assert "train a model first" not in r.output


# ------------------------------------------------------------------------------------ item 3
def test_read_only_commands_never_create_a_store(tmp_path, synth_world, monkeypatch):
    from returnrisk.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    w = str(synth_world)
    runner = CliRunner()
    for args in (
        ["score", w, "--orders", f"{w}/new", "--out", "o.csv"],
        ["serve", "--data", w, "--port", "1"],
        ["rollback"],
        ["promote", "1"],
        ["report", "skus", w, "--out", "r.html"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert f"no MLflow tracking store at {tmp_path / 'mlflow.db'}" in r.output, r.output
        assert "--tracking-uri" in r.output
        assert "MLFLOW_TRACKING_URI" in r.output
        assert not (tmp_path / "mlflow.db").exists(), args
    elsewhere = tmp_path / "elsewhere.db"
    r = runner.invoke(app, ["rollback", "--tracking-uri", f"sqlite:///{elsewhere}"])
    assert r.exit_code == 1
    assert f"{elsewhere} (from --tracking-uri)" in r.output
    assert not elsewhere.exists()


def test_tracking_uri_option_is_used_by_every_step(tmp_path, synth_world, monkeypatch):
    from returnrisk.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    uri = f"sqlite:///{store}"
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    runner = CliRunner()
    r = runner.invoke(app, ["retrain", str(synth_world), "-q", "--tracking-uri", uri, *LENIENT])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["score", str(synth_world), "--orders", str(synth_world / "new"), "--out", "o.csv",
         "--tracking-uri", uri, "-q"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "model version 1" in r.output
    assert store.is_file()
    assert not (here / "mlflow.db").exists()


# ------------------------------------------------------------------------------------ item 4
@pytest.mark.slow  # two retrains in fresh processes (MLflow sets up its logging on import)
def test_quiet_retrain_prints_only_its_result_and_progress_has_one_clock(tmp_path, synth_world):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "returnrisk.cli", "retrain", str(synth_world), *LENIENT]
    quiet = subprocess.run([*cmd, "-q"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("gate decision: PROMOTE")
    loud = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert lines, loud.stderr
    assert all(re.match(r"\[\s*\d+\.\ds\] ", x) for x in lines), loud.stderr
    clock = [float(re.match(r"\[\s*(\d+\.\d)s\]", x).group(1)) for x in lines]
    assert clock == sorted(clock)  # one clock from the command's start
    assert "CloudPickle" not in loud.stderr


def test_model_is_logged_from_code_and_two_versions_load_side_by_side(tracking_uri):
    import mlflow
    import yaml
    from mlflow import MlflowClient

    from returnrisk.train.registry import configure_tracking

    configure_tracking(tracking_uri)
    m1, X = _small_model(0)
    m2, _ = _small_model(5, {"num_leaves": 4, "learning_rate": 0.3})
    v1, v2 = _register(m1, X), _register(m2, X)
    root = Path(MlflowClient().get_model_version_download_uri("return-risk", v1))
    flavor = yaml.safe_load((root / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor.get("model_code_path")
    assert not (root / "python_model.pkl").exists()
    a = mlflow.pyfunc.load_model(f"models:/return-risk/{v1}")
    b = mlflow.pyfunc.load_model(f"models:/return-risk/{v2}")
    plain = X.astype({"cat": "object"})
    pa, pb = a.predict(plain).to_numpy(), b.predict(plain).to_numpy()
    np.testing.assert_array_equal(pa, m1.predict_case(X))
    np.testing.assert_array_equal(pb, m2.predict_case(X))
    assert not np.allclose(pa, pb)
    # and the first still answers with its own model after the second was loaded
    np.testing.assert_array_equal(a.predict(plain).to_numpy(), pa)


def test_sqlite_lock_file_sits_beside_the_store(tmp_path):
    from returnrisk.train.registry import resolve_store

    store = resolve_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.lock_path() == tmp_path / "x.db.lock"
