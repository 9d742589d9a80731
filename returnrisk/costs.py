"""The cost model of decisions: what a case costs, what an action costs and what it prevents.

One small YAML file, every key optional (docs/operations.md, "Decisions")::

    handling_cost: 8.0          # EUR added to every case (staff time, postage, ...)
    case_cost:                  # EUR per case of a type; default: median `amount` in the history
      return: 31.0
    actions:
      hold_inspect:
        cost: 3.0               # EUR per order the action is taken on
        value_share: 0.0        # + this share of the order's value
        efficacy: {product: 0.5, logistics: 0.2}   # share of the family's cases it prevents

The defaults are assumptions, not measurements: replace them with the shop's own figures.
``ship_ddp`` and ``switch_carrier`` change the order itself; when scoring, their effect is
estimated by re-scoring the changed order (``serve/decisions.py``), and their efficacy here is
used only where no re-scoring is possible (the backtest, which replays what really happened).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.contract import CASE_TYPES
from returnrisk.errors import ReturnriskError

# case type -> family; the order of FAMILIES is the column order everywhere
CASE_FAMILY: dict[str, str] = {
    "not_received": "logistics",
    "damaged": "logistics",
    "duty_dispute": "duties",
    "not_as_described": "product",
    "wrong_item": "product",
    "return": "return_refund",
    "refund": "return_refund",
    "other": "other",
}
FAMILIES = ("logistics", "duties", "product", "return_refund", "other")
ACTIONS = ("ship", "hold_inspect", "contact_buyer", "ship_ddp", "switch_carrier", "cancel")
WHAT_IF_ACTIONS = ("ship_ddp", "switch_carrier")  # re-scored, not taken from the table

DEFAULT_HANDLING_COST = 8.0
# used for a case type the history has no amount for
DEFAULT_CASE_COST = 25.0
# Assumptions (EUR and shares), documented in docs/operations.md: replace them.
DEFAULT_ACTIONS: dict[str, dict[str, Any]] = {
    "ship": {"cost": 0.0, "value_share": 0.0, "efficacy": {}},
    "hold_inspect": {
        "cost": 3.0,
        "value_share": 0.0,
        "efficacy": {"product": 0.5, "logistics": 0.15, "return_refund": 0.1},
    },
    "contact_buyer": {
        "cost": 1.5,
        "value_share": 0.0,
        "efficacy": {"duties": 0.4, "return_refund": 0.15, "product": 0.1, "other": 0.1},
    },
    # the duties and clearance the seller now pays, net of what it passes on in its prices
    "ship_ddp": {"cost": 3.0, "value_share": 0.05, "efficacy": {"duties": 0.9}},
    "switch_carrier": {"cost": 2.5, "value_share": 0.0, "efficacy": {"logistics": 0.3}},
    "cancel": {
        "cost": 2.0,
        "value_share": 0.5,  # the margin lost on a cancelled sale, and the buyer's goodwill
        "efficacy": dict.fromkeys(FAMILIES, 1.0),
    },
}
_TOP_KEYS = ("handling_cost", "case_cost", "actions")
_ACTION_KEYS = ("cost", "value_share", "efficacy")


class CostFileError(ReturnriskError, ValueError):
    """A cost file that cannot be used: the message names file, key and value."""


@dataclass(frozen=True)
class CostModel:
    """Resolved costs: per case type and family (EUR), per action cost and efficacy."""

    handling_cost: float
    case_cost: dict[str, float]  # per case type, handling included
    family_cost: dict[str, float]  # per family, handling included
    action_cost: dict[str, float]  # fixed EUR per order
    action_value_share: dict[str, float]
    efficacy: dict[str, dict[str, float]]  # action -> family -> share prevented
    source: str = "defaults"
    overridden: tuple[str, ...] = field(default_factory=tuple)

    def efficacy_matrix(self) -> np.ndarray:
        """(len(ACTIONS), len(FAMILIES)) efficacy."""
        return np.array([[self.efficacy[a][f] for f in FAMILIES] for a in ACTIONS])

    def family_costs(self) -> np.ndarray:
        return np.array([self.family_cost[f] for f in FAMILIES])

    def costs_of(self, action: str, order_value: np.ndarray) -> np.ndarray:
        """EUR the action costs on orders of these values."""
        v = np.asarray(order_value, dtype=np.float64)
        v = np.where(np.isfinite(v), v, 0.0)
        return self.action_cost[action] + self.action_value_share[action] * v

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "handling_cost": self.handling_cost,
            "case_cost": self.case_cost,
            "family_cost": self.family_cost,
            "actions": {
                a: {
                    "cost": self.action_cost[a],
                    "value_share": self.action_value_share[a],
                    "efficacy": self.efficacy[a],
                }
                for a in ACTIONS
            },
        }


def _number(source: str, key: str, value: Any, *, upper: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)):
        raise CostFileError(f"{source}: {key}: not a number: {value!r}")
    v = float(value)
    if v < 0:
        raise CostFileError(f"{source}: {key}: must not be negative, got {value!r}")
    if upper is not None and v > upper:
        raise CostFileError(f"{source}: {key}: must be in [0, {upper:g}], got {value!r}")
    return v


def _mapping(source: str, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CostFileError(f"{source}: {key}: must be a mapping, got {value!r}")
    return value


def _unknown(source: str, key: str, value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        where = f"{key}: " if key else ""
        raise CostFileError(
            f"{source}: {where}unknown {what} {value!r}; choose one of {', '.join(allowed)}"
        )


def read_cost_file(path: str | Path) -> dict[str, Any]:
    """The checked overrides of a cost file (YAML); ``CostFileError`` names file, key, value."""
    import yaml

    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise CostFileError(f"{source}: cannot read: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CostFileError(f"{source}: not valid YAML{where}") from None
    return check_overrides(raw if raw is not None else {}, source)


def check_overrides(raw: Any, source: str = "costs") -> dict[str, Any]:
    """Check a parsed cost file; returns it with every number as a float."""
    raw = _mapping(source, "(top level)", raw)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        _unknown(source, "", key, _TOP_KEYS, "key")
        if key == "handling_cost":
            out[key] = _number(source, key, value)
        elif key == "case_cost":
            out[key] = {}
            for ct, v in _mapping(source, key, value).items():
                _unknown(source, key, ct, CASE_TYPES, "case type")
                out[key][ct] = _number(source, f"{key}.{ct}", v)
        else:
            out[key] = {}
            for action, spec in _mapping(source, key, value).items():
                _unknown(source, key, action, ACTIONS, "action")
                spec = _mapping(source, f"{key}.{action}", spec)
                got: dict[str, Any] = {}
                for k, v in spec.items():
                    _unknown(source, f"{key}.{action}", k, _ACTION_KEYS, "key")
                    where = f"{key}.{action}.{k}"
                    if k == "efficacy":
                        got[k] = {}
                        for fam, e in _mapping(source, where, v).items():
                            _unknown(source, where, fam, FAMILIES, "case-type family")
                            got[k][fam] = _number(source, f"{where}.{fam}", e, upper=1.0)
                    else:
                        got[k] = _number(
                            source, where, v, upper=1.0 if k == "value_share" else None
                        )
                out[key][action] = got
    return out


def median_case_amounts(cases: pd.DataFrame) -> dict[str, float]:
    """Median ``amount`` per case type in a case table (types without an amount left out)."""
    known = cases.loc[cases["amount"].notna(), ["case_type", "amount"]]
    med = known.groupby("case_type", observed=True)["amount"].median()
    return {str(k): float(v) for k, v in med.items()}


def resolve_costs(
    overrides: Mapping[str, Any] | None = None,
    cases: pd.DataFrame | None = None,
    *,
    source: str = "defaults",
) -> CostModel:
    """Defaults (history medians where ``cases`` is given), then the file's overrides.

    A family's cost is the mean of its types' costs weighted by how often each type occurs in
    ``cases`` (equal weights without a history).
    """
    ov = dict(overrides or {})
    handling = float(ov.get("handling_cost", DEFAULT_HANDLING_COST))
    med = median_case_amounts(cases) if cases is not None and len(cases) else {}
    base = {ct: med.get(ct, DEFAULT_CASE_COST) for ct in CASE_TYPES}
    given = ov.get("case_cost", {})
    # an overridden case cost is what a case costs in total: handling is not added on top
    case_cost = {ct: float(given[ct]) if ct in given else base[ct] + handling for ct in CASE_TYPES}
    counts = (
        cases["case_type"].astype("str").value_counts()
        if cases is not None and len(cases)
        else pd.Series(dtype="int64")
    )
    family_cost = {}
    for fam in FAMILIES:
        types = [ct for ct, f in CASE_FAMILY.items() if f == fam]
        w = np.array([float(counts.get(ct, 0)) for ct in types])
        w = w if w.sum() > 0 else np.ones(len(types))
        family_cost[fam] = float(np.average([case_cost[ct] for ct in types], weights=w))
    acts = ov.get("actions", {})
    action_cost, share, efficacy = {}, {}, {}
    for a in ACTIONS:
        spec = {**DEFAULT_ACTIONS[a], **acts.get(a, {})}
        action_cost[a] = float(spec["cost"])
        share[a] = float(spec["value_share"])
        eff = {**DEFAULT_ACTIONS[a]["efficacy"], **acts.get(a, {}).get("efficacy", {})}
        efficacy[a] = {f: float(eff.get(f, 0.0)) for f in FAMILIES}
    return CostModel(
        handling_cost=handling,
        case_cost=case_cost,
        family_cost=family_cost,
        action_cost=action_cost,
        action_value_share=share,
        efficacy=efficacy,
        source=source,
        overridden=tuple(sorted(ov)),
    )


def load_costs(path: str | Path | None, cases: pd.DataFrame | None = None) -> CostModel:
    """The cost model of ``path`` (None: the defaults) over the history's ``cases``."""
    if path is None:
        return resolve_costs(None, cases)
    return resolve_costs(read_cost_file(path), cases, source=str(path))
