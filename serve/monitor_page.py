"""The monitor's page: figures (PNG, embedded) and the self-contained ``monitor.html`` of a
``monitor.json`` report (Jinja2, autoescape on). No scripts, no network."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np


def as_float(x: Any) -> float | None:
    """JSON-safe float (NaN / inf -> None), rounded to 6 significant digits."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.6g}")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def monitor_figures(report: dict[str, Any]) -> dict[str, str]:
    """The page's charts as base64 PNGs (matplotlib's object API: no global backend state)."""
    from matplotlib.figure import Figure

    figs: dict[str, str] = {}
    early = list(reversed(report["early_realised"]))
    fig = Figure(figsize=(7.2, 3.0))
    ax = fig.subplots()
    x = np.arange(len(early))
    exp = np.array([c["expected"] or 0 for c in early])
    lo = np.array([c["low"] or 0 for c in early])
    hi = np.array([c["high"] or 0 for c in early])
    ax.fill_between(x, lo, hi, color="#9fb3c8", alpha=0.5, label="expected by now, 95 %")
    ax.plot(x, exp, color="#1f3a5f", label="expected by now")
    ax.plot(x, [c["opened"] for c in early], "o", color="#b42318", label="opened")
    ax.set_xticks(x, [c["cohort_start"][5:10] for c in early], rotation=45, fontsize=7)
    ax.set_ylabel("cases")
    ax.set_title("Early realised: recent weekly cohorts", fontsize=10)
    ax.legend(fontsize=7)
    figs["early"] = _png(fig)

    real = [c for c in reversed(report["realised"]) if c["n_orders"]]
    fig = Figure(figsize=(7.2, 3.0))
    ax = fig.subplots()
    if real:
        x = np.arange(len(real))
        for key, colour in (("auc", "#1f3a5f"), ("ap", "#067647"), ("ece", "#b42318")):
            ax.plot(
                x,
                [np.nan if c[key] is None else c[key] for c in real],
                "o-",
                ms=3,
                color=colour,
                label=key.upper(),
            )
        seen = [i for i, c in enumerate(real) if c["seen_in_training"]]
        if seen:
            ax.axvspan(
                -0.5, max(seen) + 0.5, color="#e4e7eb", label="trained on (not judged)", zorder=0
            )
        ref = report["reference"]["auc"]
        if ref is not None:
            ax.axhline(ref, color="#1f3a5f", ls=":", lw=1, label="test AUC at training")
        ax.set_xticks(x, [c["cohort_start"][5:10] for c in real], rotation=45, fontsize=7)
        ax.legend(fontsize=7)
    ax.set_title("Realised: mature weekly cohorts", fontsize=10)
    figs["realised"] = _png(fig)

    rows = sorted(
        (r for r in report["drift"]["features"] if r.get("psi") is not None),
        key=lambda r: -r["psi"],
    )[:15]
    fig = Figure(figsize=(7.2, 0.28 * len(rows) + 1.0))
    ax = fig.subplots()
    ax.barh([r["feature"] for r in rows][::-1], [r["psi"] for r in rows][::-1], color="#1f3a5f")
    thr = report["config"]["alerts"].get("feature_psi")
    if thr is not None:
        ax.axvline(thr, color="#b42318", ls="--", lw=1)
    ax.set_xlabel("PSI vs reference")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Feature drift (top 15)", fontsize=10)
    figs["drift"] = _png(fig)
    return figs


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _pair(value: float | None, ref: float | None) -> str:
    return f"{_fmt(value, '.2%')} ({_fmt(ref, '.2%')})"


def _text(x: Any) -> str:
    """A value as plain text ("" when missing); the template escapes it."""
    return "" if x is None else str(x)


def render_html(report: dict[str, Any]) -> str:
    """The self-contained monitor page (inline CSS, PNG charts as data URIs, no scripts): the
    Jinja2 template ``templates/monitor.html`` (autoescape on) fed with plain text."""
    from .pages import render, stylesheet

    return render("monitor.html", {**page_context(report), "css": stylesheet("monitor.css")})


def page_context(report: dict[str, Any]) -> dict[str, Any]:
    """Everything the monitor page shows, as plain values (no markup)."""
    figs = monitor_figures(report)
    alerts = report["alerts"]
    d, e = report["drift"], report["expected"]
    m, ref = report["model"], report["reference"]
    return {
        "as_of": report["as_of"][:16].replace("T", " "),
        "version": _text(m["version"]),
        "status": "ALERT" if alerts else "OK",
        "status_class": "bad" if alerts else "good",
        "kpis": [
            ("alerts fired", str(len(alerts))),
            (f"orders, last {report['days']} days", str(d["n_orders"])),
            ("score PSI", _fmt(d["score_psi"])),
            (
                "expected case rate (reference)",
                _pair(e["expected_case_rate"], e["reference_expected_case_rate"]),
            ),
            (
                f"expected precision at top {e['capacity_pct']:g} % (reference)",
                _pair(e["expected_precision"], e["reference_expected_precision"]),
            ),
        ],
        "alert_rows": [
            [a["metric"], a["subject"], _fmt(a["value"]), _text(a["threshold"]), a["message"]]
            for a in alerts
        ],
        "top": ", ".join(d["top_drifting"]) or "–",
        "drift_rows": [
            [
                r["feature"],
                r["kind"],
                _fmt(r.get("psi")),
                _fmt(r.get("null_rate_change"), "+.3f"),
                _fmt(r.get("unseen_share")),
            ]
            for r in sorted(d["features"], key=lambda r: -(r.get("psi") or 0))
        ],
        "early_rows": [
            [
                c["cohort_start"][:10],
                str(c["n_orders"]),
                str(c["opened"]),
                _fmt(c["expected"], ".1f"),
                f"{_fmt(c['low'], '.1f')}–{_fmt(c['high'], '.1f')}",
                _fmt(c["z"], "+.2f"),
            ]
            for c in report["early_realised"]
        ],
        "real_rows": [
            [
                c["cohort_start"][:10],
                str(c["n_orders"]),
                str(c["n_cases"]),
                _fmt(c["auc"]),
                _fmt(c["ap"]),
                _fmt(c["ece"]),
                "yes" if c["seen_in_training"] else "",
            ]
            for c in report["realised"]
        ],
        "lane_days": (report.get("lane_transit") or {}).get("window_days", "–"),
        "lane_rows": [
            [
                r["carrier_id"],
                r["destination"],
                _fmt(r["window_days"], "g"),
                str(r["parcels"]),
                str(r["not_delivered"]),
                _fmt(r["expected_not_delivered"], ".1f"),
                _fmt(r["z"], "+.2f"),
            ]
            for r in (report.get("lane_transit") or {}).get("lanes", [])
        ],
        "destination_rows": [
            [c["destination"], str(c["n_orders"]), str(c.get("n_customers", 0))]
            for c in report.get("new_destinations", [])
        ],
        "fig_early": figs["early"],
        "fig_realised": figs["realised"],
        "fig_drift": figs["drift"],
        "reference": f"{ref['start'][:10]}..{ref['end'][:10]}, {ref['n_orders']} orders",
    }
