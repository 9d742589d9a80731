"""Scoring policy: probability -> 0-100 risk score, risk level and the flag.

The flag answers "is this order worth acting on before it ships?" in one of three ways:

- ``flag_top``: the top N % of the batch by probability (a daily screening capacity);
- ``flag_above``: probability at or above a threshold;
- ``case_cost`` + ``action_cost``: expected cost, flag when
  ``probability * case_cost > action_cost``.

Pure functions on arrays; no pandas state, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from returnrisk.errors import ReturnriskError

LEVELS = ("normal", "elevated", "highest")


class PolicyError(ReturnriskError, ValueError):
    """An inconsistent policy configuration (message names the option)."""


@dataclass(frozen=True)
class PolicyConfig:
    """How to turn probabilities into scores, levels and flags.

    ``level_cuts`` are risk-score cut points (0-100): a score at or above the first is
    ``elevated``, at or above the second ``highest``. Exactly one flag mode applies; when
    none is given, ``flag_top = 5`` (screen the riskiest 5 % of the batch).
    """

    flag_top: float | None = None
    flag_above: float | None = None
    case_cost: float | None = None
    action_cost: float | None = None
    level_cuts: tuple[float, float] = (20.0, 40.0)

    def __post_init__(self) -> None:
        modes = [
            self.flag_top is not None,
            self.flag_above is not None,
            self.case_cost is not None or self.action_cost is not None,
        ]
        if sum(modes) > 1:
            raise PolicyError(
                "choose one flag mode: --flag-top, --flag-above or --case-cost/--action-cost"
            )
        if (self.case_cost is None) != (self.action_cost is None):
            raise PolicyError("--case-cost and --action-cost go together")
        if self.flag_top is not None and not 0 <= self.flag_top <= 100:
            raise PolicyError(f"--flag-top must be a percentage in [0, 100], got {self.flag_top}")
        if self.flag_above is not None and not 0 <= self.flag_above <= 1:
            raise PolicyError(
                f"--flag-above must be a probability in [0, 1], got {self.flag_above}"
            )
        for name, value in (("--case-cost", self.case_cost), ("--action-cost", self.action_cost)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise PolicyError(f"{name} must be a finite number >= 0, got {value}")
        lo, hi = self.level_cuts
        if not (0 <= lo <= hi <= 100):
            raise PolicyError(
                f"level cut points must satisfy 0 <= elevated <= highest <= 100, got {lo}, {hi}"
            )

    @property
    def mode(self) -> str:
        if self.flag_above is not None:
            return "threshold"
        if self.case_cost is not None:
            return "expected_cost"
        return "top"

    @property
    def top_percent(self) -> float:
        return 5.0 if self.flag_top is None else float(self.flag_top)

    def describe(self) -> str:
        if self.mode == "threshold":
            return f"flag probability >= {self.flag_above:g}"
        if self.mode == "expected_cost":
            return f"flag probability x {self.case_cost:g} > {self.action_cost:g}"
        return f"flag top {self.top_percent:g} % of the batch"


def risk_score(probability: np.ndarray) -> np.ndarray:
    """0-100 risk score: the calibrated probability in percent, one decimal."""
    p = np.clip(np.asarray(probability, dtype="float64"), 0.0, 1.0)
    return np.round(p * 100.0, 1)


def risk_level(score: np.ndarray, cuts: tuple[float, float] = (20.0, 40.0)) -> np.ndarray:
    """``normal`` / ``elevated`` / ``highest`` from the score and its two cut points."""
    idx = np.searchsorted(np.asarray(cuts, dtype="float64"), np.asarray(score), side="right")
    return np.asarray(LEVELS, dtype=object)[idx]


def n_top(n: int, percent: float) -> int:
    """How many orders the top ``percent`` % of ``n`` is (rounded up; 0 only for 0 %)."""
    return min(n, math.ceil(n * percent / 100.0 - 1e-9))


def flag(probability: np.ndarray, order_ids: np.ndarray, config: PolicyConfig) -> np.ndarray:
    """Boolean flag per order. Ties in the top-N mode are broken by order_id (deterministic)."""
    p = np.asarray(probability, dtype="float64")
    if config.flag_above is not None:
        return p >= config.flag_above
    if config.case_cost is not None and config.action_cost is not None:
        return p * config.case_cost > config.action_cost
    k = n_top(len(p), config.top_percent)
    out = np.zeros(len(p), dtype=bool)
    if k:
        # sort by probability descending, then order_id ascending
        order = np.lexsort((np.asarray(order_ids, dtype=str), -p))
        out[order[:k]] = True
    return out


def apply_policy(
    order_ids: pd.Series | np.ndarray, probability: np.ndarray, config: PolicyConfig
) -> pd.DataFrame:
    """order_id, probability, risk_score, risk_level, flagged (same order as the input)."""
    p = np.asarray(probability, dtype="float64")
    score = risk_score(p)
    return pd.DataFrame(
        {
            "order_id": pd.Series(np.asarray(order_ids), dtype="str"),
            "probability": p,
            "risk_score": score,
            "risk_level": pd.Series(risk_level(score, config.level_cuts), dtype="str"),
            "flagged": flag(p, np.asarray(order_ids), config),
        }
    )
