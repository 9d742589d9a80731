"""The HTTP service: FastAPI app factory around the one scoring code path.

``create_app(config, state=..., loader=...)`` does nothing at import time. The scoring state
(history tables + champion model) is built once, in a background thread at start-up when not
given, and rebuilt by ``POST /v1/reload`` (the champion alias is re-read; a failed reload keeps
serving the old state). ``/readyz`` answers 503 until a state is ready.

Endpoints: ``POST /v1/score``, ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` (Prometheus text), ``POST /v1/reload``; plus ``GET /report/skus`` when the
SKU report module ``returnrisk.serve.report_skus`` provides a ``router``.
"""

from __future__ import annotations

import gc
import hmac
import importlib
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from returnrisk.contract import SCHEMAS
from returnrisk.features.online import OnlineOrder

from .metrics import Metrics
from .policy import PolicyConfig
from .scoring import ScoreConfig, ScoringState, results_to_records

logger = logging.getLogger("returnrisk.serve")

DEFAULT_MODEL_URI = "models:/return-risk@champion"
_BIG = 1_000_000_000


@dataclass(frozen=True)
class ServeConfig:
    """Service settings, parsed once at the command's entry."""

    data: Path | None = None
    model_uri: str = DEFAULT_MODEL_URI
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(flag_above=0.4))
    explain: Literal["flagged", "all", "none"] = "flagged"
    max_body_bytes: int = 1_000_000
    max_orders: int = 1_000
    api_key: str | None = None
    max_concurrent_scoring: int = 2  # full-path scoring threads (CPU-bound: about the cores)


# ---------------------------------------------------------------------------------------------
# request models, generated from the contract: JSON types only; the contract's value rules
# answer as the batch does (a refused order with its reason), so the two can never disagree.


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, str_max_length=200)


_JSON_TYPES: dict[str, Any] = {
    "str": str,
    "float": float,
    "int": int,
    "bool": bool,
    "timestamp": datetime,
}
_RANGES = {"float": {"ge": -1e12, "le": 1e12}, "int": {"ge": -_BIG, "le": _BIG}}


def _row_model(
    table: str, name: str, *, key_only: bool = False, drop: tuple[str, ...] = (), **extra: Any
) -> type[_In]:
    """The request model of one row of a contract table, generated from ``SCHEMAS``: its columns
    with their JSON types (numbers within a sane range). Required: the columns the contract
    says are not null, or with ``key_only`` (a static row sent with an order) only the key; a
    missing other value is then the contract's to refuse, with its reason, as in the batch."""
    schema = SCHEMAS[table]
    fields: dict[str, Any] = {}
    for col in schema.columns:
        if col.name in drop:
            continue
        typ, bounds = _JSON_TYPES[col.kind], _RANGES.get(col.kind, {})
        required = col.name == schema.key or not (key_only or col.nullable)
        if required:
            fields[col.name] = (typ, Field(**bounds))
        else:
            fields[col.name] = (typ | None, Field(default=None, **bounds))
    return create_model(name, __base__=_In, **fields, **extra)


LineIn = _row_model("order_lines", "LineIn", drop=("order_id",))
OrderIn = _row_model("orders", "OrderIn", lines=(list[LineIn], Field(max_length=500)))
SkuIn = _row_model("skus", "SkuIn", key_only=True)
CustomerIn = _row_model("customers", "CustomerIn", key_only=True)
CountryIn = _row_model("countries", "CountryIn", key_only=True)
CarrierIn = _row_model("carriers", "CarrierIn", key_only=True)


class ScoreRequest(_In):
    orders: list[OrderIn] = Field(min_length=1, max_length=10_000)
    skus: list[SkuIn] = Field(default_factory=list, max_length=10_000)
    customers: list[CustomerIn] = Field(default_factory=list, max_length=10_000)
    countries: list[CountryIn] = Field(default_factory=list, max_length=1_000)
    carriers: list[CarrierIn] = Field(default_factory=list, max_length=1_000)
    explain: Literal["flagged", "all", "none"] | None = None


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


# ---------------------------------------------------------------------------------------------
# body size limit + request metrics, as a plain ASGI middleware (cheap)


class _Guard:
    def __init__(self, app: Any, metrics: Metrics, max_body: int, routes: set[str]):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.routes = routes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in self.routes else "other"
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            too_big = False
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None:
                try:
                    too_big = int(length) > self.max_body
                except ValueError:
                    too_big = False
            if too_big:
                await self._reject(send_wrapper)
                return
            if scope.get("method") in ("POST", "PUT", "PATCH") and length is None:
                # no declared length (chunked): read up to the limit, then replay
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    more = message.get("more_body", False)
                    if size > self.max_body:
                        await self._reject(send_wrapper)
                        return
                body = b"".join(chunks)
                sent = False

                async def replay() -> dict:
                    nonlocal sent
                    if not sent:
                        sent = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            code = str(status["code"])
            self.metrics.inc("http_requests_total", endpoint=path, code=code)
            self.metrics.observe("http_request_duration_seconds", elapsed, endpoint=path)

    async def _reject(self, send: Callable) -> None:
        body = (
            b'{"detail":"request body too large: limit is '
            + str(self.max_body).encode()
            + b' bytes"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# the app


def settle_heap() -> None:
    """Collect once, then move every object alive now -- the scoring state's many small objects
    (key lookups, vocabularies) -- out of the garbage collector's reach (``gc.freeze``): a full
    collection would otherwise walk them all and stall the service ~90 ms (it set the p99 of
    the open-loop benchmark). Objects freed later are still freed by reference counting."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Service:
    """Holds the current scoring state and swaps it atomically on reload."""

    def __init__(
        self,
        config: ServeConfig,
        state: ScoringState | None,
        loader: Callable[[], ScoringState] | None,
        metrics: Metrics,
    ):
        self.config = config
        self.state = state
        self.loader = loader
        self.metrics = metrics
        self.load_error: str | None = None
        self._reload_lock = threading.Lock()

    def load(self) -> ScoringState:
        if self.loader is None:
            raise RuntimeError("no loader configured: this service cannot reload")
        with self._reload_lock:
            try:
                new = self.loader()
            except Exception as err:  # a failed (re)load keeps the old state
                self.load_error = f"{type(err).__name__}: {err}"
                self.metrics.inc("reloads_total", result="failed")
                raise
            self.state = new
            settle_heap()  # the old state is released: collect it, freeze the new one
            self.load_error = None
            self.metrics.inc("reloads_total", result="ok")
            self.metrics.clear("model_info")
            self.metrics.set("model_info", 1, version=new.model_version)
            return new


def _describe(metrics: Metrics) -> None:
    metrics.describe("http_requests_total", "counter", "HTTP requests by endpoint and status")
    metrics.describe(
        "http_request_duration_seconds", "histogram", "HTTP request latency in seconds"
    )
    metrics.describe(
        "score_requests_total",
        "counter",
        "score requests by path: online (one clean order, from the online "
        "store) or batch (anything else, including every refusal)",
    )
    metrics.describe("orders_scored_total", "counter", "orders scored")
    metrics.describe("orders_flagged_total", "counter", "orders flagged")
    metrics.describe("orders_refused_total", "counter", "orders refused (bad input)")
    metrics.describe(
        "unseen_categories_total", "counter", "categorical values unseen in training, by feature"
    )
    metrics.describe("reloads_total", "counter", "state reloads by result")
    metrics.describe("model_info", "gauge", "the model version being served")


def create_app(
    config: ServeConfig = ServeConfig(),
    *,
    state: ScoringState | None = None,
    loader: Callable[[], ScoringState] | None = None,
) -> FastAPI:
    """The FastAPI app. Give a ready ``state``, or a ``loader`` run in the background at start
    (and on reload), or both. Nothing happens until the app starts."""
    metrics = Metrics()
    _describe(metrics)
    # the full path is CPU-bound pandas work: at most this many requests at once, in threads
    # (anyio's pool otherwise runs up to 40), so a burst queues instead of thrashing
    limiter = anyio.CapacityLimiter(max(1, config.max_concurrent_scoring))

    service = Service(config, state, loader, metrics)
    if state is not None:
        metrics.set("model_info", 1, version=state.model_version)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        if service.state is not None:
            settle_heap()
        elif loader is not None:

            def initial() -> None:
                try:
                    service.load()
                except Exception:  # noqa: BLE001 - reported by /readyz
                    logger.exception("initial load failed")

            threading.Thread(target=initial, name="returnrisk-load", daemon=True).start()
        yield

    app = FastAPI(
        title="returnrisk",
        version="1",
        summary="Pre-shipment after-sales risk scoring",
        lifespan=lifespan,
    )
    app.state.service = service

    async def require_key(request: Request) -> None:
        if not config.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), config.api_key.encode()
        )
        if not ok:
            raise HTTPException(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def ready_state() -> ScoringState:
        st = service.state
        if st is None:
            raise HTTPException(503, "not ready: the scoring state is still loading")
        return st

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                where = e.get("loc", ("body", "?"))[-1]
                ctx = (e.get("ctx") or {}).get("error", "")
                errors.append(
                    {"field": "body", "message": f"malformed JSON at position {where}: {ctx}"}
                )
                continue
            loc = [str(x) for x in e.get("loc", ()) if x != "body"]
            errors.append({"field": ".".join(loc) or "body", "message": e.get("msg", "")})
        head = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return JSONResponse({"detail": f"invalid request: {head}", "errors": errors}, 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        st = service.state
        if st is None:
            detail = service.load_error or "loading"
            return JSONResponse({"status": "not ready", "detail": detail}, 503)
        return JSONResponse({"status": "ready", "model_version": st.model_version})

    @app.get("/metrics", dependencies=[Depends(require_key)])
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/model", dependencies=[Depends(require_key)])
    def model_info() -> dict[str, Any]:
        st = ready_state()
        m = st.model
        rm = st.risk_model
        return {
            "version": st.model_version,
            "uri": st.model_uri,
            "run_id": getattr(m, "run_id", None),
            "data_window": getattr(m, "data_window", {}),
            "metrics": getattr(m, "metrics", {}),
            "n_features": len(rm.feature_names_),
            "history_as_of": st.as_of.isoformat(),
            "policy": config.policy.describe(),
        }

    def answer(
        version: str, n_scored: int, n_refused: int, n_flagged: int, results: list
    ) -> JSONResponse:
        metrics.inc("orders_scored_total", n_scored)
        metrics.inc("orders_flagged_total", n_flagged)
        metrics.inc("orders_refused_total", n_refused)
        return JSONResponse(
            {
                "model_version": version,
                "policy": config.policy.describe(),
                "n_scored": n_scored,
                "n_refused": n_refused,
                "n_flagged": n_flagged,
                "results": results,
            }
        )

    @app.post("/v1/score", dependencies=[Depends(require_key)])
    async def score(req: ScoreRequest) -> JSONResponse:
        st = ready_state()
        if len(req.orders) > config.max_orders:
            raise HTTPException(
                413, f"too many orders in one request: {len(req.orders)} > {config.max_orders}"
            )
        cfg = ScoreConfig(policy=config.policy, explain=req.explain or config.explain)
        if len(req.orders) == 1:  # the online case: ~1.6 ms in the event loop, no thread hop
            one = st.score_one(online_order(req), cfg)
            if one is not None:
                metrics.inc("score_requests_total", path="online")
                count_unseen(one.unseen)
                return answer(st.model_version, 1, 0, int(one.flagged), [one.record])
        metrics.inc("score_requests_total", path="batch")
        result = await anyio.to_thread.run_sync(st.score, request_frames(req), cfg, limiter=limiter)
        count_unseen(result.unseen)
        return answer(
            result.model_version,
            result.n_scored,
            result.n_refused,
            result.n_flagged,
            results_to_records(result.results),
        )

    def count_unseen(unseen: dict[str, int]) -> None:
        for feature, n in unseen.items():
            if n:
                metrics.inc("unseen_categories_total", n, feature=feature)

    @app.post("/v1/reload", dependencies=[Depends(require_key)])
    def reload() -> JSONResponse:
        old = service.state
        try:
            new = service.load()
        except Exception as err:  # noqa: BLE001 - the old state keeps serving
            return JSONResponse(
                {
                    "status": "failed",
                    "detail": f"{type(err).__name__}: {err}",
                    "serving_version": old.model_version if old else None,
                },
                503,
            )
        return JSONResponse(
            {
                "status": "reloaded",
                "model_version": new.model_version,
                "previous_version": old.model_version if old else None,
                "history_as_of": new.as_of.isoformat(),
            }
        )

    # the SKU report (owner: report) plugs in here when its module provides a router
    if importlib.util.find_spec("returnrisk.serve.report_skus") is not None:
        try:
            module = importlib.import_module("returnrisk.serve.report_skus")
        except Exception:  # noqa: BLE001 - a broken optional module must not stop scoring
            logger.exception("could not import returnrisk.serve.report_skus")
        else:
            router = getattr(module, "router", None)
            if router is not None:
                app.include_router(router, dependencies=[Depends(require_key)])

    routes = {r.path for r in app.routes if hasattr(r, "path")}
    app.add_middleware(_Guard, metrics=metrics, max_body=config.max_body_bytes, routes=routes)
    return app


def make_loader(
    data: Path, model_uri: str = DEFAULT_MODEL_URI, *, log: Any = None
) -> Callable[[], ScoringState]:
    """Loader for ``create_app``: read the history directory and the model named by the URI
    (an alias is re-resolved at every call) and build the scoring state."""
    from returnrisk.contract import load_tables
    from returnrisk.progress import QUIET
    from returnrisk.train.registry import load_model

    step_log = log if log is not None else QUIET

    def load() -> ScoringState:
        model = load_model(model_uri)
        tables = load_tables(data, log=step_log)
        return ScoringState(tables, model, log=step_log)

    return load


def orders_to_json(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """A ``POST /v1/score`` body from new-order frames (for clients, tests and benchmarks)."""

    def records(df: pd.DataFrame, cols: list[str]) -> list[dict[str, Any]]:
        df = df[[c for c in cols if c in df.columns]]
        out = df.astype(object).where(df.notna(), None).to_dict("records")
        for row in out:
            for k, v in row.items():
                if isinstance(v, pd.Timestamp):
                    row[k] = v.isoformat()
                elif hasattr(v, "item"):  # numpy scalars -> Python
                    row[k] = v.item()
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
