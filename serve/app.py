"""The HTTP service: FastAPI app factory around the one scoring code path.

``create_app(config, state=..., loader=...)`` does nothing at import time. The scoring state
(history tables + champion model) is built once, in a background thread at start-up when not
given, and rebuilt by ``POST /v1/reload`` (the champion alias is re-read; a failed reload keeps
serving the old state). ``/readyz`` answers 503 until a state is ready.

Endpoints (``serve/routers.py``, one router per concern): ``POST /v1/score``, ``GET /v1/model``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus), ``POST /v1/reload``,
``GET /report/skus`` (``serve/report_route.py``); and, public like the health checks, the API
description ``GET /openapi.json`` and ``GET /docs`` (Swagger UI from local assets).
Request and response models: ``serve/schemas.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import routers
from .metrics import Metrics
from .schemas import (  # noqa: F401 - re-exported: clients import them from here
    CarrierIn,
    CountryIn,
    CustomerIn,
    LineIn,
    OrderIn,
    ScoreRequest,
    SkuIn,
    online_order,
    orders_to_json,
    request_frames,
)
from .scoring import ScoringState
from .service import DEFAULT_MODEL_URI, ServeConfig, Service, settle_heap

__all__ = [
    "DEFAULT_MODEL_URI",
    "ServeConfig",
    "Service",
    "create_app",
    "make_loader",
    "orders_to_json",
    "settle_heap",
]

logger = logging.getLogger("returnrisk.serve")

OPEN_WARNING = (
    "RETURNRISK_API_KEY is not set: the service is open, every endpoint answers without a key"
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
            await self._guarded(scope, receive, send_wrapper)
        finally:
            self.metrics.http(path, status["code"], time.perf_counter() - start)

    async def _guarded(self, scope: dict, receive: Callable, send: Callable) -> None:
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send)
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH") or length is not None:
            await self.app(scope, receive, send)
            return
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
                await self._reject(send)
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

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
# error answers: always ``{"detail": "<one line>"}`` (``schemas.ErrorOut``), with ``errors``
# (field, message) for a 422


def _field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            where = e.get("loc", ("body", "?"))[-1]
            ctx = (e.get("ctx") or {}).get("error", "")
            errors.append(
                {"field": "body", "message": f"malformed JSON at position {where}: {ctx}"}
            )
            continue
        loc = [str(x) for x in e.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        errors.append({"field": ".".join(loc) or "body", "message": e.get("msg", "")})
    return errors


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    head = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return JSONResponse({"detail": f"invalid request: {head}", "errors": errors}, 422)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _invalid(_field_errors(exc))


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI answers 400 for a body it cannot parse beyond a JSON syntax error (not
        # UTF-8, nested too deep): the same malformed body as any other, a 422
        cause = exc.__cause__
        why = "not UTF-8" if isinstance(cause, UnicodeError) else type(cause).__name__
        if isinstance(cause, RecursionError):
            why = "nested too deep"
        return _invalid([{"field": "body", "message": f"malformed JSON: {why}"}])
    return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s", request.url.path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)


# ---------------------------------------------------------------------------------------------
# the app


def _lifespan(service: Service) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not service.config.api_key:
            logger.warning(OPEN_WARNING)
        if service.state is not None:
            settle_heap()
        elif service.loader is not None:

            def initial() -> None:
                try:
                    service.load()
                except Exception:  # reported by /readyz
                    logger.exception("initial load failed")

            threading.Thread(target=initial, name="returnrisk-load", daemon=True).start()
        yield

    return lifespan


def create_app(
    config: ServeConfig = ServeConfig(),
    *,
    state: ScoringState | None = None,
    loader: Callable[[], ScoringState] | None = None,
) -> FastAPI:
    """The FastAPI app. Give a ready ``state``, or a ``loader`` run in the background at start
    (and on reload), or both. Nothing happens until the app starts."""
    from .report_route import router as report_router

    metrics = Metrics()
    service = Service(config, state, loader, metrics)
    app = FastAPI(
        title="returnrisk",
        version="1",
        summary="Pre-shipment after-sales risk scoring",
        description="Every endpoint but the health checks (`/healthz`, `/readyz`) and this API "
        "description (`/openapi.json`, `/docs`) needs `Authorization: Bearer <key>` when the "
        "service is started with `RETURNRISK_API_KEY`.",
        lifespan=_lifespan(service),
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    # Starlette types a handler as taking any Exception; these take the one they are registered for
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
    paths = {"/openapi.json"}
    for router in (routers.health, routers.score, routers.model, report_router, routers.docs):
        if router is report_router:
            app.include_router(router, dependencies=routers.KEYED)
        else:
            app.include_router(router)
        paths |= {r.path for r in router.routes if hasattr(r, "path")}
    app.mount(routers.ASSETS, StaticFiles(directory=routers.swagger_assets_dir()), "docs-assets")
    app.add_middleware(_Guard, metrics=metrics, max_body=config.max_body_bytes, routes=paths)
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
