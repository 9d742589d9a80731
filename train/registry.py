"""MLflow registry: the tracking store, log + register, aliases, load, the champion/challenger
gate, promote (compare-and-set), rollback, and the per-store retrain lock.

Registered model ``return-risk``; aliases ``champion`` (what scoring uses) and ``challenger``
(the latest trained version). The champion history (for ``rollback``) is kept in the registered
model's tag ``champion_history`` (comma-separated versions, oldest first).

The tracking store is chosen once, at a command's entry (:func:`open_store`): ``--tracking-uri``,
else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory. Commands
that only read the registry open it with ``must_exist=True``, so they never create an empty
store by accident.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import pandas as pd

from returnrisk.errors import ReturnriskError
from returnrisk.progress import QUIET, StepLog

from .model import RiskModel
from .names import (
    CHALLENGER,
    CHALLENGER_URI,
    CHAMPION,
    CHAMPION_URI,
    DEFAULT_TRACKING_URI,
    EXPERIMENT_NAME,
    MODEL_NAME,
)

__all__ = [
    "CHALLENGER",
    "CHALLENGER_URI",
    "CHAMPION",
    "CHAMPION_URI",
    "DEFAULT_TRACKING_URI",
    "EXPERIMENT_NAME",
    "MODEL_NAME",
]

HISTORY_TAG = "champion_history"
_SQLITE = "sqlite:///"
_HOW_TO_POINT = "point at another store with --tracking-uri URI or MLFLOW_TRACKING_URI"


class RegistryError(ReturnriskError, RuntimeError):
    """A registry operation that cannot be done (unknown version, no champion, ...)."""


class NoModelError(RegistryError):
    """There is no model at all (no store, no registered model, or no version of it)."""


class StoreLockedError(RegistryError):
    """Another retrain holds the store's lock."""


# ---------------------------------------------------------------------------------- store
@dataclass(frozen=True)
class TrackingStore:
    """The MLflow tracking + registry store a command works on, and where its URI came from."""

    uri: str
    source: str  # "--tracking-uri", "MLFLOW_TRACKING_URI" or "default"

    @property
    def sqlite_path(self) -> Path | None:
        """The sqlite file of a ``sqlite:///`` store (absolute), else None."""
        if not self.uri.startswith(_SQLITE):
            return None
        return Path(self.uri[len(_SQLITE) :]).absolute()

    def describe(self) -> str:
        where = self.sqlite_path or self.uri
        origin = {
            "--tracking-uri": "from --tracking-uri",
            "MLFLOW_TRACKING_URI": "from MLFLOW_TRACKING_URI",
        }.get(self.source, "the default: mlflow.db in the working directory")
        return f"{where} ({origin})"

    def lock_path(self) -> Path:
        """The retrain lock: beside the sqlite file, inside a file: store, else in the temp dir
        (a remote store is then locked per machine only)."""
        db = self.sqlite_path
        if db is not None:
            return db.with_name(db.name + ".lock")
        if self.uri.startswith("file:"):
            return Path(self.uri.removeprefix("file://").removeprefix("file:")) / "retrain.lock"
        digest = sha256(self.uri.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"returnrisk-retrain-{digest}.lock"


def resolve_store(uri: str | None = None) -> TrackingStore:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (cwd)."""
    if uri:
        return TrackingStore(uri, "--tracking-uri")
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return TrackingStore(env, "MLFLOW_TRACKING_URI")
    return TrackingStore(DEFAULT_TRACKING_URI, "default")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI :func:`resolve_store` picks."""
    return resolve_store(uri).uri


def open_store(uri: str | None = None, *, must_exist: bool = False) -> TrackingStore:
    """Choose the store and point MLflow (tracking + registry) at it: the one place the
    tracking URI is set, called at a command's entry. With ``must_exist`` a missing sqlite
    file raises :class:`NoModelError` instead of being created."""
    import mlflow

    store = resolve_store(uri)
    if must_exist:
        _require_store(store)
    mlflow.set_tracking_uri(store.uri)
    registry = os.environ.get("MLFLOW_REGISTRY_URI") if store.source != "--tracking-uri" else None
    mlflow.set_registry_uri(registry or store.uri)
    return store


def _require_store(store: TrackingStore | None = None) -> None:
    """:class:`NoModelError` when the (current) store is an sqlite file that does not exist:
    checked before connecting, which would create it empty."""
    if store is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
        source = (
            "MLFLOW_TRACKING_URI"
            if uri == os.environ.get("MLFLOW_TRACKING_URI")
            else ("default" if uri == DEFAULT_TRACKING_URI else "--tracking-uri")
        )
        store = TrackingStore(uri, source)
    db = store.sqlite_path
    if db is not None and not db.is_file():
        raise NoModelError(
            f"no MLflow tracking store at {store.describe()}; train a model first "
            f"(returnrisk train DIR) or {_HOW_TO_POINT}"
        )


def configure_tracking(uri: str | None = None, *, must_exist: bool = False) -> str:
    """:func:`open_store` returning the URI (for notebooks and tests)."""
    return open_store(uri, must_exist=must_exist).uri


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _store_label() -> str:
    import mlflow

    uri = mlflow.get_tracking_uri()
    return str(TrackingStore(uri, "").sqlite_path or uri)


# ---------------------------------------------------------------------------------- lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def store_lock(store: TrackingStore, *, log: StepLog = QUIET) -> Iterator[Path]:
    """Hold the store's retrain lock (``flock`` on a file beside the store) for the block.

    A second holder fails at once with :class:`StoreLockedError` naming the first (pid, host,
    start). The kernel drops the lock when its process dies, so a lock file left by a killed
    retrain is taken over (and said so)."""
    path = store.lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(path).read_text(errors="replace").strip() or "unknown process"
            raise StoreLockedError(
                f"another retrain is running on {store.describe()}: {holder} holds {path}; "
                "not starting a second one (try again when it has finished)"
            ) from None
        try:
            previous = os.read(fd, 4096).decode(errors="replace").strip()
            if previous:
                pid = previous.split()[1] if previous.startswith("pid ") else ""
                state = (
                    "no longer running"
                    if pid.isdigit() and not _pid_alive(int(pid))
                    else "lock released"
                )
                log.info(f"taking over the retrain lock {path} left by {previous} ({state})")
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode())
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- logging
def log_and_register(
    model: RiskModel,
    X_example: pd.DataFrame,
    *,
    version_tags: dict[str, str] | None = None,
    alias: str = CHALLENGER,
    log: StepLog = QUIET,
) -> str:
    """Log ``model`` as a pyfunc ("models from code") in the active run, register it as a new
    version of ``return-risk``, set ``alias``; return the version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .pyfunc import MODEL_ARTIFACT, MODEL_CODE, input_example, model_signature, save_risk_model

    with tempfile.TemporaryDirectory() as tmp:
        path = save_risk_model(model, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={MODEL_ARTIFACT: str(path)},
            signature=model_signature(model),
            input_example=input_example(model, X_example),
            pip_requirements=_pip_requirements(),
        )
    client = _client()
    try:
        client.get_registered_model(MODEL_NAME)
    except MlflowException:
        client.create_registered_model(MODEL_NAME)
    mv = client.create_model_version(
        MODEL_NAME,
        source=info.model_uri,
        run_id=info.run_id,
        tags=version_tags or {},
        model_id=info.model_id,
        await_creation_for=0,
    )
    version = str(mv.version)
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    log.info(f"registered {MODEL_NAME} v{version} @{alias}")
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


_URI_FORMS = "models:/NAME@ALIAS or models:/NAME/VERSION"


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/version`` -> (name, alias, version);
    :class:`RegistryError` naming the URI otherwise."""
    if not isinstance(uri, str) or not uri.startswith("models:/"):
        raise RegistryError(f"model URI {uri!r}: expected {_URI_FORMS}")
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name and "/" not in alias:
            return name, alias, None
        raise RegistryError(f"model URI {uri!r}: expected {_URI_FORMS} (empty name or alias)")
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        if not name or "/" in name:
            raise RegistryError(f"model URI {uri!r}: expected {_URI_FORMS} (empty name)")
        if not version.isdigit():
            raise RegistryError(
                f"model URI {uri!r}: version {version!r} is not a number (expected {_URI_FORMS})"
            )
        return name, None, version
    raise RegistryError(f"model URI {uri!r} names neither an alias nor a version ({_URI_FORMS})")


def _versions(client: Any, name: str) -> list[str]:
    found = client.search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in found), key=int)


def _aliases(client: Any, name: str) -> str:
    rm = client.get_registered_model(name)
    pairs = sorted((rm.aliases or {}).items())
    return ", ".join(f"@{a} -> v{v}" for a, v in pairs) or "none"


def _require_versions(client: Any, name: str, uri: str) -> list[str]:
    """The registered versions of ``name``; :class:`NoModelError` when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        versions = _versions(client, name)
    except MlflowException:
        versions = []
    if not versions:
        raise NoModelError(
            f"{uri}: the store {_store_label()} has no model {name!r}; "
            f"train a model first (returnrisk train DIR) or {_HOW_TO_POINT}"
        )
    return versions


def resolve_version(uri: str) -> Any:
    """The registry's ModelVersion for a models:/ URI. :class:`NoModelError` when the store has
    no such model at all ("train a model first"), :class:`RegistryError` naming the URI, the
    versions and aliases there are when the alias or version is absent."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_models_uri(uri)
    _require_store()
    client = _client()
    versions = _require_versions(client, name, uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException:
        what = f"alias @{alias}" if alias is not None else f"version {version}"
        raise RegistryError(
            f"{uri}: {name} has no {what} (versions {', '.join(versions)}; "
            f"aliases {_aliases(client, name)})"
        ) from None


def _model_files(uri: str, mv: Any) -> Path:
    """The local directory of version ``mv``'s model files; RegistryError naming what is
    missing when the files the registry points at are gone."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from .pyfunc import MODEL_FILE

    try:
        where = str(_client().get_model_version_download_uri(mv.name, str(mv.version)))
    except MlflowException:
        where = str(mv.source)
    problem = f"{uri}: {mv.name} v{mv.version} is registered but its files are missing"
    local_dir = (
        Path(where.removeprefix("file://")) if ":" not in where.removeprefix("file://") else None
    )
    if local_dir is not None and not (local_dir / "MLmodel").is_file():
        raise RegistryError(
            f"{problem}: no MLmodel in {local_dir}; promote another version or retrain"
        )
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{mv.name}/{mv.version}")
    except (MlflowException, OSError) as err:
        message = getattr(err, "message", str(err)).splitlines()[0]
        raise RegistryError(f"{problem} at {where} ({message})") from None
    if not next(Path(local).rglob(MODEL_FILE), None):
        raise RegistryError(f"{problem}: no {MODEL_FILE} under {where}")
    return Path(local)


def load_model(uri: str = CHAMPION_URI) -> LoadedModel:
    """Load a registered RiskModel with its version, run, test metrics and data window."""
    from .pyfunc import MODEL_FILE, read_risk_model

    mv = resolve_version(uri)
    local = _model_files(uri, mv)
    risk_model = read_risk_model(sorted(local.rglob(MODEL_FILE))[0])
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
    """``promote``: every gate passed. ``champion_version``: the champion the challenger was
    compared with. ``champion_moved_to``: set when ``@champion`` no longer pointed there at
    promotion time (``"none"`` when it was removed): the challenger is then not promoted."""

    promote: bool
    challenger_version: str
    champion_version: str | None
    checks: tuple[GateCheck, ...]
    missing_features: tuple[str, ...] = ()
    champion_moved_to: str | None = None

    @property
    def promoted(self) -> bool:
        """The challenger became ``@champion``."""
        return self.promote and self.champion_moved_to is None

    @property
    def summary(self) -> str:
        head = "PROMOTE" if self.promoted else "KEEP CHAMPION"
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
        if self.champion_moved_to is not None:
            was = f"v{self.champion_version}" if self.champion_version else "none"
            now = "none" if self.champion_moved_to == "none" else f"v{self.champion_moved_to}"
            lines.append(
                f"  not promoted: @champion moved from {was} to {now} while this retrain ran; "
                f"the challenger was never compared with {now} (retrain again to compare)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["promoted"] = self.promoted
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
class ChampionMovedError(RegistryError):
    """``@champion`` no longer points at the version a compare-and-set expected."""

    def __init__(self, expected: str | None, actual: str | None) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(
            f"{MODEL_NAME}@{CHAMPION} is {'v' + actual if actual else 'unset'}, "
            f"not {'v' + expected if expected else 'unset'} as expected; not moved"
        )


_ANY = object()


def _history(client: Any) -> list[str]:
    rm = client.get_registered_model(MODEL_NAME)
    raw = (rm.tags or {}).get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _check_version(version: str) -> None:
    """RegistryError unless ``version`` is registered and its files are there."""
    uri = f"models:/{MODEL_NAME}/{version}"
    _model_files(uri, resolve_version(uri))


def promote(
    version: str,
    *,
    reason: str = "manual",
    expected_champion: str | None | object = _ANY,
    log: StepLog = QUIET,
) -> str | None:
    """Point ``@champion`` at ``version``; return the previous champion version (or None).

    With ``expected_champion`` (a version, or None for "no champion") this is a
    compare-and-set: :class:`ChampionMovedError` and nothing moved when ``@champion`` is
    elsewhere. The version must be registered with its files present."""
    version = str(version)
    _check_version(version)
    client = _client()
    previous = alias_version(CHAMPION)
    if expected_champion is not _ANY and previous != expected_champion:
        raise ChampionMovedError(expected_champion, previous)  # type: ignore[arg-type]
    history = _history(client)
    if previous is not None and (not history or history[-1] != previous):
        history.append(previous)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(MODEL_NAME, version, "promoted", reason)
    log.info(f"{MODEL_NAME}@{CHAMPION} -> v{version} (was {previous or 'none'}; {reason})")
    return previous


def rollback(*, log: StepLog = QUIET) -> tuple[str, str]:
    """Move ``@champion`` back to the previous champion; return (from_version, to_version)."""
    current = alias_version(CHAMPION)
    client = _client()
    if current is None:
        _require_versions(client, MODEL_NAME, CHAMPION_URI)  # none at all: "train first"
        raise RegistryError(f"{MODEL_NAME} has no @{CHAMPION}; nothing to roll back")
    client = _client()
    history = _history(client)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError(
            f"{MODEL_NAME}@{CHAMPION} is v{current}; there is no earlier champion to roll back to"
        )
    target = history[-1]
    _check_version(target)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, target)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(MODEL_NAME, current, "rolled_back", "true")
    log.info(f"{MODEL_NAME}@{CHAMPION}: v{current} -> v{target} (rollback)")
    return current, target
