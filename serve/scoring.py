"""The one scoring code path, used by the batch command and the HTTP service alike.

``ScoringState`` is built once from the history tables and a loaded model; ``state.score(raw)``
takes the new orders as raw frames (``orders``, ``order_lines`` and optionally new ``skus``,
``customers``, ``countries``, ``carriers`` rows) and returns one row per input order:

1. validate the new rows against the data contract and the history's keys
   (``returnrisk.contract.check_new``, the one authority), row by row: an order breaking a rule
   (unknown country, unknown SKU without a ``skus`` row, no lines, negative quantity, ...) is
   *refused* with its reasons, the others go on;
2. build their features with the training code (``returnrisk.features.build_features``) as if
   merged into the history, as of the scoring time: the history is prepared once
   (``prepare_history``), so a request costs O(its size), not O(history);
3. predict calibrated probabilities, apply the policy (score, level, flag);
4. explain (SHAP grouped into drivers) only the orders that need reasons.

``state.score_one(order)`` is the service's fast path for its usual request, one clean order:
the contract's answer for one order (``contract.check_new_order``, the one-order form of
``check_new``), features from the online store (``features.online``, the same formula
functions), then the same model, policy and reasons -- ~1.6 ms instead of ~50. It answers
``None`` for anything else, which then goes through ``score``; tests hold the two to the same
answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from returnrisk.arrays import member_mask
from returnrisk.contract import (
    NEW_STATIC_TABLES,
    Tables,
    check_new,
    check_new_order,
    empty_raw,
    order_keys,
    read_frames,
)
from returnrisk.errors import ReturnriskError
from returnrisk.features.online import OnlineFeatures, OnlineOrder
from returnrisk.progress import QUIET, StepLog
from returnrisk.train.names import CHAMPION_URI

from .csvsafe import write_csv
from .model_protocol import ScoringModel
from .policy import PolicyConfig, apply_policy, flag, risk_level, risk_score
from .reasons import explain, explain_row

NEW_TABLES = ("orders", "order_lines", "skus", "customers", "countries", "carriers")
STATIC_TABLES = NEW_STATIC_TABLES
Explain = Literal["flagged", "all", "none"]

SCORED_COLUMNS = (
    "order_id",
    "status",
    "probability",
    "risk_score",
    "risk_level",
    "flagged",
)


REASON_SUFFIXES = (("", "str"), ("_driver", "str"), ("_contribution", "float64"))


class ScoringError(ReturnriskError, ValueError):
    """The new orders cannot be scored at all (e.g. an unreadable directory)."""


@dataclass(frozen=True)
class ScoreConfig:
    """What to score and how: the flag policy, which orders get reasons, how many reasons."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    explain: Explain = "flagged"
    top_reasons: int = 3

    def __post_init__(self) -> None:
        if self.explain not in ("flagged", "all", "none"):
            raise ValueError(f"explain must be flagged, all or none, not {self.explain!r}")


@dataclass(frozen=True)
class ScoreResult:
    """``results``: one row per input order, in input order (scored and refused);
    ``refused_orders`` / ``refused_lines``: the refused input rows with ``refused_reason``."""

    results: pd.DataFrame
    refused_orders: pd.DataFrame
    refused_lines: pd.DataFrame
    unseen: dict[str, int]
    model_version: str

    @property
    def n_scored(self) -> int:
        return int((self.results["status"] == "scored").sum())

    @property
    def n_refused(self) -> int:
        return int((self.results["status"] == "refused").sum())

    @property
    def n_flagged(self) -> int:
        return int(self.results["flagged"].fillna(False).astype(bool).sum())


@dataclass(frozen=True)
class OnlineResult:
    """``ScoringState.score_one``: the order's JSON record (as ``results_to_records`` writes it),
    whether it was flagged, its unseen-category counts, and its feature row (the online store's:
    the what-if actions start from it instead of building it again)."""

    record: dict[str, Any]
    flagged: bool
    unseen: dict[str, int]
    features: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# reading


def read_new_orders(path: str | Path) -> dict[str, pd.DataFrame]:
    """Raw frames of a new-orders directory (orders + order_lines required)."""
    frames, problems = read_frames(path, NEW_TABLES, required=("orders", "order_lines"))
    if problems:
        raise ScoringError("; ".join(str(p) for p in problems))
    return frames


# ---------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class Validated:
    orders: pd.DataFrame  # typed, accepted
    order_lines: pd.DataFrame  # typed, accepted
    static: dict[str, pd.DataFrame]  # typed new static rows (keys unknown to the history)
    reasons: pd.Series  # order_id -> "; "-joined reasons, refused orders only
    input_ids: list[str | None]  # one entry per output row, in input order


class HistoryIndex:
    """The history's keys per table (``History.ids``, hashed once by ``prepare_history``), for
    fast validation of small requests (``contract.check_new``)."""

    def __init__(self, ids: Mapping[str, pd.Index]):
        self.ids = ids


def validate_new(
    raw: Mapping[str, pd.DataFrame], history: HistoryIndex, *, now: pd.Timestamp | None = None
) -> Validated:
    """Split new orders into accepted rows and refused order_ids + reasons, as the contract
    answers (``contract.check_new``). ``now``: no timestamp may be after it (default: the wall
    clock)."""
    new = check_new(raw, history.ids, now=now)
    reasons = new.reasons
    order_key, line_key = new.order_ids, new.line_order_ids
    input_ids: list[str | None] = []
    if order_key is not None:
        input_ids = order_key.tolist()
    if line_key is not None:  # lines for an order that is not in orders: also one output row
        orphan = line_key[~member_mask(line_key, order_key if order_key is not None else [])]
        input_ids += orphan.drop_duplicates().tolist()

    orders_t, lines_t = new.frames["orders"], new.frames["order_lines"]
    refused_ids = set(reasons.index)
    if order_key is not None:
        ok_orders = orders_t.loc[~member_mask(order_key, refused_ids)]
    else:
        ok_orders = orders_t.iloc[0:0]
    ok_lines = lines_t.loc[~member_mask(line_key, refused_ids)] if line_key is not None else lines_t
    static = {name: new.frames[name] for name in STATIC_TABLES if name in new.frames}
    return Validated(ok_orders, ok_lines, static, reasons, input_ids)


# ---------------------------------------------------------------------------------------------
# the state


class ScoringState:
    """History + model, built once; ``score`` is safe to call from several threads."""

    def __init__(self, tables: Tables, model: ScoringModel, *, log: StepLog = QUIET):
        from returnrisk.features import FEATURE_SPECS, build_features, prepare_history

        self._build_features = build_features
        self.specs = FEATURE_SPECS
        self.tables = tables
        self.model = model
        self.risk_model = model.risk_model
        self.model_version = str(model.version)
        self.model_uri = str(model.uri)
        self.as_of = tables.as_of()
        with log.step("preparing the history's features"):
            # events sorted once: a request then costs O(its size), not O(history)
            self.feature_history = prepare_history(tables, as_of=self.as_of)
            self.history = HistoryIndex(self.feature_history.ids)
        with log.step("materialising the online store"):
            # lookups + the history's event indexes: one clean order is scored in ~1.6 ms
            self.online = OnlineFeatures(self.feature_history)

    # -- features ---------------------------------------------------------------------------
    def features(self, v: Validated, *, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        """Feature rows of the accepted new orders, exactly as ``build_features`` computes them
        on the history merged with the new rows, as of the scoring time (``as_of``, when
        given, must not be before the history's: the history is prepared as of its own)."""
        static = {name: df for name, df in v.static.items() if len(df)}
        if as_of is None:
            as_of = self.as_of
            if len(v.orders):
                as_of = max(as_of, v.orders["order_ts"].max())
        # the same as build_features on the history merged with the new rows (see prepare_history)
        return self._build_features(
            {"orders": v.orders, "order_lines": v.order_lines, **static},
            order_ids=v.orders["order_id"].tolist(),
            as_of=as_of,
            history=self.feature_history,
        )

    # -- scoring ----------------------------------------------------------------------------
    def score(
        self,
        raw: Mapping[str, pd.DataFrame],
        config: ScoreConfig = ScoreConfig(),
        *,
        log: StepLog = QUIET,
        now: pd.Timestamp | None = None,
    ) -> ScoreResult:
        """``now``: the clock no timestamp of the new rows may be after (default: wall clock)."""
        with log.step("checking the new orders"):
            v = validate_new(raw, self.history, now=now)
        log.info(f"{len(v.orders):,d} orders accepted, {len(v.reasons):,d} refused")
        return self._score_validated(raw, v, config, log=log)

    def score_one(
        self, new: OnlineOrder, config: ScoreConfig = ScoreConfig()
    ) -> OnlineResult | None:
        """The fast path of the service: one clean order, scored from the online store
        (``features.online``) with the same model, policy and reasons as ``score``, and the same
        answer (tested). ``None`` when anything in it could be refused by the contract's rules:
        the caller then scores it with ``score``, which words the refusal."""
        if not self._qualifies(new):
            return None
        row = self.online.order_features(new)
        rm = self.risk_model
        matrix, unseen = rm.encode(row)
        p = rm.predict_matrix(matrix)
        ids = np.asarray(row["order_id"], dtype=object)
        score = risk_score(p)
        level = risk_level(score, config.policy.level_cuts)
        flagged = bool(flag(p, ids, config.policy)[0])
        result: dict[str, Any] = {
            "order_id": row["order_id"][0],
            "probability": p[0],
            "risk_score": score[0],
            "risk_level": str(level[0]),
            "flagged": flagged,
            "model_version": self.model_version,
        }
        if config.explain == "all" or (config.explain == "flagged" and flagged):
            contrib = rm.contributions_matrix(matrix)
            names = [*rm.feature_names_, "bias"]
            result.update(explain_row(row, contrib, names, self.specs, top=config.top_reasons))
        record = _scored_record(result, config.top_reasons)
        return OnlineResult(record, flagged, unseen, row)

    def _qualifies(self, new: OnlineOrder) -> bool:
        """Whether the contract accepts ``new`` (``contract.check_new_order``, the one-order
        form of the full path's ``check_new``), so that the online store can score it."""
        static = {name: getattr(new, name) for name in STATIC_TABLES}
        return not check_new_order(new.order, new.lines, static, self.history.ids)

    def _score_validated(
        self,
        raw: Mapping[str, pd.DataFrame],
        v: Validated,
        config: ScoreConfig,
        *,
        log: StepLog = QUIET,
    ) -> ScoreResult:
        """Features of the accepted orders, prediction, policy (the top-N is of this batch),
        reasons for the orders that need them; then one row per input order."""
        rm = self.risk_model
        unseen: dict[str, int] = {}
        if len(v.orders):
            with log.step("building features"):
                feats = self.features(v)
            with log.step("predicting"):
                matrix, unseen = rm.encode(feats)
                proba = rm.predict_matrix(matrix)
            scored = apply_policy(feats["order_id"].to_numpy(), proba, config.policy)
            scored.insert(1, "status", "scored")
            if config.explain == "all":
                need = np.arange(len(scored))
            elif config.explain == "flagged":
                need = np.flatnonzero(scored["flagged"].to_numpy())
            else:
                need = np.zeros(0, dtype=np.int64)
            if len(need):
                with log.step(f"explaining {len(need):,d} orders"):
                    contrib = pd.DataFrame(
                        rm.contributions_matrix(matrix[need]),
                        columns=[*rm.feature_names_, "bias"],
                    )
                    why = explain(feats.iloc[need], contrib, self.specs, top=config.top_reasons)
                why.index = feats["order_id"].to_numpy()[need].astype(str)
                scored = scored.join(why, on="order_id")
        else:
            scored = pd.DataFrame({c: [] for c in SCORED_COLUMNS})
        for j in range(1, config.top_reasons + 1):
            for suffix, dtype in REASON_SUFFIXES:
                col = f"reason_{j}{suffix}"
                if col not in scored.columns:
                    scored[col] = pd.Series(np.nan, index=scored.index, dtype=dtype)
        scored["model_version"] = self.model_version
        refused_orders, refused_lines = self._refused_rows(raw, v)
        return ScoreResult(
            self._assemble(v, scored), refused_orders, refused_lines, unseen, self.model_version
        )

    def _assemble(self, v: Validated, scored: pd.DataFrame) -> pd.DataFrame:
        """One row per input order, in input order."""
        ids = pd.Series(v.input_ids, dtype="str")
        key = ids.fillna("<null>").to_numpy(dtype=object)
        by_id = scored.set_axis(scored["order_id"].astype("str").to_numpy(dtype=object), axis=0)
        out = by_id.drop(columns=["order_id"]).reindex(key).reset_index(drop=True)
        out.insert(0, "order_id", ids.to_numpy())
        reasons = pd.Series(v.reasons.to_numpy(), index=v.reasons.index.astype(object))
        out["refused_reason"] = pd.Series(reasons.reindex(key).to_numpy(), dtype="str")
        is_refused = out["refused_reason"].notna().to_numpy()
        out["status"] = np.where(is_refused, "refused", "scored")
        out["model_version"] = self.model_version
        flagged = out["flagged"].astype("boolean")
        flagged[is_refused] = pd.NA
        out["flagged"] = flagged
        cols = [*SCORED_COLUMNS, *(c for c in out.columns if c.startswith("reason_"))]
        cols += ["model_version", "refused_reason"]
        return out[cols]

    @staticmethod
    def _refused_rows(
        raw: Mapping[str, pd.DataFrame], v: Validated
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        out = []
        for name in ("orders", "order_lines"):
            df = raw[name] if name in raw else empty_raw(name)
            if "order_id" not in df.columns or len(v.reasons) == 0:
                out.append(df.iloc[0:0].assign(refused_reason=pd.Series([], dtype="str")))
                continue
            key = order_keys(df["order_id"])
            mask = member_mask(key, v.reasons.index)
            out.append(df.loc[mask].assign(refused_reason=key[mask].map(v.reasons).to_numpy()))
        return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# output


def results_to_records(results: pd.DataFrame, top: int = 3) -> list[dict[str, Any]]:
    """JSON-ready records: scored orders with a ``reasons`` list, refused with ``reason``."""
    records = []
    for row in results.to_dict("records"):
        if row["status"] == "refused":
            records.append(
                {"order_id": row["order_id"], "status": "refused", "reason": row["refused_reason"]}
            )
            continue
        records.append(_scored_record(row, top))
    return records


def _scored_record(row: Mapping[str, Any], top: int) -> dict[str, Any]:
    """The JSON record of one scored result row (its ``reason_k*`` columns as a list)."""
    return {
        "order_id": row["order_id"],
        "status": "scored",
        "probability": float(row["probability"]),
        "risk_score": float(row["risk_score"]),
        "risk_level": row["risk_level"],
        "flagged": bool(row["flagged"]),
        "reasons": _reason_list(row, top),
        "model_version": row["model_version"],
    }


def _reason_list(row: Mapping[str, Any], top: int) -> list[dict[str, Any]]:
    """The ``reason_k*`` columns of one result row as a list of {driver, text, contribution}."""
    reasons = []
    for k in range(1, top + 1):
        text = row.get(f"reason_{k}")
        if isinstance(text, str):
            reasons.append(
                {
                    "driver": row[f"reason_{k}_driver"],
                    "text": text,
                    "contribution": float(row[f"reason_{k}_contribution"]),
                }
            )
    return reasons


def write_result(result: ScoreResult, out: str | Path) -> tuple[Path, Path | None]:
    """Write the results (Parquet or CSV by extension) and, when some orders were refused, a
    directory ``<stem>_refused/`` with their orders and lines (``refused_reason`` added) in the
    same format, ready to fix and send again. Returns both paths."""
    out = Path(out)
    fmt = "csv" if out.suffix.lower() == ".csv" else "parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(result.results, out, fmt)
    refused_dir = out.with_name(f"{out.stem}_refused")
    clear_refused(refused_dir)  # a previous run's refusals are not this run's
    if len(result.refused_orders) or len(result.refused_lines) or result.n_refused:
        refused_dir.mkdir(exist_ok=True)
        _write(result.refused_orders, refused_dir / f"orders.{fmt}", fmt)
        _write(result.refused_lines, refused_dir / f"order_lines.{fmt}", fmt)
        return out, refused_dir
    return out, None


def clear_refused(refused_dir: Path) -> None:
    """Remove what an earlier run wrote into ``refused_dir`` (its orders and order_lines files,
    in either format) and the directory once empty; anything else in it is left alone."""
    if not refused_dir.is_dir():
        return
    for name in ("orders", "order_lines"):
        for ext in (".csv", ".parquet"):
            (refused_dir / f"{name}{ext}").unlink(missing_ok=True)
    if not any(refused_dir.iterdir()):
        refused_dir.rmdir()


def _write(df: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        write_csv(df, path)  # text cells that a spreadsheet would run as formulas get a '
    else:
        df.to_parquet(path, index=False)


def summary_json(result: ScoreResult) -> str:
    return json.dumps(
        {
            "scored": result.n_scored,
            "refused": result.n_refused,
            "flagged": result.n_flagged,
            "model_version": result.model_version,
        }
    )


__all__ = [
    "ScoreConfig",
    "ScoreResult",
    "ScoringError",
    "ScoringState",
    "read_new_orders",
    "results_to_records",
    "validate_new",
    "write_result",
]


# ---------------------------------------------------------------------------------------------
# the batch command


@dataclass(frozen=True)
class BatchConfig:
    """``returnrisk score DIR --orders NEW_DIR --out FILE``, parsed once at the entry."""

    data: Path
    orders: Path
    out: Path
    model_uri: str = CHAMPION_URI
    score: ScoreConfig = field(default_factory=ScoreConfig)
    show: int = 10
    actions: str = "flagged"  # flagged | all | none: what-if actions (serve/decisions.py)
    costs: Path | None = None  # the cost model's YAML file (default: the assumptions)


def format_flagged(result: ScoreResult, limit: int = 10) -> str:
    """The flagged orders, riskiest first, with their reasons (for people and the demo)."""
    r = result.results
    flagged = r.loc[r["flagged"].fillna(False).astype(bool)].sort_values(
        ["probability", "order_id"], ascending=[False, True]
    )
    lines = [
        f"{result.n_scored:,d} orders scored, {result.n_flagged:,d} flagged, "
        f"{result.n_refused:,d} refused (model version {result.model_version})"
    ]
    for row in flagged.head(limit).to_dict("records"):
        lines.append(
            f"  {row['order_id']}  risk {row['risk_score']:5.1f}  ({row['risk_level']}, "
            f"p = {row['probability']:.3f})"
        )
        for k in range(1, 4):
            text = row.get(f"reason_{k}")
            if isinstance(text, str):
                lines.append(f"      {row[f'reason_{k}_contribution']:+.2f}  {text}")
    if len(flagged) > limit:
        lines.append(f"  ... and {len(flagged) - limit:,d} more flagged orders")
    refused = r.loc[r["status"] == "refused"]
    for row in refused.head(limit).to_dict("records"):
        lines.append(f"  refused {row['order_id']}: {row['refused_reason']}")
    if len(refused) > limit:
        lines.append(f"  ... and {len(refused) - limit:,d} more refused orders")
    return "\n".join(lines)


def run_batch(
    config: BatchConfig, *, log: StepLog = QUIET
) -> tuple[ScoreResult, Path, Path | None]:
    """Load history + model, score the new orders, write the results (and the refused rows)."""
    from returnrisk.contract import load_tables
    from returnrisk.train.registry import load_model

    with log.step(f"reading new orders from {config.orders}"):
        raw = read_new_orders(config.orders)
    tables = load_tables(config.data, log=log)
    with log.step(f"loading model {config.model_uri}"):
        model = load_model(config.model_uri)
    log.info(f"model version {model.version}")
    state = ScoringState(tables, model, log=log)
    result = state.score(raw, config.score, log=log)
    if config.actions != "none":  # the decisions hook (serve/decisions.py)
        from dataclasses import replace as _replace

        from returnrisk.costs import load_costs

        from .decisions import with_actions

        costs = load_costs(config.costs, tables.after_sales_cases)
        with log.step(f"what-if actions for the {config.actions} orders"):
            results, table = with_actions(state, raw, result, costs, config.actions)
        result = _replace(result, results=results)
        if config.actions == "all":
            fmt = "csv" if config.out.suffix.lower() == ".csv" else "parquet"
            config.out.parent.mkdir(parents=True, exist_ok=True)
            _write(table, config.out.with_name(f"{config.out.stem}_actions.{fmt}"), fmt)
    with log.step(f"writing {config.out}"):
        out, refused = write_result(result, config.out)
    return result, out, refused
