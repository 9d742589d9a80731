"""The service's settings and its one piece of state: the current scoring state, swapped
atomically on reload, with the metrics and the scoring thread limiter of the app."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi.responses import JSONResponse

from returnrisk.train.names import CHAMPION_URI

from .metrics import Metrics
from .policy import PolicyConfig
from .scoring import ScoringState

DEFAULT_MODEL_URI = CHAMPION_URI


@dataclass(frozen=True)
class ServeConfig:
    """Service settings, parsed once at the command's entry."""

    data: Path | None = None
    model_uri: str = DEFAULT_MODEL_URI
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(flag_above=0.4))
    explain: Literal["flagged", "all", "none"] = "flagged"
    max_body_bytes: int = 1_000_000
    max_orders: int = 1_000
    api_key: str | None = None
    max_concurrent_scoring: int = 2  # full-path scoring threads (CPU-bound: about the cores)


def settle_heap() -> None:
    """Collect once, then move every object alive now -- the scoring state's many small objects
    (key lookups, vocabularies) -- out of the garbage collector's reach (``gc.freeze``): a full
    collection would otherwise walk them all and stall the service ~90 ms (it set the p99 of
    the open-loop benchmark). Objects freed later are still freed by reference counting."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Service:
    """Holds the current scoring state and swaps it atomically on reload."""

    def __init__(
        self,
        config: ServeConfig,
        state: ScoringState | None,
        loader: Callable[[], ScoringState] | None,
        metrics: Metrics,
    ):
        self.config = config
        self.state = state
        self.loader = loader
        self.metrics = metrics
        self.load_error: str | None = None
        self._reload_lock = threading.Lock()
        # the full path is CPU-bound pandas work: at most this many requests at once, in
        # threads (anyio's pool otherwise runs up to 40), so a burst queues instead of thrashing
        self.limiter = anyio.CapacityLimiter(max(1, config.max_concurrent_scoring))
        if state is not None:
            metrics.set_model(state.model_version)

    def load(self) -> ScoringState:
        if self.loader is None:
            raise RuntimeError("no loader configured: this service cannot reload")
        with self._reload_lock:
            try:
                new = self.loader()
            except Exception as err:  # a failed (re)load keeps the old state
                self.load_error = f"{type(err).__name__}: {err}"
                self.metrics.reloaded("failed")
                raise
            self.state = new
            settle_heap()  # the old state is released: collect it, freeze the new one
            self.load_error = None
            self.metrics.reloaded("ok")
            self.metrics.set_model(new.model_version)
            return new

    def count_request(self, path: str, unseen: dict[str, int]) -> None:
        self.metrics.score_request(path, unseen)

    def answer(
        self, version: str, n_scored: int, n_refused: int, n_flagged: int, results: list[Any]
    ) -> JSONResponse:
        self.metrics.orders(n_scored, n_flagged, n_refused)
        return JSONResponse(
            {
                "model_version": version,
                "policy": self.config.policy.describe(),
                "n_scored": n_scored,
                "n_refused": n_refused,
                "n_flagged": n_flagged,
                "results": results,
            }
        )
