"""The docs' examples run: fenced blocks tagged ``demo`` are executed on `make demo`'s world,
and the MLflow project runs from a checkout without the venv on PATH."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_TAGS = {"demo", "demo-serve"}
TAGS = RUN_TAGS | {"no-run"}
COMMAND_LANGS = {"bash", "sh", "shell", "console", "python"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.M | re.S)


def doc_blocks() -> list[tuple[Path, str, set[str], str]]:
    """(file, language, tags, code) of every fenced block, in file order."""
    out = []
    for path in DOCS:
        for m in FENCE.finditer(path.read_text(encoding="utf-8")):
            words = m.group(1).split()
            lang = words[0] if words else ""
            out.append((path, lang, set(words[1:]), m.group(2)))
    return out


def test_every_command_block_in_the_docs_is_run_or_says_why_not():
    untagged = [
        f"{p.relative_to(REPO)}: ```{lang} block starting {code.splitlines()[0]!r}"
        for p, lang, tags, code in doc_blocks()
        if lang in COMMAND_LANGS and not tags & TAGS
    ]
    assert not untagged, "tag each as demo (run by the test) or no-run:\n" + "\n".join(untagged)
    assert sum(1 for *_, tags, _ in doc_blocks() if tags & RUN_TAGS) >= 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docs_script(port: int) -> str:
    """One bash script: the demo, then every runnable block of the docs, the server in the
    background while the blocks after it talk to it."""
    lines = [
        "set -euo pipefail",
        "returnrisk demo --workdir demo --quiet > demo.log",
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    ]
    for path, lang, tags, code in doc_blocks():
        if not tags & RUN_TAGS:
            continue
        code = re.sub(r"\b8000\b", str(port), code)
        lines.append(f"echo '### {path.name}: {lang} block' >&2")
        if lang == "python":
            lines += ["python - <<'PY'", code.rstrip("\n"), "PY"]
        elif "demo-serve" in tags:
            for line in code.splitlines():
                if line.startswith("returnrisk serve"):
                    lines.append(f"{line} --quiet > serve.log 2>&1 &")
                    lines.append(
                        f"for i in $(seq 600); do curl -sf localhost:{port}/readyz >/dev/null"
                        " && break; sleep 0.2; done"
                    )
                else:
                    lines.append(line)
        else:
            lines.append(code.rstrip("\n"))
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_doc_examples_run_on_the_demo_world(tmp_path):
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    script = docs_script(_free_port())
    (tmp_path / "docs.sh").write_text(script)
    proc = subprocess.run(
        ["bash", "docs.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n--- stdout\n{proc.stdout[-2000:]}"
    # the demo ends with a backtest of the default policy: its net saving with the interval
    demo_log = (tmp_path / "demo.log").read_text()
    tail = demo_log[demo_log.index("backtest the default policy") :]
    assert re.search(r"net saving -?[\d,]+ EUR \(90 % interval -?[\d,]+ \.\. -?[\d,]+\)", tail)
    assert "orders flagged" in tail
    report = json.loads((tmp_path / "demo" / "backtest" / "backtest.json").read_text())
    assert report["window"]["days"] == 7
    assert set(report["scorers"]) >= {"model", "lookback", "truth", "hindsight"}
    # the HTTP example is scored, not refused, on the demo world
    assert re.search(r'"status":\s*"scored"', proc.stdout), proc.stdout[-2000:]
    assert not re.search(r'"status":\s*"refused"', proc.stdout), proc.stdout[-2000:]
    assert "return-risk@champion: v2 -> v1" in proc.stdout  # promote 2, then rollback


@pytest.mark.slow
def test_mlproject_retrain_runs_without_the_venv_on_path(tmp_path, synth_world):
    env = {
        "PATH": "/usr/bin:/bin",  # neither .venv/bin nor returnrisk on PATH
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    cmd = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local"]
    cmd += ["-e", "retrain", "-P", f"data={synth_world}", "-P", "max_ece=0.2"]
    cmd += ["-P", "min_auc=0.55"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "command not found" not in proc.stderr
    assert "gate decision: PROMOTE" in proc.stdout
    assert os.path.exists(tmp_path / "mlflow.db")
