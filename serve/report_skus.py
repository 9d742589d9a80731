"""Merchandiser SKU risk review: which listings to fix, which suppliers to call, where not to ship.

The public face of the report, in three parts: ``report_aggregate`` (``build_sku_report``: score
the recent orders, explain them, aggregate per SKU and beyond), ``report_figures`` (matplotlib)
and ``report_html`` (``render_html``: the Jinja2 page). ``write_report`` is what
``returnrisk report skus`` and ``make demo`` call; ``serve/report_route.py`` serves the page.
"""

from __future__ import annotations

from pathlib import Path

from returnrisk.labels import order_outcomes
from returnrisk.progress import QUIET, StepLog
from returnrisk.train.names import CHAMPION_URI

from .report_aggregate import (
    CASE_TYPE_LABELS,
    FAMILY_LABELS,
    MAX_WINDOW_DAYS,
    ReportConfig,
    ReportError,
    SkuReport,
    aggregate,
    build_sku_report,
    calibration_table,
    family_contributions,
    lift_table,
    line_shares,
    main_driver_text,
    parse_window,
    top_case_types,
    wilson_interval,
)
from .report_figures import report_figures
from .report_html import render_html

__all__ = [
    "CASE_TYPE_LABELS",
    "FAMILY_LABELS",
    "MAX_WINDOW_DAYS",
    "ReportConfig",
    "ReportError",
    "SkuReport",
    "aggregate",
    "build_sku_report",
    "calibration_table",
    "family_contributions",
    "lift_table",
    "line_shares",
    "main_driver_text",
    "order_outcomes",
    "parse_window",
    "render_html",
    "report_figures",
    "top_case_types",
    "wilson_interval",
    "write_report",
]


def write_report(
    data_dir: str | Path,
    out: str | Path,
    *,
    config: ReportConfig | None = None,
    model_uri: str = CHAMPION_URI,
    log: StepLog = QUIET,
) -> Path:
    """Load ``data_dir`` and the model, build and write the page; return the output path.

    This is what ``returnrisk report skus`` and ``make demo`` call.
    """
    from returnrisk.contract import load_tables
    from returnrisk.train.registry import load_model

    cfg = config or ReportConfig()
    tables = load_tables(data_dir, log=log)
    with log.step(f"load model {model_uri}"):
        loaded = load_model(model_uri)
    report = build_sku_report(tables, loaded, log=log, config=cfg)
    with log.step("render page"):
        page = render_html(report)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info(f"wrote {path} ({len(page) / 1e6:.1f} MB)")
    return path
