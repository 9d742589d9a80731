"""Hyper-parameter search: Optuna TPE + median pruning over time-ordered (expanding) folds
(scikit-learn's ``TimeSeriesSplit``, optionally with a gap).

The study is persisted in an sqlite file next to the MLflow tracking database (``mlflow.db`` ->
``mlflow-optuna.db``; both libraries keep their schema version in a table named
``alembic_version``, so they cannot share one file). The study name is derived from the data
fingerprint, the seed and the fitting slice (``pipeline.study_name``), so re-running an
interrupted ``returnrisk train --tune-trials N`` on the same data resumes the same study and
only runs the trials still missing, and a fit on other rows never resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.progress import QUIET, StepLog

from .model import RiskModel


@dataclass(frozen=True)
class TuneConfig:
    n_trials: int = 20
    n_folds: int = 3
    gap: int = 0  # rows left out between each fold's training rows and its validation block
    seed: int = 0
    n_estimators: int = 1000
    early_stopping_rounds: int = 50
    storage: str | None = None  # sqlite URL; None = derived from the tracking URI
    study_name: str | None = None


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    n_trials: int
    n_complete: int
    n_pruned: int
    study_name: str
    storage: str


def storage_for(tracking_uri: str) -> str:
    """The Optuna storage URL beside a ``sqlite:///.../x.db`` tracking store (else cwd)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        db = Path(tracking_uri[len(prefix) :])
        return f"{prefix}{db.with_name(db.stem + '-optuna.db')}"
    return f"{prefix}{Path.cwd() / 'mlflow-optuna.db'}"


def suggest_params(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 1000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
        "min_data_per_group": trial.suggest_int("min_data_per_group", 10, 500, log=True),
    }


def time_folds(n: int, n_folds: int, gap: int = 0) -> list[tuple[slice, slice]]:
    """Expanding-window folds over ``n`` time-sorted rows, as scikit-learn's
    ``TimeSeriesSplit(n_splits=n_folds, gap=gap)`` draws them: fold i validates on the
    (i+1)-th of ``n_folds`` equal blocks at the end and trains on every row before it, less
    the ``gap`` rows just before the block. Contiguous and time-ordered, so returned as slices."""
    from sklearn.model_selection import TimeSeriesSplit

    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    split = TimeSeriesSplit(n_splits=n_folds, gap=gap)
    return [
        (slice(0, int(tr[-1]) + 1), slice(int(va[0]), int(va[-1]) + 1))
        for tr, va in split.split(np.empty((n, 1)))
    ]


def tune(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: Sequence[str],
    config: TuneConfig,
    *,
    log: StepLog = QUIET,
) -> TuneResult:
    """Minimise the mean validation log loss over time-ordered folds of ``X`` (sorted by time)."""
    import optuna

    if config.storage is None or config.study_name is None:
        raise ValueError("TuneConfig.storage and study_name must be set by the caller")
    y = np.asarray(y, dtype=np.float64)
    folds = time_folds(len(X), config.n_folds, config.gap)
    for i, (tr, va) in enumerate(folds):
        yt, yv = y[tr], y[va]
        if yt.min() == yt.max() or yv.min() == yv.max():
            raise ValueError(f"tuning fold {i} has a single class; too little data to tune")

    def objective(trial: Any) -> float:
        params = suggest_params(trial)
        losses = []
        for step, (tr, va) in enumerate(folds):
            model = RiskModel(
                params,
                n_estimators=config.n_estimators,
                early_stopping_rounds=config.early_stopping_rounds,
                seed=config.seed,
                calibration="none",
                categorical_features=list(categorical),
            ).fit(X.iloc[tr], y[tr], X.iloc[va], y[va])
            losses.append(float(model.booster_.best_score["valid"]["binary_logloss"]))
            trial.report(float(np.mean(losses)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(losses))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=config.study_name,
        storage=config.storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        load_if_exists=True,
    )
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=done_states))
    remaining = max(0, config.n_trials - done)
    log.info(f"tuning study {config.study_name}: {done} trial(s) already done, running {remaining}")

    def progress(study: Any, trial: Any) -> None:
        best = study.best_value if study.best_trial is not None else float("nan")
        log.info(f"trial {trial.number}: {trial.state.name} value={trial.value} best={best:.5f}")

    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[progress])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"tuning study {config.study_name} has no completed trial")
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    return TuneResult(
        best_params=dict(study.best_params),
        best_value=float(study.best_value),
        n_trials=len(complete) + len(pruned),
        n_complete=len(complete),
        n_pruned=len(pruned),
        study_name=config.study_name,
        storage=config.storage,
    )
