"""Request and response models of the HTTP service (``serve/app.py``).

Request rows are generated from the contract (``SCHEMAS``): JSON types only, numbers strict
(a boolean or a string is never taken for a number; ``2.0`` is the whole number 2); the
contract's value rules answer as the batch does (a refused order with its reason), so the two
never disagree.
Response models document what the service answers, errors included.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from returnrisk.contract import SCHEMAS
from returnrisk.features.online import OnlineOrder

_BIG = 1_000_000_000


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, str_max_length=200)


def _json_number(value: Any) -> Any:
    """A number must be a JSON number: ``true`` is not 1 and ``"3"`` is not 3 (``2.0`` is the
    whole number 2, as JSON Schema says)."""
    if isinstance(value, bool | str):
        raise ValueError(f"expected a JSON number, got {type(value).__name__}")
    return value


_NUMBER = BeforeValidator(_json_number)
_JSON_TYPES: dict[str, Any] = {
    "str": str,
    "float": Annotated[float, Field(ge=-1e12, le=1e12), _NUMBER],  # bounds first: JSON Schema
    "int": Annotated[int, Field(ge=-_BIG, le=_BIG), _NUMBER],
    "bool": bool,
    "timestamp": datetime,
}


def _row_model(
    table: str, name: str, *, key_only: bool = False, drop: tuple[str, ...] = (), **extra: Any
) -> type[_In]:
    """The request model of one row of a contract table, generated from ``SCHEMAS``: its columns
    with their JSON types (numbers JSON numbers within a sane range). Required: the columns the
    contract says are not null, or with ``key_only`` (a static row sent with an order) only the
    key; a missing other value is then the contract's to refuse, with its reason, as in the
    batch."""
    schema = SCHEMAS[table]
    fields: dict[str, Any] = {}
    for col in schema.columns:
        if col.name in drop:
            continue
        typ = _JSON_TYPES[col.kind]
        required = col.name == schema.key or not (key_only or col.nullable)
        fields[col.name] = (typ, ...) if required else (typ | None, None)
    return create_model(name, __base__=_In, **fields, **extra)


if TYPE_CHECKING:  # models made at run time from the contract: to mypy, rows of any field

    class _Row(_In):
        def __getattr__(self, name: str) -> Any: ...

    LineIn = _Row
    OrderIn = _Row
    SkuIn = _Row
    CustomerIn = _Row
    CountryIn = _Row
    CarrierIn = _Row
else:
    LineIn = _row_model("order_lines", "LineIn", drop=("order_id",))
    OrderIn = _row_model("orders", "OrderIn", lines=(list[LineIn], Field(max_length=500)))
    SkuIn = _row_model("skus", "SkuIn", key_only=True)
    CustomerIn = _row_model("customers", "CustomerIn", key_only=True)
    CountryIn = _row_model("countries", "CountryIn", key_only=True)
    CarrierIn = _row_model("carriers", "CarrierIn", key_only=True)

Explain = Literal["flagged", "all", "none"]


class ScoreRequest(_In):
    orders: list[OrderIn] = Field(min_length=1, max_length=10_000)
    skus: list[SkuIn] = Field(default_factory=list, max_length=10_000)
    customers: list[CustomerIn] = Field(default_factory=list, max_length=10_000)
    countries: list[CountryIn] = Field(default_factory=list, max_length=1_000)
    carriers: list[CarrierIn] = Field(default_factory=list, max_length=1_000)
    explain: Explain | None = None


# ---------------------------------------------------------------------------------------------
# responses (documentation: the handlers answer with plain JSON of this shape)


class FieldError(BaseModel):
    field: str = Field(description="the request field, dotted (orders.0.lines.1.quantity)")
    message: str


class ErrorOut(BaseModel):
    """Every error answer: one readable line, plus the fields at fault for a 422."""

    detail: str
    errors: list[FieldError] | None = None


class Reason(BaseModel):
    driver: str
    text: str
    contribution: float


Actions = Literal["none", "flagged", "all"]
ActionName = Literal[
    "ship", "hold_inspect", "contact_buyer", "ship_ddp", "switch_carrier", "cancel"
]


class ActionOut(BaseModel):
    """One action of an order's what-if table (``?actions=all``)."""

    action: ActionName
    carrier_id: str | None = Field(
        description="the service switched to (switch_carrier), else the order's own"
    )
    p_case_if: float = Field(ge=0, le=1, description="P(case) if the action is taken")
    p_logistics_if: float = Field(ge=0, le=1)
    p_duties_if: float = Field(ge=0, le=1)
    p_product_if: float = Field(ge=0, le=1)
    p_return_refund_if: float = Field(ge=0, le=1)
    p_other_if: float = Field(ge=0, le=1)
    action_cost: float = Field(description="EUR the action costs on this order")
    saving: float = Field(
        description="expected EUR saved: (P(family) - P(family if)) x case cost - action cost"
    )


class ScoredOut(BaseModel):
    order_id: str
    status: Literal["scored"]
    probability: float = Field(ge=0, le=1)
    risk_score: float = Field(ge=0, le=100)
    risk_level: Literal["normal", "elevated", "highest"]
    flagged: bool
    reasons: list[Reason]
    model_version: str
    # what-if actions (``?actions=flagged|all``; absent with ``none``, null where not computed)
    recommended_action: ActionName | None = Field(
        None,
        description="the action with the largest expected saving (ship when none is positive); "
        "a model estimate under the cost model's assumptions, not a causal guarantee",
    )
    recommended_carrier: str | None = Field(
        None, description="the service to switch to, when the recommendation is switch_carrier"
    )
    expected_saving: float | None = Field(
        None, ge=0, description="EUR the recommended action is expected to save (0: ship)"
    )
    p_case_if: float | None = Field(
        None, ge=0, le=1, description="P(case) if the recommended action is taken"
    )
    actions: list[ActionOut] | None = Field(
        None, description="every action with p_case_if and saving (``?actions=all`` only)"
    )


class RefusedOut(BaseModel):
    order_id: str | None
    status: Literal["refused"]
    reason: str


class ScoreOut(BaseModel):
    model_version: str
    policy: str
    actions: Actions = Field(description="which orders got what-if actions (the query's)")
    n_scored: int
    n_refused: int
    n_flagged: int
    results: list[ScoredOut | RefusedOut]


class ModelOut(BaseModel):
    version: str
    uri: str
    run_id: str | None
    data_window: dict[str, Any]
    metrics: dict[str, Any]
    n_features: int
    history_as_of: str
    policy: str


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "not ready"]
    model_version: str | None = None
    detail: str | None = None


class ReloadOut(BaseModel):
    status: Literal["reloaded", "failed"]
    model_version: str | None = None
    previous_version: str | None = None
    history_as_of: str | None = None
    detail: str | None = None
    serving_version: str | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error codes, all with the ``ErrorOut`` body."""
    what = {
        401: "missing or wrong API key (when the service has one)",
        413: "request body or order count over the limit",
        422: "the request does not match this schema (which field, why)",
        503: "not ready: the scoring state is still loading",
    }
    return {c: {"model": ErrorOut, "description": what[c]} for c in codes}


def error_responses_of_html_route(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The same for a route whose success is HTML (its errors are still JSON: FastAPI would
    document them under the route's own media type)."""
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    return {
        c: {"description": r["description"], "content": json_error}
        for c, r in error_responses(*codes).items()
    }


# ---------------------------------------------------------------------------------------------
# request -> contract frames / rows


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat()


def request_frames(req: ScoreRequest) -> dict[str, pd.DataFrame]:
    """The request as raw contract frames (what a new-orders directory would hold)."""
    orders = []
    lines = []
    for o in req.orders:
        row = o.model_dump(exclude={"lines"})
        row["order_ts"] = _ts(o.order_ts)
        orders.append(row)
        lines += [{"order_id": o.order_id, **ln.model_dump()} for ln in o.lines]
    frames = {
        "orders": pd.DataFrame(orders, columns=list(OrderIn.model_fields)[:-1]),
        "order_lines": pd.DataFrame(lines, columns=["order_id", *LineIn.model_fields]),
    }
    for name, items, model in (
        ("skus", req.skus, SkuIn),
        ("customers", req.customers, CustomerIn),
        ("countries", req.countries, CountryIn),
        ("carriers", req.carriers, CarrierIn),
    ):
        if items:
            rows = [i.model_dump() for i in items]
            if name == "customers":
                for r, i in zip(rows, items, strict=True):
                    r["first_seen_ts"] = _ts(i.first_seen_ts)
            frames[name] = pd.DataFrame(rows, columns=list(model.model_fields))
    return frames


def online_order(req: ScoreRequest) -> OnlineOrder:
    """A one-order request as plain contract rows (what ``ScoringState.score_one`` takes)."""
    o = req.orders[0]
    order = o.model_dump(exclude={"lines"})
    lines = [{"order_id": o.order_id, **ln.model_dump()} for ln in o.lines]
    return OnlineOrder(
        order,
        lines,
        skus=[r.model_dump() for r in req.skus],
        customers=[r.model_dump() for r in req.customers],
        countries=[r.model_dump() for r in req.countries],
        carriers=[r.model_dump() for r in req.carriers],
    )


def orders_to_json(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """A ``POST /v1/score`` body from new-order frames (for clients, tests and benchmarks)."""

    whole = {c.name for schema in SCHEMAS.values() for c in schema.columns if c.kind == "int"}

    def records(df: pd.DataFrame, cols: list[str]) -> list[dict[str, Any]]:
        df = df[[c for c in cols if c in df.columns]]
        out = df.astype(object).where(df.notna(), None).to_dict("records")
        for row in out:
            for k, v in row.items():
                if isinstance(v, pd.Timestamp):
                    row[k] = v.isoformat()
                elif hasattr(v, "item"):  # numpy scalars -> Python
                    row[k] = v = v.item()
                if k in whole and isinstance(v, float) and v.is_integer():
                    row[k] = int(v)  # a whole-number column with gaps is float in pandas
        return out

    orders = frames["orders"]
    lines = frames["order_lines"]
    by_order: dict[Any, list[dict[str, Any]]] = {}
    for rec in records(lines, ["order_id", *LineIn.model_fields]):
        by_order.setdefault(rec.pop("order_id"), []).append(rec)
    body_orders = records(orders, list(OrderIn.model_fields)[:-1])
    for row in body_orders:
        row["lines"] = by_order.get(row["order_id"], [])
    body: dict[str, Any] = {"orders": body_orders}
    for name, model in (
        ("skus", SkuIn),
        ("customers", CustomerIn),
        ("countries", CountryIn),
        ("carriers", CarrierIn),
    ):
        df = frames.get(name)
        if df is not None and len(df):
            body[name] = records(df, list(model.model_fields))
    return body
