"""The SKU report page: a Jinja2 template (``templates/sku_report.html``, autoescape on) fed
with plain-text view data made here from a ``SkuReport``; figures from ``report_figures``."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from .pages import asset, render, stylesheet
from .report_aggregate import SkuReport
from .report_figures import figures_png


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.{digits}f} %"


def _num(x: float, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:,.{digits}f}"


def _date(ts: Any) -> str:
    return "–" if ts is None or pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}"


def _signed_pct(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:+.0f} %"


def _signed_pp(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:+.1f} pt"


def _text(x: Any) -> str:
    """A value as plain text ("" when missing); the template escapes it."""
    return "" if x is None or (not isinstance(x, str) and pd.isna(x)) else str(x)


def _sort_value(x: Any) -> str:
    """The ``data-v`` of a cell: what the page's JavaScript sorts on."""
    if x is None or pd.isna(x):
        return ""
    if isinstance(x, float | np.floating):
        return repr(float(x))
    return str(x)


# Column spec: (key, header, tooltip, formatter, css class)
def _columns(report: SkuReport, kind: str) -> list[tuple[str, str, str, Any, str]]:
    wd = report.meta["window_days"]
    lw = report.meta["label_window_days"]
    common = [
        (
            "orders",
            f"Orders ({wd}d)",
            f"orders in the last {wd} days that contain it",
            lambda v: f"{int(v):,}",
            "num",
        ),
        (
            "expected_cases",
            "Expected cases",
            "sum of the predicted case probabilities of its recent orders, split by line value",
            lambda v: _num(v, 1),
            "num",
        ),
        (
            "predicted_rate",
            "Predicted case rate",
            "average predicted probability that one of its recent orders ends in a case",
            _pct,
            "num",
        ),
        (
            "actual_rate",
            "Actual case rate",
            f"share of its orders older than {lw} days (last 12 months) that had a case;"
            " 95 % interval in grey",
            None,
            "num",
        ),
        (
            "mature_orders",
            "Judged orders",
            f"orders older than {lw} days (last 12 months) behind the actual rate",
            lambda v: f"{int(v):,}",
            "num",
        ),
        ("orders_trend", "Orders trend", f"orders vs the {wd} days before", _signed_pct, "num"),
        (
            "risk_trend",
            "Risk trend",
            f"change of the predicted case rate vs the {wd} days before, in percentage points",
            _signed_pp,
            "num",
        ),
        (
            "main_drivers",
            "Main risk drivers",
            "driver families pushing its orders' risk up most (hover for their strength)",
            _text,
            "txt drivers",
        ),
    ]
    few = report.meta["min_orders_for_rate"]
    common = [
        (k, h, f"{t}; shown when both periods have at least {few} orders", f, c)
        if k in ("orders_trend", "risk_trend")
        else (k, h, t, f, c)
        for k, h, t, f, c in common
    ]
    if kind == "skus":
        head = [
            ("rank", "#", "rank by expected cases", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _text, "txt key"),
            ("category", "Category", "", _text, "txt"),
            ("supplier_id", "Supplier", "", _text, "txt"),
        ]
        tail = [
            (
                "top_case_type",
                "Top case type",
                "most frequent case type on its judged orders, share of its cases",
                _text,
                "txt case",
            )
        ]
        return head + common + tail
    if kind == "rates":
        by_key = {c[0]: c for c in common}
        return [
            ("rate_rank", "#", "rank by predicted case rate", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _text, "txt key"),
            ("category", "Category", "", _text, "txt"),
            ("supplier_id", "Supplier", "", _text, "txt"),
            *(by_key[k] for k in ("predicted_rate", "actual_rate", "orders", "expected_cases")),
            by_key["main_drivers"],
        ]
    if kind == "hotspots":
        return [
            ("rank", "#", "", lambda v: str(int(v)), "num"),
            ("sku_id", "SKU", "", _text, "txt key"),
            ("destination_country", "Ships to", "", _text, "txt"),
            ("category", "Category", "", _text, "txt"),
            *common,
        ]
    key_head = {
        "category": [("category", "Category", "", _text, "txt key")],
        "country": [("destination_country", "Country", "", _text, "txt key")],
        "carrier": [
            ("carrier_name", "Carrier", "", _text, "txt key"),
            ("service_level", "Service", "", _text, "txt"),
        ],
    }[kind]
    return key_head + common


def _cell(row: dict[str, Any], key: str, fmt: Any, cls: str) -> dict[str, Any]:
    """One table cell as view data: class, sort value (``data-v``) or tooltip, text, and the
    grey interval or brand under it."""
    v = row.get(key)
    cell: dict[str, Any] = {"cls": cls, "v": _sort_value(v), "title": None, "ci": "", "sub": ""}
    if key == "actual_rate":
        cell["text"] = _pct(v)
        if not pd.isna(v):
            cell["ci"] = f"{_pct(row['actual_lo'], 0)}–{_pct(row['actual_hi'], 0)}"
        return cell
    cell["text"] = fmt(v)
    if key == "risk_trend" and v is not None and not pd.isna(v):
        tone = "up" if v > 0.005 else ("down" if v < -0.005 else "")
        cell["cls"] = f"{cls} {tone}".strip()
    elif key == "sku_id" and isinstance(row.get("brand"), str):
        cell["sub"] = row["brand"]
    elif key == "main_drivers" and row.get("drivers_detail"):
        cell["title"] = "strength (log-odds): " + str(row["drivers_detail"])
    return cell


def _table(report: SkuReport, frame: pd.DataFrame, kind: str, table_id: str) -> dict[str, Any]:
    cols = _columns(report, kind)
    columns = [
        {"cls": c[4], "title": c[2], "type": "num" if "num" in c[4] else "txt", "label": c[1]}
        for c in cols
    ]
    rows = [[_cell(r, c[0], c[3], c[4]) for c in cols] for r in frame.to_dict("records")]
    return {"id": table_id, "columns": columns, "rows": rows}


def _csv_records(report: SkuReport, skus: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    fam = [f"driver_{f}" for f in report.families]
    cols = [
        "rank",
        "rate_rank",
        "sku_id",
        "product_id",
        "category",
        "brand",
        "supplier_id",
        "orders",
        "units",
        "sales",
        "expected_cases",
        "predicted_rate",
        "mature_orders",
        "mature_cases",
        "actual_rate",
        "actual_lo",
        "actual_hi",
        "prev_orders",
        "orders_trend",
        "prev_predicted_rate",
        "risk_trend",
        "main_drivers",
        "drivers_detail",
        "top_case_type",
        *fam,
    ]
    cols = [c for c in cols if c in skus]
    frame = skus[cols].astype(object)
    frame = frame.where(frame.notna(), None)
    rows = [
        [(round(v, 6) if isinstance(v, float) else v) for v in r] for r in frame.to_numpy().tolist()
    ]
    return cols, rows


_JSON_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _json_script(obj: Any) -> str:
    """JSON for a ``<script type="application/json">`` block, safe for any string: ``<``, ``>``,
    ``&`` and U+2028/9 as ``\\u`` escapes (still the same JSON value), so no ``</script>``,
    ``<!--`` or ``<script`` inside a string can end or change the block."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(_JSON_SCRIPT_ESCAPES)


def render_html(report: SkuReport) -> str:
    """One self-contained page: inline CSS + JS, figures as PNG data URIs, no external request."""
    from markupsafe import Markup

    context = page_context(report)
    context["css"] = stylesheet("sku_report.css")
    context["js"] = Markup(asset("sku_report.js"))
    context["data_json"] = Markup(context["data_json"])
    return render("sku_report.html", context)


def page_context(report: SkuReport) -> dict[str, Any]:
    """Everything the template shows, as plain values (no markup)."""
    m = report.meta
    wd = m["window_days"]
    period = f"{_date(m['window_start'])} to {_date(m['window_end'])}"
    shown = report.skus.head(int(m.get("table_max_skus") or len(report.skus)))
    cols, rows = _csv_records(report, shown)
    data = {"cols": cols, "rows": rows, "filename": f"sku_risk_{_date(m['window_end'])}_{wd}d.csv"}
    return {
        "period": period,
        "wd": wd,
        "lw": m["label_window_days"],
        "version": str(m.get("model_version") or "?"),
        "n_orders": f"{m['n_window_orders']:,}",
        "n_skus": f"{m['n_skus']:,}",
        "kpis": _kpis(m),
        "categories": sorted(shown["category"].dropna().astype("str").unique().tolist()),
        "sku_table": _table(report, shown, "skus", "sku-table"),
        "table_note": (
            f"Showing the top {len(shown):,} of {len(report.skus):,} SKUs by expected cases."
            if len(shown) < len(report.skus)
            else f"All {len(report.skus):,} SKUs sold in the window."
        ),
        "rate_table": _table(report, _top_by_rate(report.skus), "rates", "rate-table"),
        "min_orders": m["min_orders_for_rate"],
        "figures": figures_png(report),
        "hotspot_table": _table(report, report.hotspots, "hotspots", "hotspot-table"),
        "category_table": _table(report, report.by_category, "category", "category-table"),
        "country_table": _table(report, report.by_country, "country", "country-table"),
        "carrier_table": _table(report, report.by_carrier, "carrier", "carrier-table"),
        "drivers": _driver_rows(report.global_drivers),
        "eval_note": _eval_note(m),
        "meta_rows": _meta_rows(m, period),
        "data_json": _json_script(data),
    }


def _kpis(m: dict[str, Any]) -> list[tuple[str, str]]:
    wd = m["window_days"]
    return [
        (f"{m['n_window_orders']:,}", f"orders in the last {wd} days"),
        (_num(m["expected_cases"], 0), "expected after-sales cases from them"),
        (_pct(m["predicted_rate"]), "predicted case rate"),
        (_pct(m["actual_rate"]), "actual case rate, judged orders of the last 12 months"),
        (f"{m['n_skus']:,}", "SKUs sold in the window"),
    ]


def _eval_note(m: dict[str, Any]) -> str:
    return (
        f"Measured on {m['eval_n']:,} judged orders placed {_date(m['eval_from'])} to "
        f"{_date(m['eval_to'])}"
        + (
            ", after the model's training data (out of time)."
            if m.get("eval_out_of_time")
            else "; the model may have been trained on some of them, so treat this as optimistic."
        )
    )


def _meta_rows(m: dict[str, Any], period: str) -> list[dict[str, str]]:
    rows = [
        ("Model", str(m.get("model_version") or "?"), m.get("model_uri") or ""),
        ("Run", m.get("model_run_id") or "–", ""),
        (
            "Report window",
            f"{period} ({m['window_days']} days, as of {pd.Timestamp(m['as_of']):%Y-%m-%d %H:%M}"
            " UTC)",
            "",
        ),
        (
            "Actual rates from",
            f"orders placed {_date(m['actual_from'])} to {_date(m['actual_to'])}",
            "",
        ),
    ]
    rows += [(k, v, "") for k, v in _data_window_rows(m.get("model_data_window") or {})]
    em = m.get("eval_metrics") or {}
    if em:
        rows += [
            ("ROC AUC / PR AUC", f"{em['roc_auc']:.3f} / {em['pr_auc']:.3f}", ""),
            ("Brier score", f"{em['brier']:.4f}", ""),
            ("Predicted vs actual", f"{_pct(em['mean_predicted'])} vs {_pct(em['case_rate'])}", ""),
            ("Top-10 % lift", f"{em['top10_lift']:.2f}x", ""),
        ]
    rows += [(k, v, "") for k, v in _registry_metric_rows(m.get("model_metrics") or {})]
    return [{"label": k, "text": v, "note": note} for k, v, note in rows]


def _driver_rows(gd: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "label": _text(r.label),
            "weight_v": _sort_value(r.weight),
            "weight": f"{r.weight:.0%}",
            "signed_v": _sort_value(r.mean_signed),
            "signed": f"{r.mean_signed:+.3f}",
            "raising_v": _sort_value(r.share_raising),
            "raising": f"{r.share_raising:.0%}",
        }
        for r in gd.itertuples()
    ]


REGISTRY_METRICS = (
    ("test_auc", "At training: test ROC AUC"),
    ("test_ap", "At training: test PR AUC"),
    ("test_brier", "At training: test Brier score"),
    ("test_ece", "At training: calibration error"),
    ("test_lift_at_10pct", "At training: top-10 % lift"),
    ("test_n", "At training: test orders"),
)


def _registry_metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """A few of the metrics logged at training (all of them are in MLflow)."""
    known = [(k, label) for k, label in REGISTRY_METRICS if k in metrics]
    if not known:  # another naming scheme: the first few test metrics as they are
        known = [(k, k) for k in sorted(metrics) if k.startswith("test_")][:6]
    rows = []
    for key, label in known:
        v = metrics[key]
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            text = f"{v:,.0f}" if key.endswith("_n") else f"{v:.4g}"
            rows.append((label, text))
    return rows


def _data_window_rows(window: dict[str, Any]) -> list[tuple[str, str]]:
    """The model's training data window as page rows (train / valid / test slices)."""
    rows = []
    for part, label in (("train", "Trained on"), ("valid", "Validated on"), ("test", "Tested on")):
        if f"{part}_start" not in window:
            continue
        text = (
            f"orders placed {_date(window[f'{part}_start'])} to {_date(window.get(f'{part}_end'))}"
        )
        n = window.get(f"n_{part}")
        if isinstance(n, int | float):
            text += f" ({int(n):,} orders"
            rate = window.get(f"{part}_case_rate")
            text += f", case rate {_pct(rate)})" if isinstance(rate, int | float) else ")"
        rows.append((label, text))
    return rows


def _top_by_rate(skus: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    ranked = skus.loc[skus["rate_rank"].notna()].sort_values("rate_rank", kind="mergesort")
    return ranked.head(n).reset_index(drop=True)
