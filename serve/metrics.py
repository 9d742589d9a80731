"""A small thread-safe registry of counters and histograms with Prometheus text exposition."""

from __future__ import annotations

import threading
from collections import defaultdict

DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, esc, strict=True)) + "}"


class Metrics:
    """Counters, gauges and latency histograms; ``render()`` gives the exposition text."""

    def __init__(self, prefix: str = "returnrisk", buckets: tuple[float, ...] = DEFAULT_BUCKETS):
        self.prefix = prefix
        self.buckets = buckets
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[tuple, float]] = defaultdict(dict)
        self._hist: dict[str, dict[tuple, list[float]]] = defaultdict(dict)

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = value

    def clear(self, name: str) -> None:
        with self._lock:
            self._values[name].clear()

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self._hist[name].get(key)
            if h is None:
                h = self._hist[name][key] = [0.0] * (len(self.buckets) + 2)  # buckets, sum, count
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    h[i] += 1
            h[-2] += value
            h[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            return self._values[name].get(key, 0.0)

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            names = sorted(set(self._values) | set(self._hist) | set(self._help))
            for name in names:
                full = f"{self.prefix}_{name}"
                kind, help_text = self._help.get(name, ("untyped", name))
                out.append(f"# HELP {full} {help_text}")
                out.append(f"# TYPE {full} {kind}")
                for key, v in sorted(self._values.get(name, {}).items()):
                    out.append(f"{full}{_labels(key)} {v:.17g}")
                for key, h in sorted(self._hist.get(name, {}).items()):
                    for bound, count in zip(self.buckets, h, strict=False):
                        lk = _labels((*key, ("le", f"{bound:g}")))
                        out.append(f"{full}_bucket{lk} {count:.17g}")
                    out.append(f"{full}_bucket{_labels((*key, ('le', '+Inf')))} {h[-1]:.17g}")
                    out.append(f"{full}_sum{_labels(key)} {h[-2]:.17g}")
                    out.append(f"{full}_count{_labels(key)} {h[-1]:.17g}")
        return "\n".join(out) + "\n"
