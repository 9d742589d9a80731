"""``GET /report/skus``: the SKU report page for the state the service is serving.

A page takes seconds of CPU to build, so rendering is bounded to keep scoring latency: pages
are cached by (model version, history, window) -- the last ``CACHE_PAGES`` of them --, at most
one page is rendered at a time, in a worker thread (never in the event loop), and concurrent
requests for the same page wait for that one render instead of starting their own.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from .schemas import error_responses_of_html_route

CACHE_PAGES = 4


class ReportPages:
    """The page cache and render gate of one app (made on its first report request)."""

    def __init__(self) -> None:
        self.pages: OrderedDict[tuple, str] = OrderedDict()
        self.lock = anyio.Lock()  # one render at a time; waiters are coroutines, not threads
        self.limiter = anyio.CapacityLimiter(1)
        self.renders = 0

    async def get(self, key: tuple, render: Any) -> str:
        cached = self._cached(key)
        if cached is not None:
            return cached
        async with self.lock:
            cached = self._cached(key)  # rendered while this request waited
            if cached is not None:
                return cached
            page: str = await anyio.to_thread.run_sync(render, limiter=self.limiter)
            self.renders += 1
            self.pages[key] = page
            while len(self.pages) > CACHE_PAGES:
                self.pages.popitem(last=False)
        return page

    def _cached(self, key: tuple) -> str | None:
        page = self.pages.get(key)
        if page is not None:
            self.pages.move_to_end(key)
        return page


def report_pages(state: Any) -> ReportPages:
    pages = getattr(state, "sku_report_pages", None)
    if not isinstance(pages, ReportPages):
        pages = state.sku_report_pages = ReportPages()
    return pages


router = APIRouter(tags=["report"])
"""Included by ``serve/app.py`` (behind the API key when one is set)."""


@router.get(
    "/report/skus",
    response_class=HTMLResponse,
    summary="SKU after-sales risk review page",
    responses=error_responses_of_html_route(401, 422, 503),
)
async def report_skus_page(
    request: Request,
    window: Annotated[
        str,
        Query(
            description="recent orders to review, 1 to 3660 days: a whole number of days or "
            "weeks, 28d, 4w or 28 (anything else is answered 422)",
            max_length=40,
        ),
    ] = "28d",
) -> HTMLResponse:
    """The same page as ``returnrisk report skus``, for the state the service is serving."""
    from . import report_skus as rs

    try:
        days = rs.parse_window(window, option="window")
    except rs.ReportError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    source = _report_source(request.app.state)
    if source is None:
        raise HTTPException(status_code=503, detail="not ready: the scoring state is still loading")
    tables, loaded = source
    key = (str(getattr(loaded, "version", "")), str(tables.as_of()), days, id(tables))

    def render() -> str:
        return rs.render_html(rs.build_sku_report(tables, loaded, window_days=days))

    try:
        page = await report_pages(request.app.state).get(key, render)
    except rs.ReportError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    return HTMLResponse(page)


def _report_source(state: Any) -> tuple[Any, Any] | None:
    """(tables, loaded model) of the service's current scoring state (``serve/app.py``:
    ``app.state.service.state`` is a ``ScoringState`` with ``tables`` and ``model``)."""
    service = getattr(state, "service", None)
    scoring = getattr(service, "state", None)
    if scoring is None:
        return None
    return scoring.tables, scoring.model
