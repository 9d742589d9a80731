"""The service's Prometheus metrics, on ``prometheus_client`` (one registry per app, so apps
made in one process -- tests, benchmarks -- never share series), with its process, platform
and garbage-collector collectors. Names: ``returnrisk_*`` as in docs/operations.md."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The counters, histogram and gauges of one service app."""

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.http_requests = Counter(
            "returnrisk_http_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "code"],
            registry=r,
        )
        self.http_duration = Histogram(
            "returnrisk_http_request_duration_seconds",
            "HTTP request latency in seconds",
            ["endpoint"],
            buckets=buckets,
            registry=r,
        )
        self.score_requests = Counter(
            "returnrisk_score_requests",
            "score requests by path: online (one clean order, from the online store) or batch "
            "(anything else, including every refusal)",
            ["path"],
            registry=r,
        )
        self.orders_scored = Counter("returnrisk_orders_scored", "orders scored", registry=r)
        self.orders_flagged = Counter("returnrisk_orders_flagged", "orders flagged", registry=r)
        self.orders_refused = Counter(
            "returnrisk_orders_refused", "orders refused (bad input)", registry=r
        )
        self.refused_by_reason = Counter(
            "returnrisk_orders_refused_by_reason",
            "orders refused, by reason (the table.column of the broken rule)",
            ["reason"],
            registry=r,
        )
        self.unseen_categories = Counter(
            "returnrisk_unseen_categories",
            "categorical values unseen in training, by feature",
            ["feature"],
            registry=r,
        )
        self.reloads = Counter(
            "returnrisk_reloads", "state reloads by result", ["result"], registry=r
        )
        self.model_info = Gauge(
            "returnrisk_model_info", "the model version being served", ["version"], registry=r
        )

        self.watch: Any = None  # the current ``serve.watch.Watch``: its gauges on scrape
        r.register(_WatchCollector(lambda: self.watch))

    def http(self, endpoint: str, code: int, seconds: float) -> None:
        self.http_requests.labels(endpoint=endpoint, code=str(code)).inc()
        self.http_duration.labels(endpoint=endpoint).observe(seconds)

    def score_request(self, path: str, unseen: dict[str, int]) -> None:
        self.score_requests.labels(path=path).inc()
        for feature, n in unseen.items():
            if n:
                self.unseen_categories.labels(feature=feature).inc(n)

    def orders(self, scored: int, flagged: int, refused: int) -> None:
        self.orders_scored.inc(scored)
        self.orders_flagged.inc(flagged)
        self.orders_refused.inc(refused)

    def refusals(self, by_reason: dict[str, int]) -> None:
        for reason, n in by_reason.items():
            self.refused_by_reason.labels(reason=reason).inc(n)

    def reloaded(self, result: str) -> None:
        self.reloads.labels(result=result).inc()

    def set_model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=str(version)).set(1)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) in the format the scraper asks for (Prometheus text by
        default, OpenMetrics when its ``Accept`` header says so)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class _WatchCollector:
    """Yields the rolling-window gauges of the current watch, computed at scrape time."""

    def __init__(self, source: Callable[[], Any]):
        self.source = source

    def describe(self) -> list:
        return []  # names vary with the model (one series per feature): not checked upfront

    def collect(self) -> Iterator[Any]:
        watch = self.source()
        if watch is not None:
            yield from watch.families()
