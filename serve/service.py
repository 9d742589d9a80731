"""The service's settings and its one piece of state: the current scoring state, swapped
atomically on reload, with the metrics, the rolling-window watch of the state's model
(``serve/watch.py``) and the scoring thread limiter of the app."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi.responses import JSONResponse

from returnrisk.train.names import CHAMPION_URI

from .decisions import Decider
from .metrics import Metrics
from .policy import PolicyConfig
from .scoring import OnlineResult, ScoreResult, ScoringState
from .watch import Watch, model_reference

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
    watch_window: int = 5_000  # the rolling window of the service's gauges, in orders
    watch_min_orders: int = 300  # orders before a window gauge (score PSI, rates) is reported
    # the cost model of the what-if actions: a cost file's checked overrides
    # (``costs.read_cost_file``), resolved over each loaded history (its case medians)
    costs: Mapping[str, Any] = field(default_factory=dict)
    costs_source: str = "defaults"

    def __post_init__(self) -> None:
        if not 1 <= self.watch_min_orders <= self.watch_window:
            raise ValueError(
                f"watch_min_orders ({self.watch_min_orders}) must be between 1 and "
                f"watch_window ({self.watch_window}): the window could never report"
            )


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
        *,
        reference_of: Callable[[Any], dict[str, Any] | None] = model_reference,
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
        self.reference_of = reference_of
        self.watch: Watch | None = None
        self._decider: Decider | None = None
        if state is not None:
            metrics.set_model(state.model_version)
            self.watch = metrics.watch = self._new_watch(state)
            self._decider = self._new_decider(state)

    def _new_decider(self, state: ScoringState) -> Decider:
        """The what-if decisions of ``state``: the cost model resolved over its history (the
        defaults from its cases, then the cost file's overrides), lanes and shares once."""
        from returnrisk.costs import resolve_costs

        cfg = self.config
        costs = resolve_costs(cfg.costs, state.tables.after_sales_cases, source=cfg.costs_source)
        return Decider.build(state.feature_history, state.risk_model, costs)

    def decider_for(self, state: ScoringState) -> Decider:
        """The decider of ``state`` (built once per loaded state; a request that read the state
        just before a reload gets one of its own state, never the new one's)."""
        d = self._decider
        if d is None or d.history is not state.feature_history:
            d = self._new_decider(state)
            if state is self.state:
                self._decider = d
        return d

    def _new_watch(self, state: ScoringState) -> Watch:
        """A new, empty window over ``state``'s model and its monitoring reference."""
        return Watch(
            self.config.watch_window,
            self.config.watch_min_orders,
            self.reference_of(state.model),
            list(getattr(state.risk_model, "categorical_features_", [])),
        )

    def load(self) -> ScoringState:
        if self.loader is None:
            raise RuntimeError("no loader configured: this service cannot reload")
        with self._reload_lock:
            try:
                new = self.loader()
                watch = self._new_watch(new)
                decider = self._new_decider(new)
            except Exception as err:  # a failed (re)load keeps the old state
                self.load_error = f"{type(err).__name__}: {err}"
                self.metrics.reloaded("failed")
                raise
            self.state = new
            self._decider = decider
            self.watch = self.metrics.watch = watch  # the window starts with the new model
            settle_heap()  # the old state is released: collect it, freeze the new one
            self.load_error = None
            self.metrics.reloaded("ok")
            self.metrics.set_model(new.model_version)
            return new

    def observe_one(self, one: OnlineResult) -> None:
        """Count one order of the fast path and record it in the window (O(1))."""
        self.metrics.score_request("online", one.unseen)
        if self.watch is not None:
            self.watch.record_one(one.record["probability"], one.flagged, one.unseen)

    def observe_batch(self, result: ScoreResult) -> None:
        """Count a full-path answer and record its orders (scored and refused) in the window."""
        self.metrics.score_request("batch", result.unseen)
        if self.watch is not None:
            self.metrics.refusals(self.watch.record_batch(result.results, result.unseen))

    def answer(
        self,
        version: str,
        n_scored: int,
        n_refused: int,
        n_flagged: int,
        results: list[Any],
        actions: str = "none",
    ) -> JSONResponse:
        self.metrics.orders(n_scored, n_flagged, n_refused)
        return JSONResponse(
            {
                "model_version": version,
                "policy": self.config.policy.describe(),
                "actions": actions,
                "n_scored": n_scored,
                "n_refused": n_refused,
                "n_flagged": n_flagged,
                "results": results,
            }
        )
