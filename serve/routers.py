"""The service's routes, one router per concern: health, score, model (model info, reload,
metrics) and docs (Swagger UI from local assets). ``serve/app.py`` assembles them; the SKU
report's router lives with the report (``serve/report_route.py``).

Every route takes what it needs as ``Annotated`` dependencies: the ``Service`` of the app
(``ServiceDep``), the scoring state once it is ready (``ReadyState``: 503 before) and the API
key check (``require_key``: a bearer token, declared in the OpenAPI document as
``HTTPBearer``)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .decisions import Decider, online_action_fields, records_with_actions, with_actions
from .schemas import (
    Actions,
    HealthOut,
    ModelOut,
    ReadyOut,
    ReloadOut,
    ScoreOut,
    ScoreRequest,
    error_responses,
    online_order,
    request_frames,
)
from .scoring import ScoreConfig, ScoreResult, ScoringState, results_to_records
from .service import Service


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def ready_state(service: ServiceDep) -> ScoringState:
    st = service.state
    if st is None:
        raise HTTPException(503, "not ready: the scoring state is still loading")
    return st


ReadyState = Annotated[ScoringState, Depends(ready_state)]

_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`, the key the service was started with "
    "(`RETURNRISK_API_KEY`); not needed when the service has none.",
)


async def require_key(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    key = service.config.api_key
    if not key:
        return
    token = credentials.credentials.strip() if credentials is not None else ""
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise HTTPException(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


KEYED = [Depends(require_key)]

# ---------------------------------------------------------------------------------------------
health = APIRouter(tags=["health"])


@health.get("/healthz", summary="The process is up")
def healthz() -> HealthOut:
    return HealthOut(status="ok")


@health.get(
    "/readyz",
    summary="Ready to score (the scoring state is loaded)",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "still loading, or the load failed"}},
)
def readyz(service: ServiceDep) -> JSONResponse:
    st = service.state
    if st is None:
        detail = service.load_error or "loading"
        return JSONResponse({"status": "not ready", "detail": detail}, 503)
    return JSONResponse({"status": "ready", "model_version": st.model_version})


# ---------------------------------------------------------------------------------------------
score = APIRouter(tags=["score"], dependencies=KEYED, responses=error_responses(401))


SCORE_QUERY = ("actions",)


async def known_query(request: Request) -> None:
    """An unknown query parameter is a mistake to say, not to ignore (``?action=all`` would
    otherwise answer as if nothing were asked)."""
    unknown = sorted(set(request.query_params) - set(SCORE_QUERY))
    if unknown:
        raise HTTPException(
            422,
            f"unknown query parameter {unknown[0]!r}: POST /v1/score takes only "
            f"{', '.join(SCORE_QUERY)} (none, flagged or all)",
        )


@score.post(
    "/v1/score",
    dependencies=[Depends(known_query)],
    summary="Score orders before shipment",
    response_model=ScoreOut,
    responses=error_responses(413, 422, 503),
)
async def score_orders(
    req: ScoreRequest,
    service: ServiceDep,
    st: ReadyState,
    actions: Annotated[
        Actions,
        Query(
            description="What-if actions (`returnrisk score --actions`, the same computation): "
            "`flagged` (default) adds `recommended_action`, `recommended_carrier`, "
            "`expected_saving` and `p_case_if` to the flagged orders (null on the others); "
            "`all` to every scored order, with its whole action table (`actions`: every "
            "action's `p_case_if` and saving); `none` leaves them out. A what-if is a model "
            "estimate under the cost model's assumptions, not a causal guarantee."
        ),
    ] = "flagged",
) -> JSONResponse:
    config = service.config
    if len(req.orders) > config.max_orders:
        raise HTTPException(
            413, f"too many orders in one request: {len(req.orders)} > {config.max_orders}"
        )
    cfg = ScoreConfig(policy=config.policy, explain=req.explain or config.explain)
    if len(req.orders) == 1:  # the online case: ~1.6 ms in the event loop, no thread hop
        new = online_order(req)
        one = st.score_one(new, cfg)
        if one is not None:
            service.observe_one(one)
            record = one.record
            if actions != "none":  # an unflagged order under `flagged`: nothing to compute
                fields = online_action_fields(
                    service.decider_for(st), st.online, new, one.flagged, actions, one.features
                )
                record = {**record, **fields}
            return service.answer(
                st.model_version, 1, 0, int(one.flagged), [record], actions=actions
            )
    frames = request_frames(req)
    decider = service.decider_for(st) if actions != "none" else None
    result, records = await anyio.to_thread.run_sync(
        _score_batch, st, frames, cfg, actions, decider, limiter=service.limiter
    )
    service.observe_batch(result)
    return service.answer(
        result.model_version,
        result.n_scored,
        result.n_refused,
        result.n_flagged,
        records,
        actions=actions,
    )


def _score_batch(
    st: ScoringState,
    frames: dict[str, Any],
    cfg: ScoreConfig,
    actions: str,
    decider: Decider | None,
) -> tuple[ScoreResult, list[dict[str, Any]]]:
    """The full path (in a thread): score, then the what-if actions as ``score --actions``."""
    result = st.score(frames, cfg)
    records = results_to_records(result.results)
    if decider is None:
        return result, records
    results, table = with_actions(st, frames, result, decider.costs, actions, decider=decider)
    return result, records_with_actions(records, results, table, actions)


# ---------------------------------------------------------------------------------------------
model = APIRouter(tags=["model"], dependencies=KEYED, responses=error_responses(401))


@model.get("/v1/model", summary="The model being served", responses=error_responses(503))
def model_info(service: ServiceDep, st: ReadyState) -> ModelOut:
    m = st.model
    return ModelOut(
        version=str(st.model_version),
        uri=str(st.model_uri),
        run_id=m.run_id,
        data_window=dict(m.data_window),
        metrics=dict(m.metrics),
        n_features=len(st.risk_model.feature_names_),
        history_as_of=st.as_of.isoformat(),
        policy=service.config.policy.describe(),
    )


@model.post(
    "/v1/reload",
    summary="Re-read the champion and the history (the old state serves on failure)",
    response_model=ReloadOut,
    responses={503: {"model": ReloadOut, "description": "the reload failed"}},
)
def reload(service: ServiceDep) -> JSONResponse:
    old = service.state
    try:
        new = service.load()
    except Exception as err:  # the old state keeps serving
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


@model.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus(request: Request, service: ServiceDep) -> Response:
    body, content_type = service.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


# ---------------------------------------------------------------------------------------------
ASSETS = "/docs/assets"
docs = APIRouter(include_in_schema=False)


@docs.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI from the assets of the ``swagger-ui-bundle`` package (nothing from a CDN)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="returnrisk API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


def swagger_assets_dir() -> str:
    import swagger_ui_bundle

    return str(swagger_ui_bundle.swagger_ui_path)
