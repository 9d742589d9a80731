"""The installed environment is the one pyproject.toml and the lock files declare."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(extra: str | None = None) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _locked(lock: str) -> dict[str, str]:
    """name -> version pinned in a lock file (lines `name==version \\` or with a marker)."""
    text = (ROOT / lock).read_text()
    pins: dict[str, str] = {}
    for name, ver in re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, flags=re.M):
        pins.setdefault(canonicalize_name(name), ver)
    return pins


@pytest.mark.parametrize("req", _requirements() + _requirements("dev"), ids=str)
def test_installed_version_satisfies_pyproject(req):
    assert req.specifier.contains(version(req.name), prereleases=True), (
        f"{req.name} {version(req.name)} is installed, pyproject.toml asks {req.specifier}"
    )


@pytest.mark.parametrize(
    ("lock", "extra"), [("requirements.lock", None), ("requirements-dev.lock", "dev")]
)
def test_lock_files_pin_every_direct_dependency_within_its_range(lock, extra):
    pins = _locked(lock)
    reqs = _requirements() + (_requirements(extra) if extra else [])
    missing = [r.name for r in reqs if canonicalize_name(r.name) not in pins]
    assert not missing, f"{lock} does not pin {missing}: run `make lock`"
    outside = {
        r.name: pins[canonicalize_name(r.name)]
        for r in reqs
        if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    }
    assert not outside, f"{lock} pins versions pyproject.toml forbids: {outside}; run `make lock`"
    assert all("--hash=sha256:" in block for block in (ROOT / lock).read_text().split("\n\n"))


def test_runtime_lock_has_no_test_tools():
    """`make demo` installs runtime dependencies only."""
    pins = _locked("requirements.lock")
    dev_only = [r.name for r in _requirements("dev") if canonicalize_name(r.name) in pins]
    assert dev_only == [], f"test tools in the runtime lock: {dev_only}"


def test_missing_text_stays_missing():
    """The categorical casts rely on pandas 3: astype('str') keeps None/NaN missing (pandas 2.2
    wrote the string 'nan', a silent training/serving skew); the pandas floor guards it."""
    s = pd.Series(["a", None, float("nan")], dtype=object).astype("str")
    assert s.isna().tolist() == [False, True, True]


def test_version_option_prints_the_installed_version():
    out = subprocess.run(
        [sys.executable, "-m", "returnrisk.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"returnrisk {version('returnrisk')}"
