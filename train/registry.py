"""MLflow registry: log + register, aliases, load, champion/challenger gate, promote, rollback.

Registered model ``return-risk``; aliases ``champion`` (what scoring uses) and ``challenger``
(the latest trained version). The champion history (for ``rollback``) is kept in the registered
model's tag ``champion_history`` (comma-separated versions, oldest first).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from returnrisk.progress import QUIET, StepLog

from .model import RiskModel

MODEL_NAME = "return-risk"
CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_NAME = "returnrisk"
HISTORY_TAG = "champion_history"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, no champion, ...)."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (cwd)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_tracking(uri: str | None = None) -> str:
    """Point MLflow (tracking + registry) at the store; called at a command's entry only."""
    import mlflow

    resolved = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or resolved)
    return resolved


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


# ---------------------------------------------------------------------------------- logging
def log_and_register(
    model: RiskModel,
    X_example: pd.DataFrame,
    *,
    version_tags: dict[str, str] | None = None,
    alias: str = CHALLENGER,
) -> str:
    """Log ``model`` as a pyfunc in the active run, register it, set ``alias``; return version."""
    import mlflow

    from .pyfunc import (
        MODEL_ARTIFACT,
        RiskModelPyfunc,
        input_example,
        model_signature,
        save_risk_model,
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = save_risk_model(model, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RiskModelPyfunc(),
            artifacts={MODEL_ARTIFACT: str(path)},
            signature=model_signature(model),
            input_example=input_example(model, X_example),
            pip_requirements=_pip_requirements(),
            registered_model_name=MODEL_NAME,
            await_registration_for=0,
        )
    version = str(info.registered_model_version)
    client = _client()
    for key, value in (version_tags or {}).items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    return version


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("returnrisk", "lightgbm", "scikit-learn", "pandas", "numpy", "mlflow"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


# ---------------------------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    risk_model: RiskModel
    uri: str
    version: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    data_window: dict[str, Any] = field(default_factory=dict)


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/version`` -> (name, alias, version)."""
    if not uri.startswith("models:/"):
        raise RegistryError(
            f"expected a models:/NAME@ALIAS or models:/NAME/VERSION URI, got {uri!r}"
        )
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, None, version
    raise RegistryError(f"model URI {uri!r} names neither an alias nor a version")


def resolve_version(uri: str) -> Any:
    """The registry's ModelVersion for a models:/ URI (RegistryError when absent)."""
    from mlflow.exceptions import MlflowException

    name, alias, version = _parse_models_uri(uri)
    client = _client()
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as err:
        raise RegistryError(f"no model at {uri}: {err.message}") from None


def load_model(uri: str = f"models:/{MODEL_NAME}@{CHAMPION}") -> LoadedModel:
    """Load a registered RiskModel with its version, run, test metrics and data window."""
    import mlflow

    mv = resolve_version(uri)
    source = f"models:/{mv.name}/{mv.version}"
    local = mlflow.artifacts.download_artifacts(artifact_uri=source)
    from .pyfunc import MODEL_FILE, read_risk_model

    candidates = sorted(Path(local).rglob(MODEL_FILE))
    if not candidates:
        raise RegistryError(f"model at {uri} (version {mv.version}) has no {MODEL_FILE} artifact")
    risk_model = read_risk_model(candidates[0])
    client = _client()
    metrics: dict[str, float] = {}
    if mv.run_id:
        metrics = dict(client.get_run(mv.run_id).data.metrics)
    window = json.loads(mv.tags.get("data_window", "{}")) if mv.tags else {}
    return LoadedModel(
        risk_model=risk_model,
        uri=uri,
        version=str(mv.version),
        run_id=mv.run_id or "",
        metrics=metrics,
        data_window=window,
    )


def alias_version(alias: str, name: str = MODEL_NAME) -> str | None:
    """Version currently holding ``alias`` (None when unset or the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


# ---------------------------------------------------------------------------------- gate
@dataclass(frozen=True)
class GateConfig:
    """Promotion rules. Relative gates apply when a champion exists, absolute ones otherwise;
    ``max_ece`` and the feature check apply always."""

    ap_margin: float = 0.005
    auc_margin: float = 0.005
    max_ece: float = 0.05  # guards against broken calibration; see README "gate"
    min_auc: float = 0.6
    min_ap_lift: float = 1.2  # AP / base rate, absolute gate
    expected_features: tuple[str, ...] | None = None  # None = FEATURE_SPECS (or champion's)


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    threshold: float
    passed: bool
    rule: str


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    challenger_version: str
    champion_version: str | None
    checks: tuple[GateCheck, ...]
    missing_features: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        head = "PROMOTE" if self.promote else "KEEP CHAMPION"
        who = (
            f"challenger v{self.challenger_version} vs champion v{self.champion_version}"
            if self.champion_version
            else f"challenger v{self.challenger_version} (no champion: absolute gates)"
        )
        lines = [f"gate decision: {head} — {who}"]
        for c in self.checks:
            mark = "pass" if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name}: {c.value:.4f} ({c.rule} {c.threshold:.4f})")
        if self.missing_features:
            lines.append(f"  missing features: {', '.join(self.missing_features)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary
        return out


def gate_decision(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    challenger_version: str,
    champion_version: str | None,
    missing_features: tuple[str, ...],
    config: GateConfig,
) -> GateDecision:
    """Apply the gates to metrics measured on the same window (keys auc, ap, ece, base_rate)."""
    checks: list[GateCheck] = []
    if champion is not None:
        thr_ap = champion["ap"] - config.ap_margin
        thr_auc = champion["auc"] - config.auc_margin
        checks.append(
            GateCheck(
                "average_precision",
                challenger["ap"],
                thr_ap,
                challenger["ap"] >= thr_ap,
                ">= champion - margin",
            )
        )
        checks.append(
            GateCheck(
                "roc_auc",
                challenger["auc"],
                thr_auc,
                challenger["auc"] >= thr_auc,
                ">= champion - margin",
            )
        )
    else:
        thr_ap = config.min_ap_lift * challenger["base_rate"]
        checks.append(
            GateCheck(
                "average_precision",
                challenger["ap"],
                thr_ap,
                challenger["ap"] >= thr_ap,
                ">= min_ap_lift x base rate",
            )
        )
        checks.append(
            GateCheck(
                "roc_auc",
                challenger["auc"],
                config.min_auc,
                challenger["auc"] >= config.min_auc,
                ">= min_auc",
            )
        )
    checks.append(
        GateCheck(
            "ece",
            challenger["ece"],
            config.max_ece,
            challenger["ece"] <= config.max_ece,
            "<= max_ece",
        )
    )
    checks.append(
        GateCheck("missing_features", float(len(missing_features)), 0.0, not missing_features, "==")
    )
    return GateDecision(
        promote=all(c.passed for c in checks),
        challenger_version=challenger_version,
        champion_version=champion_version,
        checks=tuple(checks),
        missing_features=tuple(missing_features),
    )


# ---------------------------------------------------------------------------------- aliases
def _history(client: Any) -> list[str]:
    rm = client.get_registered_model(MODEL_NAME)
    raw = (rm.tags or {}).get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def promote(version: str, *, reason: str = "manual", log: StepLog = QUIET) -> str | None:
    """Point ``@champion`` at ``version``; return the previous champion version (or None)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_model_version(MODEL_NAME, str(version))
    except MlflowException:
        raise RegistryError(f"model {MODEL_NAME} has no version {version}") from None
    previous = alias_version(CHAMPION)
    history = _history(client)
    if previous is not None and (not history or history[-1] != previous):
        history.append(previous)
    if not history or history[-1] != str(version):
        history.append(str(version))
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(MODEL_NAME, str(version), "promoted", reason)
    log.info(f"{MODEL_NAME}@{CHAMPION} -> v{version} (was {previous or 'none'}; {reason})")
    return previous


def rollback(*, log: StepLog = QUIET) -> tuple[str, str]:
    """Move ``@champion`` back to the previous champion; return (from_version, to_version)."""
    client = _client()
    current = alias_version(CHAMPION)
    if current is None:
        raise RegistryError(f"{MODEL_NAME} has no @{CHAMPION}; nothing to roll back")
    history = _history(client)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError(
            f"{MODEL_NAME}@{CHAMPION} is v{current}; there is no earlier champion to roll back to"
        )
    target = history[-1]
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, target)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(MODEL_NAME, current, "rolled_back", "true")
    log.info(f"{MODEL_NAME}@{CHAMPION}: v{current} -> v{target} (rollback)")
    return current, target
