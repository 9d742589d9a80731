"""RiskModel: category casting + LightGBM (native categoricals) + a probability calibrator.

One object holds everything needed to go from the feature table's plain columns (strings for
categorical features, numbers for the rest) to a calibrated P(after-sales case):

1. ``prepare``: cast every categorical column to the categories seen in training (an unseen
   category becomes missing and is *counted*), every numeric column to float64; ``encode`` does
   the same straight into a float64 matrix (category -> its code), the inference path;
2. a LightGBM booster trained with early stopping on a time-ordered validation slice;
3. a calibrator (isotonic or sigmoid/Platt, chosen by time-ordered cross-validation on the
   validation slice) mapping the booster's raw score to a probability.

``RiskModel`` is a scikit-learn estimator (``BaseEstimator`` + ``ClassifierMixin``: parameters
only in ``__init__``, fitted state ending in ``_``, ``check_is_fitted``, ``clone``,
``predict_proba`` of shape (n, 2)). ``fit(X, y)`` alone keeps the time-ordered calibration: the
last ``valid_fraction`` of the (time-sorted) rows is the validation slice; the pipeline passes
its own validation slice explicitly. The inference fast path (``encode`` -> ``predict_matrix``
/ ``contributions_matrix``) and ``predict_with_unseen`` give the 1-D P(case).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from returnrisk.errors import ReturnriskError

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
_OBJECT = np.dtype(object)
_ONE_THREAD_ROWS = 128
"""Encoded batches up to this size are predicted on one thread: waking LightGBM's OpenMP team
costs more than scoring a few rows (~0.1 ms per call on a busy 2-core host)."""


class ModelInputError(ReturnriskError, ValueError):
    """The frame given to a fitted model does not have the columns/types it was trained on."""


def _is_categorical_dtype(dtype: Any) -> bool:
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def _numeric_to_float(name: str, col: pd.Series) -> np.ndarray:
    """float64 values of a numeric feature column (missing -> NaN)."""
    if _is_categorical_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        try:
            return pd.to_numeric(col, errors="raise").astype("float64").to_numpy()
        except (ValueError, TypeError) as err:
            raise ModelInputError(
                f"numeric feature {name!r} has non-numeric values, e.g. "
                f"{col.dropna().head(3).tolist()}"
            ) from err
    return col.astype("float64").to_numpy(na_value=np.nan)


def _n_rows(name: str, values: Any) -> int:
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise ModelInputError(f"feature {name!r}: expected 1-D values, got {values!r}")
    return len(values)


def _object_values(values: Any) -> np.ndarray:
    """``values`` as an object ndarray (missing stays None/NaN/NA, nothing cast to str yet)."""
    if isinstance(values, pd.Series | pd.Index):
        values = values.array
    if isinstance(values, np.ndarray):
        return values if values.dtype == object else values.astype(object)
    if isinstance(values, pd.api.extensions.ExtensionArray):
        return values.to_numpy(dtype=object)
    return np.asarray(values, dtype=object)


@dataclass(frozen=True)
class _Encoding:
    """Lookups ``RiskModel.encode`` derives from the fitted attributes (cached, never pickled)."""

    num_names: list[str]
    num_pos: np.ndarray  # positions of the numeric features in feature_names_
    cat_pos: np.ndarray  # positions of the categorical features in feature_names_
    index: pd.Index  # every training category of every categorical feature, once
    table: np.ndarray  # [j, position in index] -> code in feature j's categories; -1 = none
    rows: np.ndarray  # arange(n categorical features)[:, None], to index ``table``


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


class _Calibrator(Protocol):
    def fit(self, raw: np.ndarray, y: np.ndarray) -> _Calibrator: ...

    def predict(self, raw: np.ndarray) -> np.ndarray: ...


_CALIBRATOR_CLASSES: dict[str, type[_Calibrator]] = {
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


class RiskModel(ClassifierMixin, BaseEstimator):
    """Preprocessing + LightGBM booster + calibrator, a scikit-learn estimator.

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
    valid_fraction: when ``fit`` gets no validation slice, the last this share of the rows
        (which must be sorted by time) is held out for early stopping and calibration.
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
        valid_fraction: float = 0.2,
    ) -> None:
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.calibration = calibration
        self.categorical_features = categorical_features
        self.valid_fraction = valid_fraction

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
        X_valid: pd.DataFrame | None = None,
        y_valid: Sequence[float] | np.ndarray | pd.Series | None = None,
    ) -> RiskModel:
        """Fit on ``X_train`` with early stopping and calibration on ``X_valid`` (the slice
        after it in time); without one, on the last ``valid_fraction`` of ``X_train``'s rows."""
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if (X_valid is None) != (y_valid is None):
            raise ValueError("pass both X_valid and y_valid, or neither")
        if X_valid is None:
            if not 0 < self.valid_fraction < 1:
                raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
            y_all = np.asarray(y_train)
            cut = len(X_train) - int(round(len(X_train) * self.valid_fraction))
            X_train, X_valid = X_train.iloc[:cut], X_train.iloc[cut:]
            y_train, y_valid = y_all[:cut], y_all[cut:]
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
        self.__dict__.pop("_encoding_cache", None)
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
                self.calibration_ = min(
                    self.calibration_scores_, key=self.calibration_scores_.__getitem__
                )
        else:
            self.calibration_scores_ = {}
            self.calibration_ = self.calibration
        self.calibrator_ = _CALIBRATOR_CLASSES[self.calibration_]().fit(raw_valid, y_va)
        self.n_train_ = len(X_train)
        self.n_valid_ = len(X_valid)
        self.classes_ = np.array([0.0, 1.0])
        self.n_features_in_ = len(self.feature_names_)
        return self

    # ------------------------------------------------------------------ inference
    def _check_fitted(self, attributes: tuple[str, ...] = ("booster_",)) -> None:
        check_is_fitted(self, attributes)

    def prepare(self, X: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """Cast ``X`` to the training layout; return it and the count of unseen categories.

        Extra columns are ignored; a missing feature column raises ``ModelInputError``.
        A category not seen in training is treated as missing (LightGBM's missing branch)
        and counted per column. ``X`` is not modified.
        """
        self._check_fitted(("feature_names_", "categories_"))  # also during fit
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
                out[c] = _numeric_to_float(c, col)
        prepared = pd.DataFrame(out, index=X.index)[self.feature_names_]
        return prepared, unseen

    def encode(self, X: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
        """Encode ``X`` into the booster's input matrix; return it and the unseen-category counts.

        ``X`` is a DataFrame or a mapping of column name -> 1-D values (list, ndarray, pandas
        array). The result is a C-contiguous float64 array, one column per ``feature_names_``:
        a categorical value becomes its position in ``categories_[c]`` (the pandas Categorical
        code LightGBM uses), a numeric value its float; missing -> NaN. As in ``prepare``, a
        category not seen in training becomes missing and is counted, non-str categorical values
        are compared as ``str(value)``, and a missing column raises ``ModelInputError``.
        """
        self._check_fitted(("feature_names_", "categories_"))
        names = self.feature_names_
        missing = [c for c in names if c not in X]
        if missing:
            raise ModelInputError(
                f"feature table lacks {len(missing)} model feature column(s): {missing[:10]}"
            )
        enc = self._encoding()
        if isinstance(X, pd.DataFrame):
            cols: Mapping[str, Any] = {c: X[c] for c in names}
            n = len(X)
        else:
            cols = X
            n = _n_rows(names[0], X[names[0]]) if names else 0
        out = np.empty((n, len(names)), dtype=np.float64)
        if enc.num_names:
            out[:, enc.num_pos] = self._float_block(cols, enc.num_names, n).T
        cats = self.categorical_features_
        if not cats:
            return out, {}
        # all categorical columns in one lookup: values of feature j at [j * n, (j + 1) * n)
        values = self._object_block(cols, cats, n).ravel()
        if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
            values = pd.Series(values, dtype=object).astype("str").to_numpy(dtype=object)
        found = enc.index.get_indexer(pd.Index(values, dtype=object, copy=False))
        codes = enc.table[enc.rows, found.reshape(len(cats), n)]  # found -1: last column
        absent = codes < 0
        counts = np.count_nonzero(absent & ~pd.isna(values).reshape(len(cats), n), axis=1)
        codes = codes.astype(np.float64)
        codes[absent] = np.nan
        out[:, enc.cat_pos] = codes.T
        return out, dict(zip(cats, counts.tolist(), strict=True))

    @staticmethod
    def _object_block(cols: Mapping[str, Any], names: list[str], n: int) -> np.ndarray:
        """object (len(names), n) block of the categorical features, values not yet str-cast."""
        try:  # one call when every column is a sequence of n values
            block = np.array([cols[c] for c in names], dtype=object)
        except ValueError:
            block = None
        if block is not None and block.shape == (len(names), n):
            return block
        block = np.empty((len(names), n), dtype=object)
        for i, c in enumerate(names):
            values = _object_values(cols[c])
            if values.ndim != 1:
                raise ModelInputError(f"feature {c!r}: expected 1-D values, got {cols[c]!r}")
            if len(values) != n:
                raise ModelInputError(f"feature {c!r}: expected {n} values, got {len(values)}")
            block[i] = values
        return block

    @staticmethod
    def _float_block(cols: Mapping[str, Any], names: list[str], n: int) -> np.ndarray:
        """float64 (len(names), n) block of the numeric features (missing -> NaN)."""
        values = [cols[c] for c in names]
        # lists (numbers / None) and numeric arrays in one call; other columns (text, object,
        # nullable, wrong length) one by one through ``prepare``'s conversion and its errors
        plain = [
            i
            for i, v in enumerate(values)
            if isinstance(v, list) or getattr(v, "dtype", _OBJECT).kind in "biuf"
        ]
        try:
            part = np.array([values[i] for i in plain], dtype=np.float64)
        except (TypeError, ValueError):
            part = None
        if part is not None and part.shape == (len(plain), n):
            if len(plain) == len(names):
                return part
            rest = sorted(set(range(len(names))) - set(plain))
        else:
            part, rest = None, list(range(len(names)))
        block = np.empty((len(names), n), dtype=np.float64)
        if part is not None:
            block[plain] = part
        for i in rest:
            c, v = names[i], values[i]
            if not isinstance(v, pd.Series) and np.ndim(v) != 1:
                raise ModelInputError(f"feature {c!r}: expected 1-D values, got {v!r}")
            col = v if isinstance(v, pd.Series) else pd.Series(v)
            if len(col) != n:
                raise ModelInputError(f"feature {c!r}: expected {n} values, got {len(col)}")
            block[i] = _numeric_to_float(c, col)
        return block

    def _encoding(self) -> _Encoding:
        """The cached lookups of ``encode`` (built on first use, also after unpickling)."""
        enc = self.__dict__.get("_encoding_cache")
        if enc is None:
            cat_set = set(self.categorical_features_)
            num = [(j, c) for j, c in enumerate(self.feature_names_) if c not in cat_set]
            cats = self.categorical_features_
            index = pd.Index(
                list(dict.fromkeys(v for c in cats for v in self.categories_[c])), dtype=object
            )
            table = np.full((len(cats), len(index) + 1), -1, dtype=np.intp)  # [:, -1]: unknown
            for j, c in enumerate(cats):
                found = index.get_indexer(pd.Index(self.categories_[c], dtype=object))
                table[j, found] = np.arange(len(found))
            enc = _Encoding(
                num_names=[c for _, c in num],
                num_pos=np.array([j for j, _ in num], dtype=np.intp),
                cat_pos=np.array([self.feature_names_.index(c) for c in cats], dtype=np.intp),
                index=index,
                table=table,
                rows=np.arange(len(cats))[:, None],
            )
            self._encoding_cache = enc
        return enc

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the ``encode`` cache (derived from the fitted attributes)."""
        state = dict(super().__getstate__())
        state.pop("_encoding_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before ``valid_fraction`` existed load with its default."""
        super().__setstate__({"valid_fraction": 0.2, **state})

    def _check_matrix(self, matrix: np.ndarray) -> np.ndarray:
        self._check_fitted()
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names_):
            raise ModelInputError(
                f"expected an encoded matrix with {len(self.feature_names_)} columns, "
                f"got shape {matrix.shape}"
            )
        return matrix

    def _booster_predict(self, matrix: np.ndarray, **kwargs: Any) -> np.ndarray:
        """``booster_.predict`` on a checked, non-empty encoded matrix, at the best iteration."""
        if len(matrix) <= _ONE_THREAD_ROWS:
            kwargs["num_threads"] = 1
        out = self.booster_.predict(matrix, num_iteration=self.best_iteration_, **kwargs)
        return np.asarray(out, dtype=np.float64)

    def _raw_matrix(self, matrix: np.ndarray) -> np.ndarray:
        matrix = self._check_matrix(matrix)
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        return self._booster_predict(matrix, raw_score=True)

    def raw_score(
        self, X: pd.DataFrame | Mapping[str, Any], *, _prepared: pd.DataFrame | None = None
    ) -> np.ndarray:
        """The booster's raw log-odds score (before calibration)."""
        self._check_fitted()
        if _prepared is None:
            return self._raw_matrix(self.encode(X)[0])
        return np.asarray(
            self.booster_.predict(_prepared, raw_score=True, num_iteration=self.best_iteration_),
            dtype=np.float64,
        )

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated P(case) for each row of an ``encode``d matrix, shape (n,)."""
        raw = self._raw_matrix(matrix)
        if len(raw) == 0:
            return raw
        return np.clip(self.calibrator_.predict(raw), 0.0, 1.0)

    def predict_proba(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """scikit-learn's form: shape (n, 2), columns P(no case), P(case) (calibrated)."""
        p = self.predict_case(X)
        return np.column_stack([1.0 - p, p])

    def predict_case(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Calibrated P(case) for each row, shape (n,) (``predict_proba(X)[:, 1]``)."""
        proba, unseen = self.predict_with_unseen(X)
        if any(unseen.values()):
            logger.info("unseen categories treated as missing: %s", _nonzero(unseen))
        return proba

    def predict(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """1.0 where P(case) >= 0.5, else 0.0 (operations use the probability itself)."""
        return (self.predict_case(X) >= 0.5).astype(np.float64)

    def predict_with_unseen(
        self, X: pd.DataFrame | Mapping[str, Any]
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Calibrated probabilities and the per-column count of unseen categories."""
        self._check_fitted()
        matrix, unseen = self.encode(X)
        return self.predict_matrix(matrix), unseen

    def contributions_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """``pred_contrib`` of an ``encode``d matrix: shape (n, features + 1), bias last."""
        matrix = self._check_matrix(matrix)
        if len(matrix) == 0:
            return np.empty((0, len(self.feature_names_) + 1), dtype=np.float64)
        return self._booster_predict(matrix, pred_contrib=True)

    def contributions(self, X: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
        """SHAP values (TreeSHAP, ``pred_contrib``) per feature + ``bias``, in log-odds units
        of the uncalibrated booster; rows sum to ``raw_score``."""
        self._check_fitted()
        matrix, _ = self.encode(X)
        return pd.DataFrame(
            self.contributions_matrix(matrix),
            columns=[*self.feature_names_, "bias"],
            index=X.index if isinstance(X, pd.DataFrame) else None,
        )

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
