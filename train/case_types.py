"""Risk by case-type family: P(family) = P(case) x P(family | case).

``CaseTypeModel`` is a second LightGBM (multiclass) fitted on the *positive* training orders
only: given that an order gets a case, which family is its first one (the case that makes the
label; ``first_case_family``). Multiplying its probabilities by the calibrated P(case) of the
risk model gives, per order, one probability per family that add up to P(case) exactly
(``family_risk``). ``evaluate_families`` reports AUC and calibration per family.

The interface is small and stable so the registered model can carry it: ``fit(X, family)``,
``predict_family_proba(X)`` (rows add up to 1), ``families_``, ``feature_names_``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from returnrisk.costs import CASE_FAMILY, FAMILIES

from . import evaluate as ev
from .model import _ONE_THREAD_ROWS, DEFAULT_PARAMS

# the risk model's LightGBM settings, as a multiclass model with a fixed leaf size (the positive
# orders are few; the risk model's "auto" sizes are resolved from its own training rows)
FAMILY_PARAMS: dict[str, Any] = {
    **{k: v for k, v in DEFAULT_PARAMS.items() if k != "min_data_per_group"},
    "objective": "multiclass",
    "min_data_in_leaf": 40,
}


def first_case_family(
    orders: pd.DataFrame, cases: pd.DataFrame, order_ids: Sequence[str] | pd.Series
) -> pd.Series:
    """Per order in ``order_ids``: the family of its first case (earliest ``opened_ts``, ties by
    ``case_id``), missing when it has none. The first case is the one that sets the label of
    ``build_features`` (a case is never before its order), so for every positive order its
    family is that of the case inside the label window."""
    c = cases[["case_id", "order_id", "opened_ts", "case_type"]]
    c = c.sort_values(["order_id", "opened_ts", "case_id"], kind="stable")
    first = c.drop_duplicates("order_id", keep="first").set_index("order_id")["case_type"]
    fam = first.astype("str").map(CASE_FAMILY)
    ids = pd.Index(pd.Series(order_ids).astype("str"))
    return pd.Series(fam.reindex(ids).to_numpy(), index=ids, name="family", dtype="str")


class CaseTypeModel:
    """LightGBM multiclass: P(first case's family | the order gets a case).

    Categorical columns are cast to the categories seen in training (unseen -> missing), as the
    risk model does; numeric ones to float64.
    """

    n_without_family_: int  # set by fit_case_types: positive orders left out, no case found

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        n_estimators: int = 400,
        early_stopping_rounds: int = 40,
        seed: int = 0,
        categorical_features: Sequence[str] = (),
    ) -> None:
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.categorical_features = categorical_features

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise ValueError(f"feature table lacks case-type model column(s): {missing[:10]}")
        out: dict[str, Any] = {}
        for c in self.feature_names_:
            if c in self.categories_:
                values = X[c].astype("str")
                values = values.where(values.isin(self.categories_[c]))
                out[c] = pd.Categorical(values, categories=self.categories_[c])
            else:
                out[c] = pd.to_numeric(X[c], errors="raise").to_numpy(dtype=np.float64)
        return pd.DataFrame(out, index=X.index)

    def _codes(self, family: Sequence[str] | pd.Series, what: str) -> np.ndarray:
        fam = pd.Series(family, dtype="object").to_numpy()
        codes = pd.Index(FAMILIES).get_indexer(fam)
        if (codes < 0).any():
            bad = sorted({str(v) for v in fam[codes < 0]})
            raise ValueError(f"{what}: unknown case-type family {bad[:5]}; known: {FAMILIES}")
        return codes

    def fit(
        self,
        X: pd.DataFrame,
        family: Sequence[str] | pd.Series,
        X_valid: pd.DataFrame | None = None,
        family_valid: Sequence[str] | pd.Series | None = None,
    ) -> CaseTypeModel:
        """Fit on orders that got a case (``family``: the family of each one's first case)."""
        y = self._codes(family, "family")
        if len(y) != len(X) or len(y) == 0:
            raise ValueError(f"need one family per row of X, got {len(y)} for {len(X)} rows")
        self.feature_names_ = [str(c) for c in X.columns]
        cats = set(self.categorical_features)
        self.categories_ = {
            c: sorted(X[c].dropna().astype("str").unique().tolist())
            for c in self.feature_names_
            if c in cats
        }
        self.families_ = FAMILIES
        # a family never seen still gets a tiny share: LightGBM needs every class index
        self.class_counts_ = np.bincount(y, minlength=len(FAMILIES))
        params = {**FAMILY_PARAMS, **(self.params or {})}
        params.update(num_class=len(FAMILIES), seed=self.seed)
        dtrain = lgb.Dataset(self._prepare(X), label=y, categorical_feature=sorted(cats))
        callbacks: list[Any] = []
        valid_sets: list[Any] = []
        if X_valid is not None and family_valid is not None and len(X_valid):
            yv = self._codes(family_valid, "family_valid")
            valid_sets = [lgb.Dataset(self._prepare(X_valid), label=yv, reference=dtrain)]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(
            params,
            dtrain,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.n_estimators)
        return self

    def predict_family_proba(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """(n, len(FAMILIES)) P(family | case); every row adds up to 1. ``X``: a feature frame,
        or a mapping of column -> values (``features.online`` rows)."""
        if not hasattr(self, "booster_"):
            raise RuntimeError("CaseTypeModel is not fitted; call fit() first")
        matrix = self._matrix(X)
        # a few rows (the service's what-if variants) on one thread, as the risk model does
        kw: dict[str, Any] = {"num_threads": 1} if len(matrix) <= _ONE_THREAD_ROWS else {}
        p = self.booster_.predict(matrix, num_iteration=self.best_iteration_, **kw)
        p = np.asarray(p, dtype=np.float64).reshape(-1, len(FAMILIES))
        return p / p.sum(axis=1, keepdims=True)

    def _matrix(self, X: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """``_prepare(X)`` as the float matrix LightGBM makes of it (a category's code is its
        position in ``categories_``, an unseen or missing one NaN): the same predictions,
        without building a frame of categoricals (the service's what-if rows, ~1 ms not ~10)."""
        missing = [c for c in self.feature_names_ if c not in X]
        if missing:
            raise ValueError(f"feature table lacks case-type model column(s): {missing[:10]}")
        index = self.__dict__.get("_category_index")
        if index is None:  # once per model (not pickled with it: built again after loading)
            index = {c: pd.Index(v, dtype=object) for c, v in self.categories_.items()}
            self.__dict__["_category_index"] = index
        n = len(X) if isinstance(X, pd.DataFrame) else len(X[self.feature_names_[0]])
        out = np.empty((n, len(self.feature_names_)), dtype=np.float64)
        for j, c in enumerate(self.feature_names_):  # columns, not rows
            if c in index:
                values = pd.array(X[c], dtype="str").to_numpy(dtype=object)
                codes = index[c].get_indexer(values)
                out[:, j] = np.where(codes >= 0, codes, np.nan)
            elif isinstance(X[c], np.ndarray) and X[c].dtype.kind in "fiub":
                out[:, j] = X[c]  # the online rows' numbers: float arrays already
            else:
                out[:, j] = pd.to_numeric(pd.Series(X[c]), errors="raise").to_numpy(np.float64)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_category_index"}


def family_risk(p_case: np.ndarray, p_family_given_case: np.ndarray) -> pd.DataFrame:
    """Per order and family: P(case) x P(family | case), columns ``p_<family>``.

    The columns add up to ``p_case`` per order (up to float rounding)."""
    p = np.asarray(p_case, dtype=np.float64)[:, None] * np.asarray(p_family_given_case)
    return pd.DataFrame(p, columns=[f"p_{f}" for f in FAMILIES])


def evaluate_families(
    family: Sequence[str | None] | pd.Series, p_family: pd.DataFrame | np.ndarray
) -> dict[str, dict[str, float]]:
    """Per family: AUC, ECE, mean predicted and observed rate of "first case of this family"
    over every order (missing ``family``: no case), from ``family_risk``'s columns."""
    fam = pd.Series(family, dtype="object").to_numpy()
    p = np.asarray(p_family, dtype=np.float64)
    out: dict[str, dict[str, float]] = {}
    for j, f in enumerate(FAMILIES):
        y = (fam == f).astype(np.float64)
        m = ev.binary_metrics(y, p[:, j])
        out[f] = {k: m[k] for k in ("n_pos", "base_rate", "mean_pred", "auc", "ece")}
    return out


def fit_case_types(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    tables: Any,
    feature_names: Sequence[str],
    categorical: Sequence[str],
    *,
    seed: int = 0,
    num_threads: int = 2,
) -> CaseTypeModel | None:
    """The case-type model of a time split: fitted on the positive ``train`` orders, early
    stopping on the positive ``valid`` ones (the slices of ``train.pipeline.time_split``).

    A positive order whose cases the tables do not hold (labels given from elsewhere) has no
    family: it is left out and counted in ``n_without_family_``; ``None`` when no positive
    training order has one."""
    fits, missing = [], 0
    for part in (train, valid):
        pos = part[part["label"].to_numpy(dtype=np.float64) == 1]
        fam = first_case_family(tables.orders, tables.after_sales_cases, pos["order_id"])
        known = fam.notna().to_numpy()
        missing += int((~known).sum())
        fits.append((pos.loc[known, list(feature_names)], fam.to_numpy(dtype=object)[known]))
    if len(fits[0][1]) == 0:
        return None
    model = CaseTypeModel(
        {"num_threads": num_threads}, seed=seed, categorical_features=list(categorical)
    )
    model.fit(fits[0][0], fits[0][1], fits[1][0], fits[1][1])
    model.n_without_family_ = missing
    return model
