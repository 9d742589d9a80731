"""Step log for long-running commands: one line per step on stderr, silent with ``--quiet``."""

from __future__ import annotations

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
