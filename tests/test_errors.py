"""One error base: every exception the package defines is a ReturnriskError with .report()."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from typer.testing import CliRunner

from returnrisk.errors import ReturnriskError

# MLflow runs this file to build the pyfunc ("models from code"): importing it registers a model.
NOT_IMPORTED = {"returnrisk.train.pyfunc_code"}
STAGES = ("features", "train", "serve")


def _package_exceptions() -> dict[str, type[Exception]]:
    # the stage folders are sub-packages only through the install's package-dir mapping, so
    # walking returnrisk's own folder does not reach them: walk each package root
    roots = ["returnrisk", *(f"returnrisk.{stage}" for stage in STAGES)]
    names = set(roots)
    for root in roots:
        package = importlib.import_module(root)
        names |= {i.name for i in pkgutil.walk_packages(package.__path__, f"{root}.")}
    found: dict[str, type[Exception]] = {}
    for name in sorted(names - NOT_IMPORTED):
        module = importlib.import_module(name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_exception_of_the_package_is_a_returnrisk_error() -> None:
    found = _package_exceptions()
    # the walk reaches every stage (the stage folders are sub-packages once installed)
    for expected in (
        "returnrisk.contract.ContractError",
        "returnrisk.train.registry.StoreLockedError",
        "returnrisk.serve.scoring.ScoringError",
        "returnrisk.serve.monitor.MonitorInputError",
        "returnrisk.importers.common.ImporterError",
    ):
        assert expected in found
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, ReturnriskError))
    assert strays == []


def test_errors_keep_their_standard_base_and_report() -> None:
    from returnrisk.contract import ContractError, Problem
    from returnrisk.serve.policy import PolicyError
    from returnrisk.train.registry import RegistryError

    assert issubclass(PolicyError, ValueError)
    assert issubclass(RegistryError, RuntimeError)
    assert PolicyError("--flag-top: out of range").report() == "--flag-top: out of range"
    err = ContractError([Problem("orders", "qty", "must be > 0", "order_id", ("o1", "o2"))], "d")
    assert err.report().startswith("d: 1 contract problem(s)")


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["report", "skus", "{d}", "-o", "{d}/r.html", "--window", "abc"], 1, "--window: expected"),
        (["monitor", "{d}", "--out", "{d}/m", "--config", "{d}/none.yaml"], 2, "none.yaml"),
    ],
    ids=["report-window", "monitor-config"],
)
def test_cli_prints_a_returnrisk_error_as_one_line(tmp_path, args, code, line) -> None:
    """A ReturnriskError from below the CLI: one `error:` line, the command's exit code."""
    from returnrisk.cli import app

    res = CliRunner().invoke(app, [a.format(d=tmp_path) for a in args])
    assert res.exit_code == code, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert line in lines[0]
    assert isinstance(res.exception, SystemExit)
