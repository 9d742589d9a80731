"""The service watches its own requests: a rolling window of the last ``window`` orders it
received (scored or refused) and the gauges Prometheus scrapes from it.

``Watch`` keeps fixed-size numpy ring buffers -- per slot the order's calibrated probability,
whether it was flagged, which categorical features had a value unseen in training (a bit mask)
and the reasons it was refused (a bit mask over the reasons' ``table.column``) -- so recording
one order is five scalar writes under a lock (O(1), a few microseconds: docs/operations.md), a
batch of ``n`` orders O(n) vectorised. The gauges are computed only when ``/metrics`` is scraped
(``families``), over a copy of the window taken under the lock:

- ``returnrisk_watch_score_psi``: PSI of the window's probabilities against the score bins of
  the model's monitoring reference (``monitor_reference.json``, logged with its training run),
  with the monitor's smoothing (``serve.monitor.smoothed_shares``, ``psi``);
- ``returnrisk_watch_mean_probability`` and ``returnrisk_watch_reference_mean_probability``;
- ``returnrisk_watch_flag_rate``: flagged / scored orders;
- ``returnrisk_watch_unseen_share{feature}``: scored orders with a value of the feature the
  model never saw in training / scored orders (the full path reports counts per batch, not per
  order: a batch's unseen counts are assigned to its first scored orders, exact while the batch
  is in the window);
- ``returnrisk_watch_refused_share{reason}``: orders refused for a reason / orders received;
- ``returnrisk_watch_orders{status}``, ``returnrisk_watch_window_size``,
  ``returnrisk_watch_min_orders``, ``returnrisk_watch_reference_loaded``.

A ratio is NaN until the window holds ``min_orders`` orders (scored ones for the score gauges),
and the PSI is NaN when the model has no reference. The window starts empty with each
scoring state (a reload swaps the model, its reference and the window).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger("returnrisk.serve")

EMPTY, SCORED, REFUSED = 0, 1, 2
MAX_REASONS = 63  # distinct refusal reasons labelled; the rest share bit 63 as "other"
OTHER_REASON = "other"


def reason_key(text: str) -> str:
    """The bounded label of one refusal reason: its ``table.column`` (or ``table``) prefix --
    the rest of the text names values and would make one series per bad value."""
    head = text.split(":", 1)[0].strip()
    return head or OTHER_REASON


def model_reference(model: Any) -> dict[str, Any] | None:
    """The monitoring reference logged with ``model``'s training run, or ``None`` (with a log
    line: the service then reports no PSI) when the model has none."""
    from returnrisk.train.reference import MissingReferenceError, load_reference

    version = str(getattr(model, "version", "?"))
    try:
        return load_reference(getattr(model, "run_id", "") or "", version=version)
    except MissingReferenceError as err:
        logger.warning("score PSI not reported (returnrisk_watch_score_psi is NaN): %s", err)
        return None


class Watch:
    """The rolling window of one scoring state (thread-safe)."""

    def __init__(
        self,
        window: int,
        min_orders: int,
        reference: Mapping[str, Any] | None,
        categorical: Sequence[str],
    ):
        if window < 1 or min_orders < 1:
            raise ValueError(f"watch: window ({window}) and min_orders ({min_orders}) must be >= 1")
        self.window = int(window)
        self.min_orders = int(min_orders)
        self.reference = reference
        self.features = list(categorical)
        if len(self.features) > 64:
            logger.warning(
                "watch: %d categorical features, the unseen share is reported for the first 64",
                len(self.features),
            )
            self.features = self.features[:64]
        self._col = {f: 1 << j for j, f in enumerate(self.features)}  # feature -> its bit
        self._lock = threading.Lock()
        self._pos = 0
        self._status = np.zeros(window, dtype=np.int8)
        self._p = np.full(window, np.nan)
        self._flagged = np.zeros(window, dtype=bool)
        self._unseen = np.zeros(window, dtype=np.uint64)  # bit j: feature j unseen
        self._reasons = np.zeros(window, dtype=np.uint64)
        self._reason_bit: dict[str, int] = {}
        self._edges: np.ndarray | None
        self._ref_shares: np.ndarray | None
        if reference is not None:
            self._edges = np.asarray(reference["score"]["edges"], dtype=np.float64)
            self._ref_shares = np.asarray(reference["score"]["shares"], dtype=np.float64)
            self._ref_mean = reference.get("expected_case_rate")
        else:
            self._edges = self._ref_shares = None
            self._ref_mean = None

    # -- recording (the request path) ----------------------------------------------------------
    def record_one(self, p: float, flagged: bool, unseen: Mapping[str, int]) -> None:
        """One scored order: O(1)."""
        col = self._col
        mask = sum(col[f] for f, n in unseen.items() if n and f in col)
        with self._lock:
            i = self._pos
            self._status[i] = SCORED
            self._p[i] = p
            self._flagged[i] = flagged
            self._unseen[i] = mask
            self._reasons[i] = 0
            self._pos = i + 1 if i + 1 < self.window else 0

    def record_batch(self, results: pd.DataFrame, unseen: Mapping[str, int]) -> dict[str, int]:
        """The orders of one full-path answer (``ScoreResult.results``: ``status``,
        ``probability``, ``flagged``, ``refused_reason``), in order; returns the number of
        refused orders per reason key."""
        n = len(results)
        if n == 0:
            return {}
        refused = (results["status"] == "refused").to_numpy()
        p = pd.to_numeric(results["probability"], errors="coerce").to_numpy(dtype=np.float64)
        flagged = results["flagged"].fillna(False).to_numpy(dtype=bool) & ~refused
        masks, counts = self._reason_masks(results["refused_reason"], refused)
        unseen_bits = np.zeros(n, dtype=np.uint64)
        scored_rows = np.flatnonzero(~refused)
        for f, k in unseen.items():  # a loop over features
            if k and f in self._col:
                unseen_bits[scored_rows[: int(k)]] |= np.uint64(self._col[f])
        keep = slice(max(0, n - self.window), n)  # a batch longer than the window: its tail
        m = n - keep.start
        with self._lock:
            idx = (self._pos + np.arange(m)) % self.window
            self._status[idx] = np.where(refused[keep], REFUSED, SCORED)
            self._p[idx] = np.where(refused[keep], np.nan, p[keep])
            self._flagged[idx] = flagged[keep]
            self._unseen[idx] = unseen_bits[keep]
            self._reasons[idx] = masks[keep]
            self._pos = int((self._pos + m) % self.window)
        return counts

    def _reason_masks(
        self, reasons: pd.Series, refused: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Per order the bit mask of its reasons' keys; refused orders per key."""
        masks = np.zeros(len(reasons), dtype=np.uint64)
        if not refused.any():
            return masks, {}
        text = reasons.to_numpy(dtype=object)[refused]
        codes, distinct = pd.factorize(text, use_na_sentinel=False)
        by_text = np.zeros(len(distinct), dtype=np.uint64)
        for j, t in enumerate(distinct):  # a loop over distinct reason texts, not orders
            keys = {reason_key(r) for r in str(t).split("; ")} if isinstance(t, str) else set()
            for key in keys or {OTHER_REASON}:
                by_text[j] |= np.uint64(1) << np.uint64(self._bit(key))
        masks[refused] = by_text[codes]
        with self._lock:
            named = self._named_bits()
        counts = {}
        for key, bit in named.items():  # a loop over distinct reasons
            hit = int(np.count_nonzero(masks[refused] & (np.uint64(1) << np.uint64(bit))))
            if hit:
                counts[key] = hit
        return masks, counts

    def _named_bits(self) -> dict[str, int]:
        bits = dict(self._reason_bit)
        return {**bits, OTHER_REASON: MAX_REASONS} if len(bits) >= MAX_REASONS else bits

    def _bit(self, key: str) -> int:
        with self._lock:
            bit = self._reason_bit.get(key)
            if bit is None:
                if len(self._reason_bit) >= MAX_REASONS:
                    return MAX_REASONS
                bit = self._reason_bit[key] = len(self._reason_bit)
        return bit

    # -- the gauges (on scrape) ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The gauges' values over the window (NaN where not reportable)."""
        from returnrisk.train.reference import numeric_shares

        from .monitor_signals import psi, smoothed_shares

        with self._lock:
            status = self._status.copy()
            p = self._p.copy()
            flagged = self._flagged.copy()
            unseen = self._unseen.copy()
            reasons = self._reasons.copy()
            named = self._named_bits()
        scored = status == SCORED
        n_scored = int(scored.sum())
        n_refused = int((status == REFUSED).sum())
        n_all = n_scored + n_refused
        nan = math.nan
        enough = n_scored >= self.min_orders
        out: dict[str, Any] = {
            "scored": n_scored,
            "refused": n_refused,
            "score_psi": nan,
            "mean_probability": float(p[scored].mean()) if enough else nan,
            "flag_rate": float(flagged[scored].mean()) if enough else nan,
            "unseen_share": {
                f: float(np.count_nonzero(unseen[scored] & np.uint64(b)) / n_scored)
                if enough
                else nan
                for f, b in self._col.items()
            },
            "refused_share": {},
        }
        if enough and self._edges is not None and self._ref_shares is not None:
            shares = smoothed_shares(numeric_shares(p[scored], self._edges.tolist()), n_scored)
            out["score_psi"] = psi(shares, self._ref_shares)
        if n_refused:
            for key, bit in named.items():  # a loop over distinct reasons
                hit = int(np.count_nonzero(reasons & (np.uint64(1) << np.uint64(bit))))
                if hit:
                    out["refused_share"][key] = hit / n_all if n_all >= self.min_orders else nan
        return out

    def families(self) -> Iterator[GaugeMetricFamily]:
        """The gauges as Prometheus metric families (``Metrics`` yields them on scrape)."""
        s = self.snapshot()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"returnrisk_watch_{name}", doc, value=value)

        orders = GaugeMetricFamily(
            "returnrisk_watch_orders", "orders in the window by status", labels=["status"]
        )
        orders.add_metric(["scored"], s["scored"])
        orders.add_metric(["refused"], s["refused"])
        yield orders
        yield gauge("window_size", "orders the window holds when full", self.window)
        yield gauge("min_orders", "orders before a window ratio is reported", self.min_orders)
        yield gauge(
            "reference_loaded",
            "1 when the served model has a monitoring reference (else no score PSI)",
            1.0 if self.reference is not None else 0.0,
        )
        yield gauge(
            "score_psi", "PSI of the window's probabilities vs the reference", s["score_psi"]
        )
        yield gauge("mean_probability", "mean probability of the window", s["mean_probability"])
        ref_mean = self._ref_mean if self._ref_mean is not None else math.nan
        yield gauge(
            "reference_mean_probability",
            "mean probability of the reference (its expected case rate)",
            float(ref_mean),
        )
        yield gauge("flag_rate", "flagged / scored orders in the window", s["flag_rate"])
        unseen = GaugeMetricFamily(
            "returnrisk_watch_unseen_share",
            "scored orders in the window with a category unseen in training, by feature",
            labels=["feature"],
        )
        for f, v in s["unseen_share"].items():
            unseen.add_metric([f], v)
        yield unseen
        refused = GaugeMetricFamily(
            "returnrisk_watch_refused_share",
            "orders in the window refused for a reason (table.column) / orders received",
            labels=["reason"],
        )
        for key, v in sorted(s["refused_share"].items()):
            refused.add_metric([key], v)
        yield refused
