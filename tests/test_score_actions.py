"""``returnrisk score --actions``: recommended_action and expected_saving next to the score."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.costs import ACTIONS
from returnrisk.serve.decisions import ACTION_COLUMNS, TABLE_COLUMNS, recommend


def _score(world: Path, out: Path, *extra: str):
    args = ["score", str(world), "--orders", str(world / "new"), "--out", str(out)]
    return CliRunner().invoke(app, [*args, "--flag-top", "30", "--quiet", *extra])


def test_score_with_actions(synth_world: Path, registry, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[0])
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry[0])
    r = _score(synth_world, tmp_path / "plain.csv", "--actions", "none")
    assert r.exit_code == 0, r.output
    plain = pd.read_csv(tmp_path / "plain.csv", dtype={"order_id": str})
    assert not set(ACTION_COLUMNS) & set(plain.columns)  # unchanged with --actions none

    r = _score(synth_world, tmp_path / "flagged.csv", "--actions", "flagged")
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "flagged.csv", dtype={"order_id": str})
    pd.testing.assert_frame_equal(got[plain.columns], plain)  # the scores stay as they are
    # the default is flagged, as the service's: the same file without --actions
    r = _score(synth_world, tmp_path / "default.csv")
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "default.csv", dtype={"order_id": str}), got
    )
    flagged = got["flagged"].fillna(False).astype(bool)
    assert flagged.any()
    assert (~flagged).any()
    assert got.loc[flagged, "recommended_action"].isin(ACTIONS).all()
    assert (got.loc[flagged, "expected_saving"] >= 0).all()
    assert got.loc[~flagged, list(ACTION_COLUMNS)].isna().all().all()

    r = _score(synth_world, tmp_path / "all.csv", "--actions", "all")
    assert r.exit_code == 0, r.output
    every = pd.read_csv(tmp_path / "all.csv", dtype={"order_id": str})
    scored = every["status"] == "scored"
    assert every.loc[scored, "recommended_action"].isin(ACTIONS).all()
    table = pd.read_csv(tmp_path / "all_actions.csv", dtype={"order_id": str})
    assert list(table.columns) == list(TABLE_COLUMNS)
    rec = recommend(table).set_index("order_id")
    by_id = every.set_index("order_id")
    ids = rec.index
    pd.testing.assert_series_equal(
        by_id.loc[ids, "recommended_action"], rec["recommended_action"], check_dtype=False,
        check_names=False,
    )  # fmt: skip


def test_score_refuses_bad_actions_and_cost_file(synth_world: Path, tmp_path: Path) -> None:
    r = _score(synth_world, tmp_path / "o.csv", "--actions", "some")
    assert r.exit_code == 1
    assert "--actions must be none, flagged or all" in r.output
    f = tmp_path / "c.yaml"
    f.write_text("case_cost: {lost: 3}\n", encoding="utf-8")
    r = _score(synth_world, tmp_path / "o.csv", "--actions", "all", "--costs", str(f))
    assert r.exit_code == 1
    assert str(f) in r.output
    assert "'lost'" in r.output
    assert not (tmp_path / "o.csv").exists()
