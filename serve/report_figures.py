"""The SKU report's figures: matplotlib object API (no pyplot state, safe in server threads),
Agg rendering to base64 PNG with deterministic bytes."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from .report_aggregate import SkuReport


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures_png(report: SkuReport, top_n: int = 15) -> dict[str, str]:
    """The page's figures as base64 PNG (Agg rendering, no display, no pyplot state)."""
    return {name: _png(fig) for name, fig in report_figures(report, top_n).items()}


def report_figures(report: SkuReport, top_n: int = 15) -> dict[str, Any]:
    """Matplotlib figures of the report (top SKUs, global drivers, calibration, lift), made
    with the object API (``matplotlib.figure.Figure``: no pyplot, safe in server threads).
    Notebooks display them inline."""
    import matplotlib
    from matplotlib.figure import Figure

    figs: dict[str, Any] = {}
    style: Any = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
    with matplotlib.rc_context(style):
        top = report.skus.head(top_n).iloc[::-1]
        if len(top):
            fig = Figure(figsize=(6.4, 0.28 * len(top) + 0.9))
            ax = fig.subplots()
            ax.barh(top["sku_id"].astype("str"), top["expected_cases"], color="#c0504d")
            for y, (v, r) in enumerate(
                zip(top["expected_cases"], top["predicted_rate"], strict=True)
            ):
                ax.text(v, y, f"  {v:.1f}  ({r:.0%} of orders)", va="center", fontsize=8)
            ax.set_xlabel(f"expected after-sales cases, last {report.meta['window_days']} days")
            ax.set_title("SKUs with the most expected cases", loc="left")
            ax.set_xlim(0, float(top["expected_cases"].max()) * 1.45 or 1)
            figs["top_skus"] = fig

        gd = report.global_drivers.iloc[::-1]
        if len(gd):
            fig = Figure(figsize=(6.4, 0.3 * len(gd) + 0.9))
            ax = fig.subplots()
            ax.barh(gd["label"], gd["mean_abs"], color="#4f81bd", label="average strength")
            ax.barh(
                gd["label"],
                gd["mean_signed"].clip(lower=0),
                color="#c0504d",
                height=0.35,
                label="net push towards a case",
            )
            ax.set_xlabel("average SHAP contribution (log-odds) over recent orders")
            ax.set_title("What drives after-sales risk overall", loc="left")
            ax.legend(frameon=False, loc="lower right", fontsize=8)
            figs["global_drivers"] = fig

        cal = report.calibration
        if len(cal):
            fig = Figure(figsize=(4.4, 3.4))
            ax = fig.subplots()
            hi = float(max(cal["predicted"].max(), cal["observed_hi"].max())) * 1.08
            ax.plot([0, hi], [0, hi], color="#999999", lw=1, ls="--", label="perfect")
            ax.errorbar(
                cal["predicted"],
                cal["observed"],
                yerr=[cal["observed"] - cal["observed_lo"], cal["observed_hi"] - cal["observed"]],
                fmt="o-",
                color="#4f81bd",
                capsize=3,
                label="actual (95 % interval)",
            )
            ax.set_xlim(0, hi)
            ax.set_ylim(0, hi)
            ax.set_xlabel("predicted case probability (10 groups of orders)")
            ax.set_ylabel("actual case rate")
            ax.set_title("Calibration: do predictions come true?", loc="left")
            ax.legend(frameon=False, fontsize=8)
            figs["calibration"] = fig

        lift = report.lift
        if len(lift):
            fig = Figure(figsize=(8.4, 3.4))
            a1, a2 = fig.subplots(1, 2)
            a1.bar(lift["decile"], lift["lift"], color="#4f81bd")
            a1.axhline(1.0, color="#999999", lw=1, ls="--")
            a1.set_xticks(lift["decile"])
            a1.set_xlabel("orders by predicted risk, in tenths (1 = riskiest)")
            a1.set_ylabel("case rate vs average (x)")
            a1.set_title("Lift by risk tenth", loc="left")
            shares = np.concatenate([[0.0], lift["orders_share"].to_numpy()])
            caught = np.concatenate([[0.0], lift["cases_caught"].to_numpy()])
            a2.plot(shares * 100, caught * 100, "o-", color="#c0504d", label="model")
            a2.plot([0, 100], [0, 100], color="#999999", lw=1, ls="--", label="random")
            a2.set_xlabel("% of orders checked (riskiest first)")
            a2.set_ylabel("% of cases caught")
            a2.set_title("Cases caught", loc="left")
            a2.legend(frameon=False, fontsize=8)
            fig.tight_layout()
            figs["lift"] = fig
    return figs
