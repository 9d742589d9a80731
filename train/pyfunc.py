"""MLflow pyfunc wrapper: plain feature columns in, calibrated probabilities out.

The artifact is one pickled :class:`~returnrisk.train.model.RiskModel` (preprocessing, booster,
calibrator). The pyfunc is logged as a "model from code" (MLflow 3's convention, no CloudPickle of
the wrapper): ``pyfunc_code.py`` beside this file is copied into each model version and calls
``mlflow.models.set_model(RiskModelPyfunc())``; MLflow imports it under a fresh module name per
load, so two versions load side by side in one process, each with its own artifact.

Categorical columns arrive as strings; the wrapper casts them to the training categories.
Unseen categories are treated as missing on purpose, counted per column, logged on the
``returnrisk.train`` logger and kept in ``last_unseen_`` (reach it with
``mlflow.pyfunc.load_model(uri).unwrap_python_model().last_unseen_``).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from .model import RiskModel

logger = logging.getLogger("returnrisk.train")

MODEL_ARTIFACT = "risk_model"
MODEL_FILE = "risk_model.pkl"
MODEL_CODE = Path(__file__).with_name("pyfunc_code.py")


def save_risk_model(model: RiskModel, directory: Path) -> Path:
    """Pickle ``model`` into ``directory`` (created) and return the file path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    with path.open("wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_risk_model(path: str | Path) -> RiskModel:
    with Path(path).open("rb") as fh:
        model = pickle.load(fh)
    if not isinstance(model, RiskModel):
        raise TypeError(f"{path} does not hold a RiskModel (got {type(model).__name__})")
    return model


class RiskModelPyfunc(PythonModel):
    """``predict(feature_frame) -> pd.Series`` of calibrated P(case), named ``p_case``."""

    def __init__(self) -> None:
        self.model: RiskModel | None = None
        self.last_unseen_: dict[str, int] = {}

    def load_context(self, context: Any) -> None:
        self.model = read_risk_model(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        if self.model is None:
            self.load_context(context)
        assert self.model is not None
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        proba, unseen = self.model.predict_with_unseen(frame)
        self.last_unseen_ = unseen
        nonzero = {k: v for k, v in unseen.items() if v}
        if nonzero:
            logger.warning("unseen categories treated as missing (rows per column): %s", nonzero)
        return pd.Series(np.asarray(proba, dtype=np.float64), index=frame.index, name="p_case")


def model_signature(model: RiskModel) -> Any:
    """Input: one column per feature (string for categoricals, double otherwise, optional);
    output: one double column."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string" if c in model.categories_ else "double", c, required=False)
            for c in model.feature_names_
        ]
    )
    outputs = Schema([ColSpec("double", "p_case")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(model: RiskModel, X: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """A few rows of plain columns (object strings / floats) the signature accepts."""
    rows = X[model.feature_names_].head(n)
    out = {}
    for c in model.feature_names_:
        if c in model.categories_:
            out[c] = rows[c].astype("object").where(rows[c].notna(), None)
        else:
            out[c] = rows[c].astype("float64")
    return pd.DataFrame(out).reset_index(drop=True)
