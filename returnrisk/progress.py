"""Step log for long-running commands: one line per step on stderr, silent with ``--quiet``;
:func:`library_logs` routes the libraries' log records through the same lines."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class StepLog:
    """Prints ``[  1.2s] step ... done`` lines; passed down from the command's entry."""

    quiet: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    _t0: float = field(default_factory=time.perf_counter)

    def info(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self._t0
            print(f"[{elapsed:7.1f}s] {message}", file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.info(f"{name} ...")
        yield
        self.info(f"{name} done in {time.perf_counter() - start:.1f}s")


QUIET = StepLog(quiet=True)


LIBRARY_LOGGERS = ("mlflow", "alembic", "optuna", "lightgbm", "py.warnings")
"""Loggers of the libraries the commands drive; :func:`library_logs` routes them."""


class _StepLogHandler(logging.Handler):
    """Writes a library's log record as one step-log line (same clock), on stderr."""

    def __init__(self, log: StepLog, level: int) -> None:
        super().__init__(level)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip().splitlines()
            first = text[0] if text else ""
            elapsed = time.perf_counter() - self.log._t0
            print(
                f"[{elapsed:7.1f}s] {record.levelname.lower()}: {record.name}: {first}",
                file=sys.stderr,
                flush=True,
            )
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextmanager
def library_logs(log: StepLog) -> Iterator[None]:
    """For the block, MLflow's, Optuna's, alembic's and Python's warnings go through
    ``logging`` to one handler that prints them as step-log lines: warnings and errors
    normally, errors only with ``--quiet``. MLflow's own stderr handler and its direct prints
    (``eprint``) are off meanwhile; everything is restored afterwards."""
    level = logging.ERROR if log.quiet else logging.WARNING
    handler = _StepLogHandler(log, level)
    saved = []
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, list(lg.handlers), lg.level, lg.propagate))
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    logging.captureWarnings(True)
    stream = _mlflow_stream()
    was_enabled = stream.enabled if stream is not None else None
    if stream is not None:
        stream.enabled = False
    try:
        yield
    finally:
        logging.captureWarnings(False)
        if stream is not None:
            stream.enabled = was_enabled
        for lg, handlers, lvl, propagate in saved:
            lg.removeHandler(handler)
            for h in handlers:
                lg.addHandler(h)
            lg.setLevel(lvl)
            lg.propagate = propagate


def _mlflow_stream():  # MLflow's own type; None when MLflow is not imported
    """MLflow's ``eprint`` stream, only if MLflow is already imported (never imports it)."""
    module = sys.modules.get("mlflow.utils.logging_utils")
    return getattr(module, "MLFLOW_LOGGING_STREAM", None)
