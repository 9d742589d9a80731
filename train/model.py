"""RiskModel: category casting + LightGBM (native categoricals) + a probability calibrator.

One object holds everything needed to go from the feature table's plain columns (strings for
categorical features, numbers for the rest) to a calibrated P(after-sales case):

1. ``prepare``: cast every categorical column to the categories seen in training (an unseen
   category becomes missing and is *counted*), every numeric column to float64;
2. a LightGBM booster trained with early stopping on a time-ordered validation slice;
3. a calibrator (isotonic or sigmoid/Platt, chosen by time-ordered cross-validation on the
   validation slice) mapping the booster's raw score to a probability.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

logger = logging.getLogger("returnrisk.train")

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": "auto",  # n_train / 250, clipped to [20, 400]
    "feature_fraction": 0.5,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "cat_smooth": 100.0,
    "cat_l2": 10.0,
    "min_data_per_group": "auto",  # same as min_data_in_leaf
    "max_cat_to_onehot": 4,
    "max_bin": 255,
    "verbose": -1,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 2,
}
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "none")
_EPS = 1e-6


class ModelInputError(ValueError):
    """The frame given to a fitted model does not have the columns/types it was trained on."""


def _is_categorical_dtype(dtype: Any) -> bool:
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class _SigmoidCalibrator:
    """Platt scaling on the booster's raw log-odds score."""

    def fit(self, raw: np.ndarray, y: np.ndarray) -> _SigmoidCalibrator:
        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(raw.reshape(-1, 1), y)
        self.a_ = float(lr.coef_[0, 0])
        self.b_ = float(lr.intercept_[0])
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a_ * raw + self.b_)))


class _IsotonicCalibrator:
    """Isotonic regression on the booster's raw score (clipped outside the fitted range)."""

    def fit(self, raw: np.ndarray, y: np.ndarray) -> _IsotonicCalibrator:
        self.iso_ = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip")
        self.iso_.fit(raw, y)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(self.iso_.predict(raw), dtype=np.float64)


class _IdentityCalibrator:
    def fit(self, raw: np.ndarray, y: np.ndarray) -> _IdentityCalibrator:
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-raw))


_CALIBRATOR_CLASSES = {
    "isotonic": _IsotonicCalibrator,
    "sigmoid": _SigmoidCalibrator,
    "none": _IdentityCalibrator,
}


def choose_calibration(raw: np.ndarray, y: np.ndarray, n_folds: int = 4) -> dict[str, float]:
    """Out-of-fold log loss of each calibrator on the validation slice (time-ordered folds).

    Each contiguous block of the (time-sorted) validation slice is predicted by a calibrator
    fitted on the other blocks, so the more flexible isotonic map does not win by overfitting.
    """
    n = len(y)
    bounds = np.linspace(0, n, n_folds + 1).astype(int)
    scores: dict[str, float] = {}
    for name in ("isotonic", "sigmoid"):
        oof = np.empty(n)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            mask = np.zeros(n, dtype=bool)
            mask[lo:hi] = True
            y_fit = y[~mask]
            if y_fit.min() == y_fit.max():
                oof[mask] = y_fit.mean()
                continue
            cal = _CALIBRATOR_CLASSES[name]().fit(raw[~mask], y_fit)
            oof[mask] = cal.predict(raw[mask])
        scores[name] = _log_loss(y, oof)
    return scores


class RiskModel:
    """Preprocessing + LightGBM booster + calibrator, scikit-learn style.

    Parameters
    ----------
    params: LightGBM parameters overriding ``DEFAULT_PARAMS``.
    n_estimators: maximum boosting rounds (early stopping on the validation slice decides).
    early_stopping_rounds: rounds without improvement of the validation log loss before stopping.
    seed: seed of every random choice (bagging, feature fraction).
    calibration: ``"auto"`` (isotonic vs sigmoid, chosen on validation), ``"isotonic"``,
        ``"sigmoid"`` or ``"none"``.
    categorical_features: names of the categorical columns; ``None`` = every string/object/
        category column of ``X_train``.
    """

    def __init__(
        self,
        params: dict | None = None,
        *,
        n_estimators: int = 2000,
        early_stopping_rounds: int = 100,
        seed: int = 0,
        calibration: str = "auto",
        categorical_features: Sequence[str] | None = None,
    ) -> None:
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.calibration = calibration
        self.categorical_features = categorical_features

    # ------------------------------------------------------------------ fitting
    def lgb_params(self, n_train: int | None = None) -> dict[str, Any]:
        """LightGBM parameters; ``"auto"`` sizes resolve from ``n_train`` (default: the fitted
        training size)."""
        params = {**DEFAULT_PARAMS, **(self.params or {})}
        n = n_train if n_train is not None else getattr(self, "n_train_", 10_000)
        auto = int(np.clip(n // 250, 20, 400))
        for key in ("min_data_in_leaf", "min_data_per_group"):
            if params.get(key) == "auto":
                params[key] = auto
        params["seed"] = self.seed
        params["deterministic"] = True
        params.pop("is_unbalance", None)
        params.pop("scale_pos_weight", None)
        return params

    def fit(
        self,
        X_train: pd.DataFrame,
        y_train: Sequence[float] | np.ndarray | pd.Series,
        X_valid: pd.DataFrame,
        y_valid: Sequence[float] | np.ndarray | pd.Series,
    ) -> RiskModel:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        y_tr = _check_labels(y_train, "y_train", len(X_train))
        y_va = _check_labels(y_valid, "y_valid", len(X_valid))
        if len(X_train) == 0 or len(X_valid) == 0:
            raise ValueError(
                f"need non-empty train and validation slices, got {len(X_train)} / {len(X_valid)}"
            )
        missing = [c for c in X_train.columns if c not in X_valid.columns]
        if missing:
            raise ModelInputError(f"X_valid lacks columns {missing} present in X_train")
        if self.categorical_features is None:
            cats = [c for c in X_train.columns if _is_categorical_dtype(X_train[c].dtype)]
        else:
            unknown = [c for c in self.categorical_features if c not in X_train.columns]
            if unknown:
                raise ModelInputError(f"categorical_features not in X_train: {unknown}")
            cats = list(self.categorical_features)
        self.feature_names_ = [str(c) for c in X_train.columns]
        self.categorical_features_ = [c for c in self.feature_names_ if c in set(cats)]
        self.categories_ = {
            c: sorted(pd.Series(X_train[c]).dropna().astype(str).unique().tolist())
            for c in self.categorical_features_
        }
        Xt, _ = self.prepare(X_train)
        Xv, unseen_valid = self.prepare(X_valid)
        self.unseen_valid_ = unseen_valid
        params = self.lgb_params(len(X_train))
        dtrain = lgb.Dataset(
            Xt, label=y_tr, categorical_feature=self.categorical_features_, free_raw_data=True
        )
        dvalid = lgb.Dataset(Xv, label=y_va, reference=dtrain)
        evals: dict = {}
        self.booster_ = lgb.train(
            params,
            dtrain,
            num_boost_round=self.n_estimators,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                lgb.record_evaluation(evals),
            ],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        self.valid_logloss_curve_ = [
            float(v) for v in evals.get("valid", {}).get("binary_logloss", [])
        ]
        raw_valid = self.raw_score(X_valid, _prepared=Xv)
        if self.calibration == "auto":
            if y_va.min() == y_va.max():
                self.calibration_scores_ = {}
                self.calibration_ = "none"
            else:
                self.calibration_scores_ = choose_calibration(raw_valid, y_va)
                self.calibration_ = min(self.calibration_scores_, key=self.calibration_scores_.get)
        else:
            self.calibration_scores_ = {}
            self.calibration_ = self.calibration
        self.calibrator_ = _CALIBRATOR_CLASSES[self.calibration_]().fit(raw_valid, y_va)
        self.n_train_ = len(X_train)
        self.n_valid_ = len(X_valid)
        return self

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("RiskModel is not fitted; call fit() first")

    def prepare(self, X: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """Cast ``X`` to the training layout; return it and the count of unseen categories.

        Extra columns are ignored; a missing feature column raises ``ModelInputError``.
        A category not seen in training is treated as missing (LightGBM's missing branch)
        and counted per column. ``X`` is not modified.
        """
        if not hasattr(self, "feature_names_"):
            raise RuntimeError("RiskModel is not fitted; call fit() first")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ModelInputError(
                f"feature table lacks {len(missing)} model feature column(s): {missing[:10]}"
            )
        out: dict[str, Any] = {}
        unseen: dict[str, int] = {}
        cat_set = set(self.categorical_features_)
        for c in self.feature_names_:
            col = X[c]
            if c in cat_set:
                values = col if pd.api.types.is_string_dtype(col.dtype) else col.astype("str")
                known = values.isin(self.categories_[c])
                unseen[c] = int((values.notna() & ~known).sum())
                out[c] = pd.Categorical(values.where(known), categories=self.categories_[c])
            else:
                if _is_categorical_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
                    try:
                        out[c] = pd.to_numeric(col, errors="raise").astype("float64").to_numpy()
                    except (ValueError, TypeError) as err:
                        raise ModelInputError(
                            f"numeric feature {c!r} has non-numeric values, e.g. "
                            f"{col.dropna().head(3).tolist()}"
                        ) from err
                else:
                    out[c] = col.astype("float64").to_numpy(na_value=np.nan)
        prepared = pd.DataFrame(out, index=X.index)[self.feature_names_]
        return prepared, unseen

    def raw_score(self, X: pd.DataFrame, *, _prepared: pd.DataFrame | None = None) -> np.ndarray:
        """The booster's raw log-odds score (before calibration)."""
        self._check_fitted()
        Xp = _prepared if _prepared is not None else self.prepare(X)[0]
        return np.asarray(
            self.booster_.predict(Xp, raw_score=True, num_iteration=self.best_iteration_),
            dtype=np.float64,
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(case) for each row, shape (n,)."""
        proba, unseen = self.predict_with_unseen(X)
        if any(unseen.values()):
            logger.info("unseen categories treated as missing: %s", _nonzero(unseen))
        return proba

    def predict_with_unseen(self, X: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """Calibrated probabilities and the per-column count of unseen categories."""
        self._check_fitted()
        Xp, unseen = self.prepare(X)
        if len(Xp) == 0:
            return np.empty(0, dtype=np.float64), unseen
        proba = self.calibrator_.predict(self.raw_score(X, _prepared=Xp))
        return np.clip(proba, 0.0, 1.0), unseen

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """SHAP values (TreeSHAP, ``pred_contrib``) per feature + ``bias``, in log-odds units
        of the uncalibrated booster; rows sum to ``raw_score``."""
        self._check_fitted()
        Xp, _ = self.prepare(X)
        cols = [*self.feature_names_, "bias"]
        if len(Xp) == 0:
            return pd.DataFrame(columns=cols, index=X.index, dtype="float64")
        contrib = self.booster_.predict(Xp, pred_contrib=True, num_iteration=self.best_iteration_)
        return pd.DataFrame(np.asarray(contrib, dtype=np.float64), columns=cols, index=X.index)

    def feature_importance(self) -> pd.DataFrame:
        """Gain and split importance per feature, sorted by gain."""
        self._check_fitted()
        return (
            pd.DataFrame(
                {
                    "feature": self.feature_names_,
                    "gain": self.booster_.feature_importance(
                        "gain", iteration=self.best_iteration_
                    ),
                    "split": self.booster_.feature_importance(
                        "split", iteration=self.best_iteration_
                    ),
                }
            )
            .sort_values(["gain", "feature"], ascending=[False, True])
            .reset_index(drop=True)
        )

    def feature_schema(self) -> list[dict[str, Any]]:
        """Feature list with types and (for categoricals) the training categories."""
        self._check_fitted()
        return [
            {
                "name": c,
                "kind": "categorical" if c in self.categories_ else "numeric",
                **({"categories": self.categories_[c]} if c in self.categories_ else {}),
            }
            for c in self.feature_names_
        ]


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def _check_labels(y: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be 1-D with {n} values, got shape {arr.shape}")
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"{name} must be 0/1 with no missing values; {int(bad.sum())} row(s) are not, "
            f"e.g. {arr[bad][:5].tolist()}"
        )
    return arr
