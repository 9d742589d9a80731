"""The ``train`` and ``retrain`` jobs.

train:   load tables -> point-in-time features -> time split of mature orders (train / validation /
         most recent mature weeks = test) -> [Optuna tuning] -> RiskModel (early stopping +
         calibration on validation) -> test metrics for the model and three baselines, slices,
         figures -> one MLflow run -> pyfunc registered as ``return-risk`` with alias
         ``challenger``.
retrain: train a challenger as above, score the champion and the challenger on the same latest
         mature window (the challenger's test slice), apply the gates, move ``@champion`` only
         when every gate passes and only if it still points at the champion compared with
         (compare-and-set); the decision and its figures go to the challenger's run.

Every MLflow run is opened by :func:`mlflow_run`, which ends it FAILED on an error and KILLED on
an interrupt (Ctrl-C, or SIGTERM under :func:`sigterm_as_interrupt`), never left RUNNING.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from returnrisk.errors import ReturnriskError
from returnrisk.progress import QUIET, StepLog

if TYPE_CHECKING:
    from returnrisk.contract import Tables

from . import evaluate as ev
from .model import RiskModel
from .names import CHALLENGER, CHAMPION, EXPERIMENT_NAME, MODEL_NAME
from .reference import write_reference
from .registry import (
    ChampionMovedError,
    GateConfig,
    GateDecision,
    alias_version,
    gate_decision,
    load_model,
    log_and_register,
    open_store,
    promote,
    resolve_tracking_uri,
)


class TrainDataError(ReturnriskError, ValueError):
    """The data cannot support a time split / training (too few mature orders, one class...)."""


@dataclass(frozen=True)
class SplitConfig:
    """Time split of the mature orders (sorted by order_ts): the last ``test_fraction`` (or the
    last ``test_days`` days) is the test slice, the ``valid_fraction`` before it validation.
    Cut points are moved to the start of a UTC day so one day is never split."""

    valid_fraction: float = 0.15
    test_fraction: float = 0.20
    test_days: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    data: Path | None = None
    as_of: pd.Timestamp | None = None
    seed: int = 0
    tune_trials: int = 0
    split: SplitConfig = field(default_factory=SplitConfig)
    n_estimators: int = 2000
    early_stopping_rounds: int = 100
    calibration: str = "auto"
    params: tuple[tuple[str, Any], ...] = ()  # LightGBM overrides, e.g. (("num_leaves", 63),)
    num_threads: int = 2
    baselines: bool = True
    figures: bool = True
    case_types: bool = True  # fit the case-type model (risk by family) after the risk model
    shap_sample: int = 2000
    logreg_max_rows: int = 100_000
    tracking_uri: str | None = None
    experiment: str = EXPERIMENT_NAME
    register: bool = True


@dataclass(frozen=True)
class RetrainConfig:
    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass
class PreparedData:
    """Loaded tables + their feature table, fingerprint and export time."""

    tables: Tables
    features: pd.DataFrame
    fingerprint: str
    as_of: pd.Timestamp
    feature_names: list[str]
    categorical: list[str]
    missing_features: list[str]


@dataclass
class TrainResult:
    model: RiskModel
    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    slices: pd.DataFrame
    data_window: dict[str, Any]
    test: pd.DataFrame  # test slice of the feature table
    test_proba: np.ndarray
    run_id: str | None = None
    version: str | None = None
    empty_features: list[str] = field(default_factory=list)
    tune: dict[str, Any] | None = None
    # every test score by name (model, base_rate, lookback, logreg): the arrays behind the
    # metrics and slices, aligned with ``test``
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    logreg_features: list[str] = field(default_factory=list)  # the columns the LR was fitted on


@dataclass
class RetrainResult:
    challenger: TrainResult
    decision: GateDecision
    champion_metrics: dict[str, float] | None
    challenger_metrics: dict[str, float]


# ---------------------------------------------------------------------------------- data
def fingerprint_tables(tables: Tables) -> str:
    """sha256 over every table's name, columns, dtypes and row hashes (order-sensitive)."""
    h = hashlib.sha256()
    for name, df in tables.as_dict().items():
        h.update(name.encode())
        h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
        if len(df):
            h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def code_version() -> str:
    """Git SHA of the source tree when available (``+dirty`` when modified), else the version."""
    from returnrisk import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{sha}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"returnrisk-{__version__}"


def prepare_data(
    tables: Tables, *, as_of: pd.Timestamp | None = None, log: StepLog = QUIET
) -> PreparedData:
    """Feature table of every order in ``tables`` (point in time, labels at ``as_of``)."""
    from returnrisk.features import FEATURE_SPECS, build_features

    as_of = tables.as_of() if as_of is None else pd.Timestamp(as_of)
    if as_of.tzinfo is None:
        as_of = as_of.tz_localize("UTC")
    with log.step("fingerprint input data"):
        fp = fingerprint_tables(tables)
    with log.step("build point-in-time features"):
        features = build_features(tables, as_of=as_of, log=log)
    names = [n for n in FEATURE_SPECS if n in features.columns]
    missing = [n for n in FEATURE_SPECS if n not in features.columns]
    cats = [n for n in names if FEATURE_SPECS[n].kind == "categorical"]
    return PreparedData(tables, features, fp, as_of, names, cats, missing)


def load_data(config: TrainConfig, log: StepLog = QUIET) -> PreparedData:
    from returnrisk.contract import load_tables

    if config.data is None:
        raise ValueError("TrainConfig.data is not set")
    with log.step(f"load tables from {config.data}"):
        tables = load_tables(config.data, log=log)
    return prepare_data(tables, as_of=config.as_of, log=log)


# ---------------------------------------------------------------------------------- split
def _day_floor(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.floor("D")


def time_split(features: pd.DataFrame, split: SplitConfig) -> dict[str, pd.DataFrame]:
    """Mature orders only, sorted by (order_ts, order_id); never random."""
    mature = features[features["mature"].astype(bool)]
    mature = mature.sort_values(["order_ts", "order_id"], kind="stable").reset_index(drop=True)
    n = len(mature)
    if n < 100:
        raise TrainDataError(
            f"feature table: only {n} mature order(s) (order_ts + label window <= as_of); "
            "need at least 100 to train"
        )
    ts = mature["order_ts"]
    if split.test_days is not None:
        test_start = _day_floor(ts.iloc[-1]) - pd.Timedelta(days=split.test_days - 1)
    else:
        test_start = _day_floor(ts.iloc[int(n * (1 - split.test_fraction))])
    n_before_test = int((ts < test_start).sum())
    valid_start = _day_floor(
        ts.iloc[int(n_before_test * (1 - split.valid_fraction / (1 - split.test_fraction)))]
    )
    parts = {
        "train": mature[ts < valid_start],
        "valid": mature[(ts >= valid_start) & (ts < test_start)],
        "test": mature[ts >= test_start],
    }
    require_both_classes(
        parts,
        "time split",
        f"(mature orders {ts.iloc[0]} .. {ts.iloc[-1]}, split {asdict(split)})",
    )
    return parts


def require_both_classes(parts: Mapping[str, pd.DataFrame], what: str, hint: str) -> None:
    """``TrainDataError`` naming the first slice of ``parts`` that is empty or holds one class
    only: ``what`` says which split it is, ``hint`` what to change."""
    for name, part in parts.items():
        y = part["label"].to_numpy(dtype=np.float64)
        if len(part) == 0 or y.min() == y.max():
            raise TrainDataError(
                f"{what}: the {name} slice has {len(part)} order(s) and "
                f"{int(y.sum()) if len(y) else 0} case(s); need both classes in every slice "
                f"{hint}"
            )


def data_window(parts: dict[str, pd.DataFrame], prepared: PreparedData) -> dict[str, Any]:
    out: dict[str, Any] = {
        "as_of": prepared.as_of.isoformat(),
        "n_orders": len(prepared.features),
        "n_mature": int(prepared.features["mature"].astype(bool).sum()),
        "fingerprint": prepared.fingerprint,
    }
    for name, part in parts.items():
        out[f"{name}_start"] = part["order_ts"].min().isoformat()
        out[f"{name}_end"] = part["order_ts"].max().isoformat()
        out[f"n_{name}"] = len(part)
        out[f"{name}_case_rate"] = float(part["label"].mean())
    return out


# ---------------------------------------------------------------------------------- training
def _model_params(config: TrainConfig, tuned: dict[str, Any] | None) -> dict[str, Any]:
    params = dict(config.params)
    params["num_threads"] = config.num_threads
    if tuned:
        params.update(tuned)
    return params


def fit_and_evaluate(
    prepared: PreparedData,
    config: TrainConfig,
    *,
    log: StepLog = QUIET,
    artifacts_dir: Path | None = None,
) -> TrainResult:
    """Split, (tune), fit, evaluate model + baselines on test; figures into ``artifacts_dir``."""
    parts = time_split(prepared.features, config.split)
    return fit_parts(prepared, parts, config, log=log, artifacts_dir=artifacts_dir)


def check_time_order(parts: dict[str, pd.DataFrame]) -> None:
    """Every train order strictly before every validation order, and those strictly before every
    test order (by order_ts): tuning, early stopping and calibration never see the test slice
    nor anything after its start. Raises ``TrainDataError`` naming the rows that break it."""
    names = ("train", "valid", "test")
    for before, after in zip(names[:-1], names[1:], strict=True):
        a, b = parts[before], parts[after]
        if len(a) == 0 or len(b) == 0:
            continue
        first_after = b["order_ts"].min()
        late = a["order_ts"] >= first_after
        if late.any():
            ids = a.loc[late, "order_id"].astype(str).head(5).tolist()
            raise TrainDataError(
                f"time split: {int(late.sum())} {before} order(s) at or after the first "
                f"{after} order ({first_after}), e.g. {ids}; every {before} order must be "
                f"strictly before the {after} slice"
            )


def study_name(prepared: PreparedData, fit_part: pd.DataFrame, seed: int) -> str:
    """The tuning study of a fit: the data's fingerprint, the seed and the fitting slice (its
    size, its last order time, the feature list), so a study is resumed only by a fit on the
    same rows and columns, never by one on another window (a rolling window, an ablation)."""
    last = pd.Timestamp(fit_part["order_ts"].max()).strftime("%Y%m%dT%H%M%S")
    cols = hashlib.sha256("\n".join(prepared.feature_names).encode()).hexdigest()[:8]
    return f"return-risk-{prepared.fingerprint[:12]}-seed{seed}-{len(fit_part)}-{last}-{cols}"


def fit_parts(
    prepared: PreparedData,
    parts: dict[str, pd.DataFrame],
    config: TrainConfig,
    *,
    log: StepLog = QUIET,
    artifacts_dir: Path | None = None,
) -> TrainResult:
    """(Tune), fit and evaluate on given ``train`` / ``valid`` / ``test`` slices of
    ``prepared.features`` (checked: strictly in that time order), with ``prepared``'s feature
    list: tuning, early stopping and calibration see ``train`` and ``valid`` only."""
    check_time_order(parts)
    window = data_window(parts, prepared)
    names, cats = prepared.feature_names, prepared.categorical
    tr, va, te = parts["train"], parts["valid"], parts["test"]
    log.info(
        f"time split: train {len(tr):,} ({window['train_start'][:10]}.."
        f"{window['train_end'][:10]}), valid {len(va):,}, test {len(te):,} "
        f"({window['test_start'][:10]}..{window['test_end'][:10]})"
    )
    empty = [c for c in names if tr[c].isna().all()]
    tune_info = None
    tuned_params = None
    if config.tune_trials > 0:
        from .tune import TuneConfig, storage_for, tune

        fit_part = pd.concat([tr, va], ignore_index=True)
        tcfg = TuneConfig(
            n_trials=config.tune_trials,
            seed=config.seed,
            storage=storage_for(resolve_tracking_uri(config.tracking_uri)),
            study_name=study_name(prepared, fit_part, config.seed),
        )
        with log.step(f"tune ({config.tune_trials} trials, Optuna TPE)"):
            res = tune(fit_part[names], fit_part["label"].to_numpy(), cats, tcfg, log=log)
        tuned_params = res.best_params
        tune_info = asdict(res)
    model = RiskModel(
        _model_params(config, tuned_params),
        n_estimators=config.n_estimators,
        early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed,
        calibration=config.calibration,
        categorical_features=cats,
    )
    with log.step(f"fit LightGBM on {len(tr):,} orders x {len(names)} features"):
        model.fit(tr[names], tr["label"].to_numpy(), va[names], va["label"].to_numpy())
    log.info(
        f"best iteration {model.best_iteration_}, calibration {model.calibration_} "
        f"{ {k: round(v, 5) for k, v in model.calibration_scores_.items()} }"
    )
    # risk by case-type family (train/case_types.py): carried by the model, in its pickle
    from .case_types import fit_case_types

    if config.case_types:
        with log.step("fit the case-type model on the positive orders"):
            model.case_types_ = fit_case_types(
                tr,
                va,
                prepared.tables,
                names,
                cats,
                seed=config.seed,
                num_threads=config.num_threads,
            )
    if artifacts_dir is not None:  # the monitoring reference (returnrisk monitor)
        write_reference(model, parts, artifacts_dir)
    y_te = te["label"].to_numpy(dtype=np.float64)
    with log.step("evaluate on test"):
        p_te, unseen = model.predict_with_unseen(te[names])
        metrics = ev.binary_metrics(y_te, p_te)
        metrics["unseen_category_rows_test"] = float(sum(unseen.values()))
    scores = {"model": p_te}
    baselines: dict[str, dict[str, float]] = {}
    logreg_features: list[str] = []
    if config.baselines:
        with log.step("baselines (base rate, look-back heuristic, logistic regression)"):
            fit_part = pd.concat([tr, va], ignore_index=True)
            scores["base_rate"] = ev.base_rate_baseline(fit_part["label"].to_numpy(), len(te))
            scores["lookback"] = ev.lookback_heuristic(prepared.tables.order_lines, fit_part, te)
            p_lr, lr_info = ev.logistic_baseline(
                tr[names],
                tr["label"].to_numpy(),
                te[names],
                cats,
                max_rows=config.logreg_max_rows,
                seed=config.seed,
            )
            scores["logreg"] = p_lr
            logreg_features = list(lr_info["features"])
            for name in ("base_rate", "lookback", "logreg"):
                baselines[name] = ev.binary_metrics(y_te, scores[name])
            baselines["logreg"]["converged"] = float(lr_info["converged"])
    slices = ev.slice_metrics(y_te, scores, ev.slice_frame(te))
    if config.figures and artifacts_dir is not None:
        with log.step("figures"):
            ev.plot_curves(y_te, scores, artifacts_dir / "figures")
            sample = te.sample(n=min(config.shap_sample, len(te)), random_state=config.seed)
            contrib = model.contributions(sample[names])
            ev.plot_shap_summary(
                contrib, sample[names], artifacts_dir / "figures" / "shap_summary.png"
            )
    return TrainResult(
        model=model,
        metrics=metrics,
        baseline_metrics=baselines,
        slices=slices,
        data_window=window,
        test=te,
        test_proba=p_te,
        empty_features=empty,
        tune=tune_info,
        scores=scores,
        logreg_features=logreg_features,
    )


def _flat_params(config: TrainConfig, model: RiskModel) -> dict[str, Any]:
    params = {f"lgb_{k}": v for k, v in model.lgb_params().items()}
    params.update(
        {
            "seed": config.seed,
            "tune_trials": config.tune_trials,
            "n_estimators_max": config.n_estimators,
            "early_stopping_rounds": config.early_stopping_rounds,
            "best_iteration": model.best_iteration_,
            "calibration": model.calibration_,
            "valid_fraction": config.split.valid_fraction,
            "test_fraction": config.split.test_fraction,
            "test_days": config.split.test_days,
            "n_features": len(model.feature_names_),
        }
    )
    return params


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that runs and locks are released on the way out."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) instead of
    killing the process where it stands (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def mlflow_run(
    *, experiment: str = EXPERIMENT_NAME, run_name: str | None = None, run_id: str | None = None
) -> Iterator[Any]:
    """Start (``run_id``: reopen; under ``mlflow run``: resume) a run and always end it:
    FINISHED, FAILED on an exception, KILLED on KeyboardInterrupt / SIGTERM / SystemExit."""
    import mlflow

    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
    elif os.environ.get("MLFLOW_RUN_ID"):
        run = mlflow.start_run()
    else:
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
    try:
        yield run
    except Exception:
        mlflow.end_run("FAILED")
        raise
    except BaseException:
        mlflow.end_run("KILLED")
        raise
    mlflow.end_run("FINISHED")


def train_prepared(
    prepared: PreparedData, config: TrainConfig, *, log: StepLog = QUIET, run_name: str = "train"
) -> TrainResult:
    """Fit + evaluate, log everything to one MLflow run and register the model (challenger)."""
    import mlflow

    from returnrisk.features import FEATURE_SPECS

    if prepared.missing_features:
        log.info(f"warning: feature table lacks {prepared.missing_features}")
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp)
        result = fit_and_evaluate(prepared, config, log=log, artifacts_dir=art)
        model = result.model
        with (
            mlflow_run(experiment=config.experiment, run_name=run_name) as run,
            log.step("log run to MLflow"),
        ):
            result.run_id = run.info.run_id
            mlflow.log_params(_flat_params(config, model))
            mlflow.log_metrics(
                {f"test_{k}": v for k, v in result.metrics.items() if np.isfinite(v)}
            )
            for name, m in result.baseline_metrics.items():
                mlflow.log_metrics({f"{name}_test_{k}": v for k, v in m.items() if np.isfinite(v)})
            mlflow.log_metric("valid_best_logloss", min(model.valid_logloss_curve_))
            for k, v in model.calibration_scores_.items():
                mlflow.log_metric(f"calibration_oof_logloss_{k}", v)
            mlflow.set_tags(
                {
                    "code_version": code_version(),
                    "data_fingerprint": prepared.fingerprint,
                    "data_path": str(config.data) if config.data else "",
                    "as_of": prepared.as_of.isoformat(),
                    "missing_features": ",".join(prepared.missing_features),
                    "empty_features": ",".join(result.empty_features),
                }
            )
            schema = model.feature_schema()
            for item in schema:
                spec = FEATURE_SPECS.get(item["name"])
                if spec is not None:
                    item["family"] = spec.family
                    item["description"] = spec.description
            (art / "features.json").write_text(json.dumps(schema, indent=1))
            (art / "data_window.json").write_text(json.dumps(result.data_window, indent=1))
            (art / "metrics.json").write_text(
                json.dumps({"model": result.metrics, **result.baseline_metrics}, indent=1)
            )
            result.slices.to_csv(art / "slices.csv", index=False)
            model.feature_importance().to_csv(art / "feature_importance.csv", index=False)
            if result.tune:
                (art / "tuning.json").write_text(json.dumps(result.tune, indent=1, default=str))
                mlflow.log_params({f"tuned_{k}": v for k, v in result.tune["best_params"].items()})
                mlflow.set_tag("optuna_study", result.tune["study_name"])
            for path in sorted(art.rglob("*")):
                if path.is_file():
                    rel = path.parent.relative_to(art)
                    mlflow.log_artifact(
                        str(path), artifact_path=str(rel) if str(rel) != "." else None
                    )
            if config.register:
                result.version = log_and_register(
                    model,
                    result.test[model.feature_names_],
                    version_tags={
                        "data_window": json.dumps(result.data_window),
                        "data_fingerprint": prepared.fingerprint,
                        "code_version": code_version(),
                    },
                    log=log,
                )
                mlflow.set_tag("registered_version", result.version)
    log.info(
        f"test AUC {result.metrics['auc']:.4f}  AP {result.metrics['ap']:.4f}  "
        f"ECE {result.metrics['ece']:.4f}"
        + (f"  -> {MODEL_NAME} v{result.version} @{CHALLENGER}" if result.version else "")
    )
    return result


def _use_store(uri: str | None) -> None:
    """A config that names a store logs there, whoever calls (the CLI has opened it already; a
    notebook or a test may not have, or may have pointed MLflow elsewhere before)."""
    if uri is None:
        return
    import mlflow

    if mlflow.get_tracking_uri() != uri:
        open_store(uri)


def train(config: TrainConfig, log: StepLog = QUIET) -> TrainResult:
    """``returnrisk train DIR``."""
    _use_store(config.tracking_uri)
    return train_prepared(load_data(config, log), config, log=log)


# ---------------------------------------------------------------------------------- retrain
def expected_features(config: GateConfig, champion_features: list[str] | None) -> list[str]:
    if config.expected_features is not None:
        return list(config.expected_features)
    from returnrisk.features import FEATURE_SPECS

    out = list(FEATURE_SPECS)
    for name in champion_features or []:
        if name not in out:
            out.append(name)
    return out


def retrain_prepared(
    prepared: PreparedData, config: RetrainConfig, *, log: StepLog = QUIET
) -> RetrainResult:
    """Train a challenger; gate it against the champion on the same latest mature window;
    promote it only if ``@champion`` still points at the champion it was compared with."""
    import mlflow
    from mlflow import MlflowClient

    champion_version = alias_version(CHAMPION)
    champion = (
        load_model(f"models:/{MODEL_NAME}/{champion_version}")
        if champion_version is not None
        else None
    )
    challenger = train_prepared(prepared, config.train, log=log, run_name="retrain")
    te = challenger.test
    y = te["label"].to_numpy(dtype=np.float64)
    ch_metrics = ev.binary_metrics(y, challenger.test_proba)
    champ_metrics = None
    scores = {}
    if champion is not None:
        with log.step(f"score champion v{champion.version} on the same window"):
            cols = champion.risk_model.feature_names_
            absent = [c for c in cols if c not in te.columns]
            if absent:
                raise TrainDataError(
                    f"champion v{champion.version} needs feature(s) {absent} that the current "
                    "feature table does not have; promote or roll back by hand"
                )
            p_champ = champion.risk_model.predict_case(te[cols])
            champ_metrics = ev.binary_metrics(y, p_champ)
            scores[f"champion v{champion.version}"] = p_champ
    scores[f"challenger v{challenger.version}"] = challenger.test_proba
    expected = expected_features(
        config.gate, champion.risk_model.feature_names_ if champion else None
    )
    have = set(challenger.model.feature_names_) - set(challenger.empty_features)
    missing = tuple(f for f in expected if f not in have)
    decision = gate_decision(
        ch_metrics,
        champ_metrics,
        challenger_version=str(challenger.version),
        champion_version=champion_version,
        missing_features=missing,
        config=config.gate,
    )
    if decision.promote:
        try:  # compare-and-set: only over the champion this challenger was compared with
            promote(
                str(challenger.version),
                reason="gate",
                expected_champion=champion_version,
                log=log,
            )
        except ChampionMovedError as err:
            decision = replace(decision, champion_moved_to=err.actual or "none")
            log.info(f"not promoted: {err}")
    outcome = (
        "promoted"
        if decision.promoted
        else ("superseded" if decision.champion_moved_to is not None else "rejected")
    )
    with (
        mlflow_run(run_id=challenger.run_id),
        tempfile.TemporaryDirectory() as tmp,
    ):
        art = Path(tmp) / "gate"
        ev.plot_curves(y, scores, art, prefix="gate_")
        ev.plot_gate_metrics(
            {"champion": champ_metrics or {}, "challenger": ch_metrics}
            if champ_metrics
            else {"challenger": ch_metrics},
            art / "gate_metrics.png",
        )
        payload = decision.to_dict()
        payload["gate_config"] = asdict(config.gate)
        payload["window"] = {
            k: challenger.data_window[k] for k in ("test_start", "test_end", "n_test")
        }
        payload["champion_metrics"] = champ_metrics
        payload["challenger_metrics"] = ch_metrics
        (art / "gate.json").write_text(json.dumps(payload, indent=1, default=str))
        mlflow.log_artifacts(str(art), artifact_path="gate")
        mlflow.set_tags(
            {
                "gate_decision": outcome,
                "gate_champion_version": decision.champion_version or "",
            }
        )
        mlflow.log_metric("gate_promoted", float(decision.promoted))
        if champ_metrics:
            mlflow.log_metrics(
                {f"champion_window_{k}": v for k, v in champ_metrics.items() if np.isfinite(v)}
            )
    MlflowClient().set_model_version_tag(MODEL_NAME, str(challenger.version), "gate", outcome)
    return RetrainResult(challenger, decision, champ_metrics, ch_metrics)


def retrain(config: RetrainConfig, log: StepLog = QUIET) -> RetrainResult:
    """``returnrisk retrain DIR``."""
    _use_store(config.train.tracking_uri)
    return retrain_prepared(load_data(config.train, log), config, log=log)
