"""The notebooks run end to end (nbclient, kernel python3 of this interpreter) on a small world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = NOTEBOOKS / "01_explore_after_sales.ipynb"
REVIEW = NOTEBOOKS / "02_champion_review.ipynb"


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def _images(nb) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


def _run(path: Path, cwd: Path):
    """Execute a notebook in a fresh kernel; the kernel inherits this process's environment.

    nbclient's ``python3`` kernel spec runs ``python -m ipykernel_launcher``; jupyter_client
    replaces a bare ``python`` with ``sys.executable``, so the kernel is this venv's Python.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error
    return nb


@pytest.mark.parametrize("path", [EXPLORE, REVIEW], ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], path.name
            assert cell["execution_count"] is None, path.name
    source = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "from returnrisk" in source  # imports the package, does not copy its code
    assert "os.environ.get(" in source  # data / tracking location from the environment


@pytest.mark.slow
def test_explore_notebook_runs(synth_world: Path, tmp_path: Path, monkeypatch) -> None:
    from returnrisk.contract import load_tables
    from returnrisk.serve.report_skus import order_outcomes

    monkeypatch.setenv("RETURNRISK_DATA", str(synth_world))
    nb = _run(EXPLORE, tmp_path)
    text = _text_outputs(nb)
    tables = load_tables(synth_world)
    out = order_outcomes(tables.orders, tables.after_sales_cases, as_of=tables.as_of())
    mature = out.loc[out["mature"]]
    assert f"mature: {len(mature):,}" in text
    assert f"case rate of mature orders: {mature['label'].mean():.4f}" in text
    assert "DDP (duties paid by seller)" in text or "DDU" in text
    assert _images(nb) >= 6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*type hint is inferred as AnyType:UserWarning")
def test_champion_review_notebook_runs(
    synth_world: Path, tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from returnrisk.train.pipeline import TrainConfig, train
    from returnrisk.train.registry import configure_tracking, load_model, promote

    configure_tracking(tracking_uri)  # MLflow's URIs are process-global: set both explicitly
    result = train(
        TrainConfig(
            data=synth_world,
            n_estimators=120,
            early_stopping_rounds=20,
            baselines=False,
            figures=False,
            tracking_uri=tracking_uri,
        )
    )
    assert result.version
    promote(result.version, reason="test")
    champion = load_model()
    assert champion.version == result.version

    monkeypatch.setenv("RETURNRISK_DATA", str(synth_world))
    nb = _run(REVIEW, tmp_path)
    text = _text_outputs(nb)
    assert f"version {result.version} (run {champion.run_id})" in text
    assert "test_auc" in text
    assert "sanity: SHAP + bias reproduces the raw score: True" in text

    from returnrisk.contract import load_tables
    from returnrisk.serve.report_skus import build_sku_report

    expected = build_sku_report(load_tables(synth_world), champion, window_days=28)
    top5 = ", ".join(expected.skus["sku_id"].head(5))
    assert f"riskiest SKUs: {top5}" in text
    assert _images(nb) >= 3
