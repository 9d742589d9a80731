"""What serve uses from a trained model: the ``ScoringModel`` protocol.

``train.registry.load_model`` returns a ``LoadedModel`` (a ``RiskModel`` plus its registry
facts) that satisfies it; serve depends on the protocol, not on the training stage, so a test
can hand ``ScoringState`` a small fake model (``fake_model`` in ``tests/conftest.py``) instead
of training LightGBM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd


class Predictor(Protocol):
    """The fitted model: features -> matrix -> P(case) and per-feature contributions."""

    @property
    def feature_names_(self) -> Sequence[str]:
        """The model's features, in the column order of ``encode``'s matrix."""
        ...

    def encode(self, X: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
        """(float64 matrix (n, features), unseen-category counts per categorical feature)."""
        ...

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated P(case) per row, shape (n,)."""
        ...

    def contributions_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Contributions per row, shape (n, features + 1), the bias last."""
        ...


class ScoringModel(Protocol):
    """A loaded model as serve uses it: the predictor and what ``GET /v1/model`` tells."""

    @property
    def risk_model(self) -> Predictor: ...

    @property
    def uri(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def metrics(self) -> Mapping[str, float]: ...

    @property
    def data_window(self) -> Mapping[str, Any]: ...
