"""``returnrisk monitor``: watch the champion while its labels are still 90 days away.

At a time ``T`` (``--as-of``, default the data's export time) the monitor reads only what was
known at ``T`` (``cut_tables``: orders placed after ``T`` are not scored, cases opened after ``T``
do not count, deliveries after ``T`` are unknown), scores the recent orders with the model and
compares them with the model's reference (``returnrisk.train.reference``, logged at training):

- **drift** over the last ``days`` days: PSI of the score and of every feature (features
  against the same calendar months of the reference's history when it has them), the share of
  categories the model never saw, the change of each feature's missing rate; the top drifting
  features by PSI; destinations with no mature order in the reference's history;
- **expected without labels**: the expected case rate (mean calibrated probability) and the
  expected precision at the screening capacity (mean probability of the top ``capacity_pct`` %)
  against the reference's;
- **early realised**: for each weekly cohort of the last ``label_window_days`` days, the cases
  already opened against the model's expectation by now, ``sum_i p_i * F(age_i)`` with ``F`` the
  reference's time-to-case curve (linear between its points), and a 95 % interval from the
  normal approximation of the Poisson-binomial (variance ``sum q_i (1 - q_i)``) plus the
  measured week-to-week error of the expectation (``dispersion``);
- **realised**, once mature: AUC, AP and ECE per weekly cohort (overall; AUC and AP per case-type
  family), as a time series.

Alerts compare these with thresholds (``MonitorConfig``, parsed from a small YAML or JSON file
with ``load_config``). Everything is vectorised over orders; loops run over weekly cohorts and
features only.

Why one file over ~700 lines: the monitor's metrics, the alerts on them and the run that ties
them to one model and one ``as_of`` read the same report dict; its page is in ``monitor_page``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from returnrisk.errors import ReturnriskError
from returnrisk.progress import QUIET, StepLog

from .monitor_page import as_float, render_html

if TYPE_CHECKING:
    from returnrisk.contract import Tables

DAY = pd.Timedelta(days=1)
PSI_FLOOR = 1e-4
PSI_PSEUDOCOUNT = 0.5
# Features without drift alerts by default (their PSI is still reported): the calendar ones move
# with the window (hour, weekday, month, season), and those computed from the history (prior
# counts, tenure, smoothed case / transit rates) move as the history grows, as cases open, and
# with the season -- in a stationary synthetic world of 200k orders their PSI against the
# validation slice reaches 0.5-2 (docs/operations.md). Label drift on a lane or a customer group
# is what the early-realised check watches directly.
CALENDAR_FEATURES = ("order_hour", "order_weekday", "order_month", "is_peak_season")
HISTORY_FEATURES = (
    "lane_prior_orders",
    "lane_case_rate",
    "lane_not_received_rate",
    "lane_damaged_rate",
    "lane_transit_days",
    "lane_late_rate",
    "destination_duty_dispute_rate",
    "customer_prior_orders",
    "customer_prior_cases",
    "customer_case_rate",
    "customer_tenure_days",
    "customer_days_since_last_order",
    "customer_days_since_last_case",
    "customer_prior_returns",
    "customer_prior_not_received",
    "customer_prior_damaged",
    "customer_prior_not_as_described",
    "customer_prior_duty_disputes",
    "sku_min_prior_orders",
    "sku_prior_units",
    "sku_prior_cases",
    "sku_case_rate_max",
    "sku_case_rate_mean",
    "product_case_rate_max",
    "product_case_rate_mean",
    "category_case_rate_mean",
    "category_destination_case_rate_max",
)
DRIFT_EXCLUDE = CALENDAR_FEATURES + HISTORY_FEATURES
CASE_FAMILIES: dict[str, str] = {
    "return": "returns",
    "refund": "returns",
    "not_received": "logistics",
    "damaged": "logistics",
    "duty_dispute": "duties",
    "not_as_described": "product",
    "wrong_item": "product",
    "other": "other",
}
FAMILY_ORDER = ("returns", "logistics", "duties", "product", "other")

# metric -> (default threshold, what fires). ``None`` in a config file switches a metric off.
ALERT_METRICS: dict[str, tuple[float, str]] = {
    "score_psi": (0.2, "PSI of the score over the last days vs the reference > threshold"),
    "feature_psi": (0.25, "PSI of any one feature vs the reference > threshold"),
    "unseen_share": (0.05, "share of a categorical feature's values never seen in training"),
    "null_rate_change": (0.10, "absolute change of a feature's missing rate > threshold"),
    "expected_case_rate_change": (
        0.25,
        "|expected case rate / reference - 1| > threshold (relative)",
    ),
    "expected_precision_change": (
        0.25,
        "|expected precision at capacity / reference - 1| > threshold (relative)",
    ),
    "early_realised_z": (
        3.0,
        "a recent cohort's |opened - expected| / sd > threshold (and the excess below)",
    ),
    "early_realised_excess": (
        0.25,
        "... and |opened / expected - 1| > threshold (both must hold)",
    ),
    "new_destination_orders": (
        2.0,
        "more than threshold orders in the last days to a destination with no mature order in "
        "the reference's history",
    ),
    "new_destination_customers": (
        2.0,
        "more than threshold customers first seen in the last days from one country with no "
        "mature order in the reference's history (a new market signs up before it orders)",
    ),
    "lane_transit_z": (
        4.0,
        "more of a lane's (carrier x destination, or a carrier's) parcels of the last "
        "lane_window_days are not delivered by now than its reference pace predicts: one-sided "
        "p-value as a z > threshold (and the excess below)",
    ),
    "lane_transit_excess": (
        0.5,
        "... and not delivered / expected not delivered - 1 > threshold (both must hold)",
    ),
    "auc_drop": (
        0.05,
        "a newly mature cohort's AUC is below the model's test AUC by > threshold",
    ),
    "ece": (0.05, "a newly mature cohort's expected calibration error > threshold"),
    "min_recent_orders": (1.0, "fewer than threshold orders in the last days"),
}
DEFAULT_THRESHOLDS: dict[str, float | None] = {k: v[0] for k, v in ALERT_METRICS.items()}


class MonitorInputError(ReturnriskError, ValueError):
    """Bad input to the monitor (config, options, model without reference): exit code 2."""


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor computes and when it alerts. Defaults are documented in
    docs/operations.md ("Monitoring"); ``thresholds`` maps every ``ALERT_METRICS`` name to a
    number >= 0 or ``None`` (off)."""

    days: int = 7  # the drift window: orders of the last N days before as_of
    capacity_pct: float = 5.0  # the screening capacity: the top N % of orders by probability
    realised_weeks: int = 26  # mature weekly cohorts shown
    min_cohort_orders: int = 200  # a mature cohort's AUC / ECE is judged from this many orders
    min_cohort_cases: int = 10  # ... and this many cases
    min_expected_cases: float = 5.0  # an early cohort is judged once this many are expected
    recalibrate_weeks: int = 4  # early expectation x (cases / expected) of the last N mature
    # cohorts the model was not trained on (0: the probabilities as they are)
    top_features: int = 5  # drifting features named
    min_drift_orders: int = 300  # drift and expected-* alerts need this many recent orders
    min_month_orders: int = 500  # feature drift is judged against the same calendar months of
    # the reference's history when each month of the window has this many mature orders there
    season_weeks: int = 5  # early expectation from last year's same N weekly cohorts (0: off)
    min_season_cases: int = 30  # ... when they (and last year's recalibration weeks) had this
    # many cases
    lane_window_days: int = 28  # the lane check judges the parcels shipped in the last N days
    lane_baseline_days: int = 365  # ... against the lane's parcels of the orders placed in the N
    # days up to the end of the reference's validation slice
    lane_min_parcels: int = 50  # a lane is judged once its baseline has this many parcels
    drift_exclude: tuple[str, ...] = DRIFT_EXCLUDE  # features without drift alerts
    thresholds: dict[str, float | None] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    def __post_init__(self) -> None:
        checks = {
            "days": self.days >= 1,
            "capacity_pct": 0 < self.capacity_pct <= 100,
            "realised_weeks": self.realised_weeks >= 0,
            "min_cohort_orders": self.min_cohort_orders >= 1,
            "min_cohort_cases": self.min_cohort_cases >= 1,
            "min_expected_cases": self.min_expected_cases >= 0,
            "recalibrate_weeks": self.recalibrate_weeks >= 0,
            "top_features": self.top_features >= 0,
            "min_drift_orders": self.min_drift_orders >= 1,
            "min_month_orders": self.min_month_orders >= 1,
            "season_weeks": self.season_weeks >= 0,
            "min_season_cases": self.min_season_cases >= 1,
            "lane_window_days": self.lane_window_days >= 1,
            "lane_baseline_days": self.lane_baseline_days >= 1,
            "lane_min_parcels": self.lane_min_parcels >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise MonitorInputError(
                f"monitor config: {bad[0]} = {getattr(self, bad[0])!r} is out of range "
                "(days, realised_weeks, top_features >= 0 or 1; capacity_pct in (0, 100])"
            )
        unknown = sorted(set(self.thresholds) - set(ALERT_METRICS))
        if unknown:
            raise MonitorInputError(
                f"monitor config: alerts.{unknown[0]}: unknown metric; known metrics: "
                + ", ".join(ALERT_METRICS)
            )
        for k, v in self.thresholds.items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise MonitorInputError(
                    f"monitor config: alerts.{k} = {v!r}: must be a number >= 0 or null (off)"
                )
            if v < 0:
                raise MonitorInputError(
                    f"monitor config: alerts.{k} = {v!r}: a threshold must be >= 0 "
                    "(null switches the alert off)"
                )

    def threshold(self, name: str) -> float | None:
        return self.thresholds.get(name, DEFAULT_THRESHOLDS[name])


_CONFIG_KEYS = (
    "days",
    "capacity_pct",
    "realised_weeks",
    "min_cohort_orders",
    "min_cohort_cases",
    "min_expected_cases",
    "recalibrate_weeks",
    "top_features",
    "min_drift_orders",
    "min_month_orders",
    "season_weeks",
    "min_season_cases",
    "lane_window_days",
    "lane_baseline_days",
    "lane_min_parcels",
)


def parse_config(doc: Any, *, source: str = "config") -> MonitorConfig:
    """``MonitorConfig`` from a parsed document ``{key: value, ..., alerts: {metric: t}}``."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise MonitorInputError(
            f"{source}: expected a mapping of settings, got {type(doc).__name__}"
        )
    unknown = sorted(set(doc) - {*_CONFIG_KEYS, "alerts", "drift_exclude"})
    if unknown:
        raise MonitorInputError(
            f"{source}: unknown setting {unknown[0]!r}; known: {', '.join(_CONFIG_KEYS)}, "
            "drift_exclude, alerts"
        )
    alerts = doc.get("alerts") or {}
    if not isinstance(alerts, dict):
        raise MonitorInputError(f"{source}: alerts must map metric names to thresholds")
    unknown = sorted(set(alerts) - set(ALERT_METRICS))
    if unknown:
        raise MonitorInputError(
            f"{source}: alerts.{unknown[0]}: unknown metric; known metrics: "
            + ", ".join(ALERT_METRICS)
        )
    kwargs: dict[str, Any] = {}
    for key in _CONFIG_KEYS:
        if key in doc:
            value = doc[key]
            kind = float if key in ("capacity_pct", "min_expected_cases") else int
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MonitorInputError(f"{source}: {key} = {value!r}: must be a number")
            if kind is int and value != int(value):
                raise MonitorInputError(f"{source}: {key} = {value!r}: must be a whole number")
            kwargs[key] = kind(value)
    if "drift_exclude" in doc:
        ex = doc["drift_exclude"] or []
        if not isinstance(ex, list) or not all(isinstance(x, str) for x in ex):
            raise MonitorInputError(f"{source}: drift_exclude must be a list of feature names")
        kwargs["drift_exclude"] = tuple(ex)
    thresholds = dict(DEFAULT_THRESHOLDS)
    thresholds.update(alerts)
    try:
        return MonitorConfig(**kwargs, thresholds=thresholds)
    except MonitorInputError as err:
        raise MonitorInputError(str(err).replace("monitor config", source, 1)) from None


def load_config(path: str | Path | None) -> MonitorConfig:
    """Parse a YAML (``.yaml``/``.yml``) or JSON file; ``None``: the defaults."""
    if path is None:
        return MonitorConfig()
    p = Path(path)
    if not p.is_file():
        raise MonitorInputError(f"--config {p}: no such file")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise MonitorInputError(f"--config {p}: must end in .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8")
        if suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml

            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ValueError(str(err)) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, YAML errors
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MonitorInputError(f"--config {p}: cannot parse: {first}") from None
    return parse_config(doc, source=str(p))


# ---------------------------------------------------------------------------------- pieces
def psi(actual: np.ndarray, expected: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index ``sum (a - e) * ln(a / e)`` over bins of shares; each share is
    floored at ``floor`` so an empty bin costs a finite amount."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    if len(a) != len(e):
        raise ValueError(f"psi: {len(a)} actual bins vs {len(e)} expected")
    return float(np.sum((a - e) * np.log(a / e)))


def time_to_case_share(age_days: np.ndarray, curve: dict[str, Any]) -> np.ndarray:
    """``F(age)``: the reference's share of cases opened by each age, linear between the
    curve's points (0 at age 0, 1 at the end of the label window)."""
    xs = np.asarray([0.0, *curve["days"]], dtype=np.float64)
    ys = np.asarray([0.0, *[1.0 if s is None else s for s in curve["share"]]], dtype=np.float64)
    return np.interp(np.asarray(age_days, dtype=np.float64), xs, ys)


def cut_tables(tables: Tables, as_of: pd.Timestamp) -> Tables:
    """The tables as they were known at ``as_of``: orders placed after it (and their lines,
    cases, shipments) dropped, cases opened after it dropped, shipments not yet shipped dropped,
    deliveries and customers' first_seen_ts after it unknown. The other tables are kept.
    ``tables`` is not modified."""
    from returnrisk.arrays import member_mask

    orders = tables.orders.loc[tables.orders["order_ts"] <= as_of]
    ids = orders["order_id"]
    lines = tables.order_lines.loc[member_mask(tables.order_lines["order_id"], ids)]
    cases = tables.after_sales_cases
    cases = cases.loc[
        (cases["opened_ts"] <= as_of).to_numpy() & member_mask(cases["order_id"], ids)
    ]
    sh = tables.shipments
    sh = sh.loc[member_mask(sh["order_id"], ids) & ~(sh["shipped_ts"] > as_of).to_numpy()]
    sh = sh.assign(delivered_ts=sh["delivered_ts"].where(~(sh["delivered_ts"] > as_of)))
    cu = tables.customers
    cu = cu.assign(first_seen_ts=cu["first_seen_ts"].where(~(cu["first_seen_ts"] > as_of)))
    return tables.replace(
        orders=orders, order_lines=lines, after_sales_cases=cases, shipments=sh, customers=cu
    )


def _rel(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or ref == 0:
        return None
    return value / ref - 1.0


def smoothed_shares(shares: np.ndarray, n: int, pseudocount: float = PSI_PSEUDOCOUNT) -> np.ndarray:
    """Shares of ``n`` rows with ``pseudocount`` added to every bin's count, so a small sample's
    empty bins do not dominate its PSI."""
    shares = np.asarray(shares, dtype=np.float64)
    return (shares * n + pseudocount) / (n + pseudocount * len(shares))


def month_weights(
    order_ts: pd.Series, reference: dict[str, Any], min_month_orders: int
) -> np.ndarray | None:
    """The recent orders' shares per calendar month (12), when the reference has monthly shares
    (``by_month``) and at least ``min_month_orders`` mature orders in every month the recent
    orders fall in; else ``None`` (compare with the validation slice)."""
    by_month = reference.get("by_month")
    if not by_month or len(order_ts) == 0:
        return None
    w = np.bincount(order_ts.dt.month.to_numpy() - 1, minlength=12) / len(order_ts)
    have = np.asarray(by_month["n_orders"], dtype=np.float64)
    return w if bool(np.all(have[w > 0] >= min_month_orders)) else None


def drift_report(
    features: pd.DataFrame,
    p: np.ndarray,
    model: Any,
    reference: dict[str, Any],
    config: MonitorConfig,
) -> dict[str, Any]:
    """Score PSI and per-feature PSI, missing-rate change, unseen share over ``features`` (the
    recent orders). PSI uses ``smoothed_shares`` of the recent orders against the reference:
    each feature's shares in the same calendar months of the reference's history (mixed by the
    recent orders' months, ``month_weights``) when there are enough, else the validation
    slice's. The score is always compared with the validation slice's."""
    from returnrisk.train.reference import categorical_shares, numeric_shares

    n = len(features)
    weights = month_weights(features["order_ts"], reference, config.min_month_orders)
    monthly = reference["by_month"]["features"] if weights is not None else {}
    known = {s["name"]: s.get("categories") for s in model.feature_schema()}
    ref_score = reference["score"]
    score_shares = smoothed_shares(numeric_shares(p, ref_score["edges"]), n)
    rows = []
    for name, ref in reference["features"].items():
        col = features[name]
        if ref["kind"] == "categorical":
            shares = categorical_shares(col, ref["categories"])
            obj = col.astype("object")
            unseen = (obj.notna() & ~obj.isin(known.get(name) or [])).to_numpy()
            unseen_share = float(unseen.mean()) if n else None
        else:
            shares = numeric_shares(pd.to_numeric(col, errors="coerce").to_numpy(), ref["edges"])
            unseen_share = None
        expected = ref["shares"]
        if name in monthly and weights is not None:
            expected = (weights @ np.asarray(monthly[name], dtype=np.float64)).tolist()
        rows.append(
            {
                "feature": name,
                "kind": ref["kind"],
                "alerting": name not in config.drift_exclude,
                "psi": as_float(psi(smoothed_shares(shares, n), expected)) if n else None,
                "null_rate": as_float(shares[-1]) if n else None,
                "null_rate_reference": as_float(expected[-1]),
                "null_rate_change": as_float(shares[-1] - expected[-1]) if n else None,
                "unseen_share": as_float(unseen_share),
            }
        )
    ranked = sorted(
        (r for r in rows if r["psi"] is not None and r["alerting"]),
        key=lambda r: (-r["psi"], r["feature"]),
    )
    basis = "validation slice"
    if weights is not None:
        months = ", ".join(str(m + 1) for m in np.flatnonzero(weights > 0))
        basis = f"months {months} of {reference['by_month']['over']}"
    return {
        "n_orders": n,
        "feature_reference": basis,
        "score_psi": as_float(psi(score_shares, ref_score["shares"])) if n else None,
        "top_drifting": [r["feature"] for r in ranked[: config.top_features]],
        "features": rows,
    }


def expected_report(p: np.ndarray, reference: dict[str, Any], capacity_pct: float) -> dict:
    """Expected case rate and expected precision at capacity, now vs the reference."""
    from returnrisk.train.reference import precision_at_capacity

    rate = as_float(p.mean()) if len(p) else None
    ref_rate = reference.get("expected_case_rate")
    prec = precision_at_capacity(p, None, capacity_pct)["expected"] if len(p) else None
    ref_prec = (reference.get("precision_at_capacity") or {}).get("expected")
    return {
        "capacity_pct": capacity_pct,
        "expected_case_rate": rate,
        "reference_expected_case_rate": as_float(ref_rate),
        "reference_case_rate": as_float(reference.get("case_rate")),
        "expected_case_rate_change": as_float(_rel(rate, ref_rate)),
        "expected_precision": as_float(prec),
        "reference_expected_precision": as_float(ref_prec),
        "reference_precision": as_float(
            (reference.get("precision_at_capacity") or {}).get("realised")
        ),
        "expected_precision_change": as_float(_rel(prec, ref_prec)),
    }


YEAR_DAYS = 364  # 52 weeks: the same weekday and calendar week a year earlier


def seasonal_basis(
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    window_days: int,
    recal_cohorts: list[int],
    pool_weeks: int,
    min_cases: int,
) -> dict[str, Any] | None:
    """What last year's same weeks say about the early cohorts, relative to the model.

    For early cohort ``k`` (orders ``7k..7k+7`` days old): the orders placed ``YEAR_DAYS``
    earlier in the ``pool_weeks`` weekly cohorts centred on the same calendar week (mature, so
    their cases are known; for the two youngest cohorts the pool is cut at a year before),
    their sorted days-to-first-case (``delays``) and expected cases
    (``sum p``); for the recalibration cohorts (``recal_cohorts``, mature cohort indices) the same
    a year earlier: their cases / expected (``recal_ratio``). ``early_realised`` then expects an
    order ``a`` days old to have opened ``r * p * (C_k(a) / E_k) / recal_ratio`` cases, ``C_k(a)``
    the pooled cases opened within ``a`` days: the model's probability, times last year's cases
    per unit of probability by that age in the same weeks, relative to last year's in the weeks
    the recalibration ratio ``r`` comes from -- a year-over-year seasonal adjustment of both the
    level and the timing of the cases (a peak season the model under-predicts, whose parcels
    and cases are slower). ``None`` (the reference's time-to-case curve is used) when off
    (``pool_weeks`` 0), or when last year's recalibration weeks have fewer than ``min_cases``
    cases; a cohort's entry is ``None`` when its pooled weeks have fewer."""
    if pool_weeks <= 0 or not recal_cohorts:
        return None
    ly = (as_of - frame["order_ts"]).dt.total_seconds().to_numpy() / 86_400.0 - YEAR_DAYS
    delay = frame["delay_days"].to_numpy()
    p = frame["p"].to_numpy()
    mature_week = np.floor((ly - window_days) / 7)
    rec = np.isin(mature_week, recal_cohorts) & (ly >= window_days)
    c_rec, e_rec = int(np.isfinite(delay[rec]).sum()), float(p[rec].sum())
    if c_rec < min_cases or e_rec <= 0:
        return None
    h = pool_weeks // 2
    week = np.floor(ly / 7)
    cohorts: list[dict[str, Any] | None] = []
    for k in range(int(math.ceil(window_days / 7))):
        m = (week >= k - h) & (week <= k + h) & (ly >= 0)
        d = np.sort(delay[m][np.isfinite(delay[m])])
        e = float(p[m].sum())
        cohorts.append({"delays": d, "expected": e} if len(d) >= min_cases and e > 0 else None)
    return {"recal_ratio": c_rec / e_rec, "recal_cases": c_rec, "cohorts": cohorts}


def early_realised(
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    reference: dict[str, Any],
    window_days: int,
    ratio: float = 1.0,
    rel_sd: float = 0.0,
    *,
    ratio_cases: int = 0,
    season: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Weekly cohorts of the last ``window_days`` days (cohort 0 = the last 7 days): opened cases
    vs expected by now, with a 95 % normal-approximation interval and z. Expected per order:
    ``ratio * p * F(age)`` (``F`` the reference's time-to-case curve), or, where ``season`` has
    the cohort (``seasonal_basis``), ``ratio * p * (C_k(age) / E_k) / recal_ratio``.

    The variance is the Poisson-binomial's ``sum q (1 - q)`` plus ``expected^2`` times the
    relative variance of the expectation itself: ``rel_sd^2`` (the measured week-to-week error,
    ``recalibration``'s ``rel_sd``), ``1 / ratio_cases`` (the recalibration ratio is counted
    from that many cases: Poisson error of a ratio), and with the seasonal basis
    ``1 / C_k + 1 / recal_cases`` (last year's counts it is made of; ``C_k`` at the cohort's
    mean age). ``expected_model`` is the expectation from the probabilities and ``F`` alone."""
    age = (as_of - frame["order_ts"]).dt.total_seconds().to_numpy() / 86_400.0
    keep = (age < window_days) & (age >= 0)
    age, p = age[keep], frame["p"].to_numpy()[keep]
    opened = frame["opened"].to_numpy()[keep].astype(np.float64)
    q_model = p * time_to_case_share(age, reference["time_to_case"])
    week = np.floor(age / 7).astype(np.int64)
    n_weeks = int(math.ceil(window_days / 7))
    shape = q_model.copy()
    rel_var = np.full(n_weeks, rel_sd**2 + (1.0 / ratio_cases if ratio_cases > 0 else 0.0))
    basis = ["time-to-case curve"] * n_weeks
    cohorts = season["cohorts"] if season else []
    for k, c in enumerate(cohorts):
        m = week == k
        if c is None or not m.any() or season is None:
            continue
        opened_by = np.searchsorted(c["delays"], age[m], side="right").astype(np.float64)
        shape[m] = p[m] * opened_by / c["expected"] / season["recal_ratio"]
        at_mean = float(np.searchsorted(c["delays"], age[m].mean(), side="right"))
        rel_var[k] += 1.0 / max(at_mean, 1.0) + 1.0 / season["recal_cases"]
        basis[k] = "same weeks last year"
    q = np.clip(shape * ratio, 0.0, 1.0)
    cnt = np.bincount(week, minlength=n_weeks)
    exp = np.bincount(week, weights=q, minlength=n_weeks)
    var = np.bincount(week, weights=q * (1 - q), minlength=n_weeks)
    obs = np.bincount(week, weights=opened, minlength=n_weeks)
    full = np.bincount(week, weights=p, minlength=n_weeks)
    raw = np.bincount(week, weights=q_model, minlength=n_weeks)
    out = []
    total_var = var + rel_var * exp**2
    for k in range(n_weeks):
        sd = math.sqrt(total_var[k])
        start = as_of - pd.Timedelta(days=min(7 * (k + 1), window_days))
        out.append(
            {
                "cohort_start": start.isoformat(),
                "cohort_end": (as_of - pd.Timedelta(days=7 * k)).isoformat(),
                "age_days": 7 * k,
                "n_orders": int(cnt[k]),
                "opened": int(obs[k]),
                "expected": as_float(exp[k]),
                "expected_model": as_float(raw[k]),
                "expected_basis": basis[k],
                "low": as_float(max(0.0, exp[k] - 1.96 * sd)),
                "high": as_float(exp[k] + 1.96 * sd),
                "z": as_float((obs[k] - exp[k]) / sd) if sd > 0 else None,
                "excess": as_float(obs[k] / exp[k] - 1.0) if exp[k] > 0 else None,
                "expected_at_maturity": as_float(full[k]),
            }
        )
    return out


def new_destinations(
    recent: pd.DataFrame,
    signups: pd.Series,
    reference: dict[str, Any],
    top: int = 10,
) -> list[dict[str, Any]]:
    """Countries with no mature order in the reference's history (``reference["destinations"]``)
    that the recent orders go to (``n_orders``) or that customers first seen in the last days
    live in (``n_customers``: ``signups``, their ``country_code``), by orders then customers;
    empty when the reference has no such list."""
    known = reference.get("destinations")
    if known is None:
        return []

    def unseen(values: pd.Series) -> pd.Series:
        v = values.astype("object")
        return v[v.notna() & ~v.isin(known)].astype(str).value_counts()

    orders = unseen(recent["destination_country"]) if len(recent) else pd.Series(dtype="int64")
    people = unseen(signups) if len(signups) else pd.Series(dtype="int64")
    frame = pd.DataFrame({"n": orders, "c": people}).fillna(0).astype("int64")
    frame = frame.rename_axis("d").reset_index()
    frame = frame.sort_values(["n", "c", "d"], ascending=[False, False, True], kind="stable")
    return [
        {"destination": str(d), "n_orders": int(n), "n_customers": int(c)}
        for d, n, c in zip(frame["d"].iloc[:top], frame["n"], frame["c"], strict=False)
    ]


def _upper_tail_z(u: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``P(U >= u)`` as a one-sided normal z, for a count ``U`` of the given mean and variance:
    a binomial matched on both moments when the variance is below the mean (a Poisson-binomial:
    ``n' = mean^2 / (mean - var)``, ``p' = 1 - var / mean``), else a negative binomial (a
    Poisson whose mean is Gamma-distributed: the baseline's sampling error); both tails as
    regularized incomplete beta functions. NaN where the mean is 0."""
    from scipy.special import betainc, ndtri

    u = np.asarray(u, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.maximum(np.asarray(var, dtype=np.float64), 1e-12)
    k = np.maximum(u, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = var < mean
        p_b = np.clip(1.0 - var / mean, 1e-12, 1.0)
        n_b = np.maximum(mean / p_b, k)  # at least u trials: a count above n' is impossible
        binom = betainc(k, np.maximum(n_b - k + 1.0, 1e-12), p_b)
        shape = mean**2 / np.maximum(var - mean, 1e-12)
        negbin = betainc(k, shape, mean / (shape + mean))
        tail = np.where(under, binom, negbin)
        tail = np.where(u <= 0, 1.0, tail)
        return np.where(mean > 0, -ndtri(np.clip(tail, 1e-300, 1.0)), np.nan)


def _lane_window(
    inw: np.ndarray,
    lr: np.ndarray,
    S: np.ndarray,
    got_i: np.ndarray,
    n_l: np.ndarray,
    n_base: np.ndarray,
    c_codes: np.ndarray,
    n_car: int,
) -> tuple[dict[str, np.ndarray], float]:
    """``lane_transit``'s rows (lanes, then carriers) over the parcels ``inw`` past their lane's
    baseline median transit (``S <= 0.5``), and the pace."""
    n_lanes = len(n_base)
    wl = np.where(inw & (S <= 0.5), lr, n_lanes)  # the other parcels go to a spare bin

    def per_lane(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(wl, weights=weights, minlength=n_lanes + 1)[:n_lanes].astype(float)

    raw, got = per_lane(1.0 - S), per_lane(got_i)
    pace = min(1.0, float(got.sum() / raw.sum())) if raw.sum() > 0 else 1.0
    sd_s = pace * per_lane(np.sqrt(S * (1.0 - S) / (n_l + 2.0)))  # one baseline per lane
    u_i = 1.0 - pace * (1.0 - S)
    lanes = {
        "cnt": per_lane(None),
        "late": per_lane(1.0 - got_i),
        "exp": per_lane(u_i),
        "var": per_lane(u_i * (1.0 - u_i)) + sd_s**2,
        "base": n_base.astype(float),
    }
    rows = {k: np.r_[v, np.bincount(c_codes, weights=v, minlength=n_car)] for k, v in lanes.items()}
    rows["z"] = _upper_tail_z(rows["late"], rows["exp"], rows["var"])
    return rows, pace


def lane_transit(
    orders: pd.DataFrame,
    shipments: pd.DataFrame,
    as_of: pd.Timestamp,
    reference_end: pd.Timestamp,
    config: MonitorConfig,
    top: int = 10,
) -> dict[str, Any]:
    """Deliveries of each lane (carrier x destination country), and of each carrier over its
    lanes, against the lane's reference pace: a leading signal of lost or stuck parcels, weeks
    before their ``not_received`` cases open.

    The baseline of a lane: its parcels of the orders placed in the ``lane_baseline_days`` up to
    ``reference_end``, shipped at least ``lane_window_days`` before ``as_of`` (so their fate at
    every age judged is known); ``S(a) = (m + 0.5) / (n + 1)`` with ``m`` of its ``n`` baseline
    parcels not delivered ``a`` days after shipping (never delivered counts as not delivered;
    Jeffreys' half count keeps a share never seen above 0). Judged: the parcels shipped in the
    window ``a`` days ago with ``S(a) <= 0.5`` (past the lane's median transit: not being
    delivered is the rare, telling outcome). Each is not delivered by now with probability
    ``1 - g (1 - S(a))``; the pace ``g`` is the delivered / expected ratio over every judged
    parcel, at most 1, so a slowdown of all lanes (the peak season) moves the expectation, not
    one lane's z. Per lane: not delivered ``U``, expected ``mu``, ``excess = U / mu - 1`` and
    ``z``: the one-sided p-value ``P(U >= u)`` as a normal z (``_upper_tail_z``: a discrete
    distribution matched on the mean and the variance ``sum u (1 - u) + (g sum sd(S))^2``, the
    Poisson-binomial's plus the baseline's own sampling error -- a lane's parcels share one
    baseline: their errors add up, not in quadrature); a carrier's row (destination ``*``)
    sums its lanes. Two windows: ``lane_window_days`` and its first half (a change of the last
    days is not diluted by the weeks before it); each row is its window with the larger z.
    Lanes whose baseline has fewer than ``lane_min_parcels`` parcels are not judged. Reported:
    the ``top`` rows by z and every row with z >= 2. Vectorised over parcels."""
    from returnrisk.arrays import ts_int

    out: dict[str, Any] = {"window_days": config.lane_window_days, "judged": 0, "pace": None}
    out["lanes"] = []
    if len(shipments) == 0 or len(orders) == 0:
        return out
    w = float(config.lane_window_days)
    idx = pd.Index(orders["order_id"]).get_indexer(shipments["order_id"])
    at = np.maximum(idx, 0)
    car = orders["carrier_id"].astype("object").to_numpy()[at]
    dest = orders["destination_country"].astype("object").to_numpy()[at]
    order_ns = ts_int(orders["order_ts"])[at]
    ok = (idx >= 0) & pd.notna(car) & pd.notna(dest)
    shipped = shipments["shipped_ts"]
    transit = (shipments["delivered_ts"] - shipped).dt.total_seconds().to_numpy() / 86_400.0
    transit = np.minimum(np.where(np.isnan(transit), np.inf, transit), w + 1.0)
    age = (as_of - shipped).dt.total_seconds().to_numpy() / 86_400.0
    start = (reference_end - pd.Timedelta(days=config.lane_baseline_days)).value
    base = ok & (order_ns > start) & (order_ns <= reference_end.value) & (age >= w)
    recent = ok & (age < w) & (age >= 0)
    lanes = pd.DataFrame({"c": car, "d": dest}).loc[base | recent].astype(str)
    codes, names = pd.factorize(lanes["c"] + "\x1f" + lanes["d"], sort=True)
    lane = np.full(len(shipments), -1, dtype=np.int64)
    lane[base | recent] = codes
    n_lanes = len(names)
    n_base = np.bincount(lane[base], minlength=n_lanes)
    recent &= (lane >= 0) & (n_base >= config.lane_min_parcels)[np.maximum(lane, 0)]
    if not recent.any():
        return out
    span = w + 2.0  # S(a): per lane, the share of its baseline parcels with transit > a
    bkey = np.sort(lane[base] * span + transit[base])
    lr, ar = lane[recent], age[recent]
    first = np.searchsorted(bkey, lr * span, side="left")
    upto = np.searchsorted(bkey, lr * span + ar, side="right")
    n_l = n_base[lr].astype(np.float64)
    S = (n_l - (upto - first) + 0.5) / (n_l + 1.0)
    got_i = (transit[recent] <= ar).astype(np.float64)
    carrier_of = pd.factorize(pd.Series(names).str.split("\x1f").str[0], sort=True)
    c_codes, c_names = carrier_of
    best: dict[str, np.ndarray] = {}
    paces = {}
    for days in (w / 2.0, w):
        rows, paces[f"{days:g}"] = _lane_window(
            ar < days, lr, S, got_i, n_l, n_base, c_codes, len(c_names)
        )
        rows["days"] = np.full(len(rows["z"]), days)
        if not best:
            best = rows
            continue
        better = np.nan_to_num(rows["z"], nan=-np.inf) > np.nan_to_num(best["z"], nan=-np.inf)
        best = {k: np.where(better | np.isnan(best["z"]), rows[k], best[k]) for k in rows}
    label = [*(str(x).split("\x1f") for x in names), *([str(c), "*"] for c in c_names)]
    judged = np.flatnonzero(best["cnt"][:n_lanes] > 0)
    keep = np.flatnonzero((best["cnt"] > 0) & ~np.isnan(best["z"]))
    keep = keep[np.lexsort((keep, -best["z"][keep]))]
    out.update(judged=len(judged), pace={k: as_float(v) for k, v in paces.items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(best["exp"] > 0, best["late"] / best["exp"] - 1.0, np.nan)
    out["lanes"] = [
        {
            "carrier_id": label[k][0],
            "destination": label[k][1],
            "window_days": as_float(best["days"][k]),
            "baseline_parcels": int(best["base"][k]),
            "parcels": int(best["cnt"][k]),
            "not_delivered": int(best["late"][k]),
            "expected_not_delivered": as_float(best["exp"][k]),
            "excess": as_float(excess[k]),
            "z": as_float(best["z"][k]),
        }
        for i, k in enumerate(keep)
        if i < top or best["z"][k] >= 2.0  # the top rows and every row far out of its pace
    ]
    return out


def realised(
    frame: pd.DataFrame,
    as_of: pd.Timestamp,
    window_days: int,
    weeks: int,
    seen_until: pd.Timestamp | None,
) -> list[dict[str, Any]]:
    """Mature weekly cohorts (cohort 0 = orders 90-97 days old): AUC, AP, ECE, per family."""
    from returnrisk.train.evaluate import binary_metrics

    age = (as_of - frame["order_ts"]).dt.total_seconds().to_numpy() / 86_400.0
    week = np.floor((age - window_days) / 7)
    out = []
    fam_cols = [c for c in frame.columns if c.startswith("family_")]
    for k in range(weeks):
        rows = frame.loc[week == k]
        start = as_of - pd.Timedelta(days=window_days + 7 * (k + 1))
        end = as_of - pd.Timedelta(days=window_days + 7 * k)
        y = rows["label"].to_numpy(dtype=np.float64)
        p = rows["p"].to_numpy()
        m = binary_metrics(y, p) if len(rows) else {}
        families = {}
        for c in fam_cols:
            yf = rows[c].to_numpy(dtype=np.float64)
            mf = binary_metrics(yf, p) if len(rows) else {}
            families[c.removeprefix("family_")] = {
                "n_cases": int(yf.sum()),
                "auc": as_float(mf.get("auc")),
                "ap": as_float(mf.get("ap")),
            }
        out.append(
            {
                "cohort_start": start.isoformat(),
                "cohort_end": end.isoformat(),
                "n_orders": len(rows),
                "n_cases": int(y.sum()),
                "case_rate": as_float(y.mean()) if len(y) else None,
                "expected_case_rate": as_float(p.mean()) if len(p) else None,
                "auc": as_float(m.get("auc")),
                "ap": as_float(m.get("ap")),
                "ece": as_float(m.get("ece")),
                "seen_in_training": bool(seen_until is not None and start <= seen_until),
                "families": families,
            }
        )
    return out


def _family_labels(
    frame: pd.DataFrame, cases: pd.DataFrame, window_days: int
) -> dict[str, np.ndarray]:
    """Per order of ``frame`` and case-type family: a case of that family within the window."""
    from returnrisk.arrays import ts_int

    idx = pd.Index(frame["order_id"]).get_indexer(cases["order_id"])
    keep = idx >= 0
    idx = idx[keep]
    delay = ts_int(cases["opened_ts"])[keep] - ts_int(frame["order_ts"])[idx]
    within = (delay >= 0) & (delay <= window_days * 86_400 * 10**9)
    fam = cases["case_type"].astype("object").map(CASE_FAMILIES).fillna("other").to_numpy()[keep]
    out = {}
    for f in FAMILY_ORDER:
        mark = np.zeros(len(frame), dtype=bool)
        mark[idx[within & (fam == f)]] = True
        out[f"family_{f}"] = mark.astype(np.float64)
    return out


def recalibration(real: list[dict[str, Any]], weeks: int) -> dict[str, Any]:
    """Cases / expected cases over the latest ``weeks`` mature cohorts the model was not trained
    on: the factor the early expectation is scaled by, so that the early-realised check watches
    what changed in the last 90 days rather than a calibration error the realised check (ECE)
    already reports. 1 when there is no such cohort."""
    unseen = [c for c in real if not c["seen_in_training"] and c["n_orders"]]
    use = unseen[:weeks]
    used = [j for j, c in enumerate(real) if not c["seen_in_training"] and c["n_orders"]]
    cases = sum(c["n_cases"] for c in use)
    expected = sum(c["expected_case_rate"] * c["n_orders"] for c in use)
    ratio = cases / expected if use and expected > 0 and cases > 0 else 1.0
    return {
        "weeks": len(use),
        "cohorts": used[:weeks],
        "cases": cases,
        "expected": as_float(expected),
        "ratio": as_float(ratio),
        **dispersion(unseen),
    }


def dispersion(cohorts: list[dict[str, Any]], min_cohorts: int = 3) -> dict[str, Any]:
    """The relative SD of a weekly cohort's case count around its (pooled-recalibrated)
    expectation beyond the Poisson-binomial's, over the mature cohorts the model was not trained
    on: the moment estimate ``tau^2 = max(0, sum((c - rE)^2 - rE) / sum((rE)^2))``. It carries
    what a week's expectation gets wrong (season, mix, calibration drift) into the early-realised
    interval; 0 with fewer than ``min_cohorts`` cohorts."""
    c = np.array([x["n_cases"] for x in cohorts], dtype=np.float64)
    e = np.array([x["expected_case_rate"] * x["n_orders"] for x in cohorts], dtype=np.float64)
    if len(c) < min_cohorts or e.sum() <= 0 or c.sum() <= 0:
        return {"dispersion_weeks": len(c), "rel_sd": 0.0}
    re = e * (c.sum() / e.sum())
    tau2 = max(0.0, float(np.sum((c - re) ** 2 - re) / np.sum(re**2)))
    return {"dispersion_weeks": len(c), "rel_sd": as_float(math.sqrt(tau2))}


# ---------------------------------------------------------------------------------- alerts
Alert = tuple[str, str, Any, str]  # metric, subject, value, message


def _drift_alerts(drift: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    t = config.threshold
    out: list[Alert] = []
    least = t("min_recent_orders")
    if least is not None and drift["n_orders"] < least:
        n = drift["n_orders"]
        text = f"only {n} order(s) in the last {config.days} days"
        out.append(("min_recent_orders", "orders", n, text))
    if drift["n_orders"] < config.min_drift_orders:
        return out
    score_psi_max = t("score_psi")
    if score_psi_max is not None and (drift["score_psi"] or 0) > score_psi_max:
        out.append(
            ("score_psi", "score", drift["score_psi"], f"score PSI {drift['score_psi']:.3f}")
        )
    for r in drift["features"]:
        if not r["alerting"]:
            continue
        for metric, key, absolute in (
            ("feature_psi", "psi", False),
            ("unseen_share", "unseen_share", False),
            ("null_rate_change", "null_rate_change", True),
        ):
            v, limit = r.get(key), t(metric)
            if v is not None and limit is not None and (abs(v) if absolute else v) > limit:
                text = f"{r['feature']}: {key.replace('_', ' ')} {v:.3f}"
                out.append((metric, r["feature"], v, text))
    return out


def _expected_alerts(report: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    if report["drift"]["n_orders"] < config.min_drift_orders:
        return []
    out: list[Alert] = []
    for metric in ("expected_case_rate_change", "expected_precision_change"):
        v, limit = report["expected"][metric], config.threshold(metric)
        if v is not None and limit is not None and abs(v) > limit:
            text = f"{metric.replace('_', ' ')} {v:+.1%}"
            out.append((metric, metric.removesuffix("_change"), v, text))
    return out


def _early_alerts(report: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    tz, te = config.threshold("early_realised_z"), config.threshold("early_realised_excess")
    if tz is None:
        return []
    out: list[Alert] = []
    for c in report["early_realised"]:
        if c["z"] is None or (c["expected"] or 0) < config.min_expected_cases:
            continue
        if abs(c["z"]) > tz and (te is None or abs(c["excess"] or 0) > te):
            start, end = c["cohort_start"][:10], c["cohort_end"][:10]
            text = (
                f"cohort {start}..{end}: {c['opened']} cases opened, {c['expected']:.1f} "
                f"expected by now ({c['low']:.1f}-{c['high']:.1f}), z {c['z']:+.1f}"
            )
            out.append(("early_realised_z", f"cohort {start}", c["z"], text))
    return out


def _new_destination_alerts(report: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    out: list[Alert] = []
    for metric, key, what in (
        ("new_destination_orders", "n_orders", "orders {days} to {d}"),
        ("new_destination_customers", "n_customers", "customers first seen {days} in {d}"),
    ):
        tn = config.threshold(metric)
        if tn is None:
            continue
        out += [
            (
                metric,
                f"destination {c['destination']}",
                c[key],
                f"{c[key]} "
                + what.format(days=f"in the last {config.days} days", d=c["destination"])
                + ", a destination the model has no mature order of",
            )
            for c in report.get("new_destinations", [])
            if c.get(key, 0) > tn
        ]
    return out


def _lane_alerts(report: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    tz, te = config.threshold("lane_transit_z"), config.threshold("lane_transit_excess")
    lanes = report.get("lane_transit") or {}
    if tz is None:
        return []
    return [
        (
            "lane_transit_z",
            f"lane {r['carrier_id']} -> {r['destination']}",
            r["z"],
            f"lane {r['carrier_id']} -> {r['destination']}: {r['not_delivered']} of "
            f"{r['parcels']} parcels shipped in the last {r['window_days']:g} days and past the "
            f"lane's median transit not delivered, {r['expected_not_delivered']:.1f} expected, "
            f"z {r['z']:+.1f}",
        )
        for r in lanes.get("lanes", [])
        if r["z"] is not None
        and r["z"] > tz
        and (te is None or (r["excess"] is not None and r["excess"] > te))
    ]


def _realised_alerts(report: dict[str, Any], config: MonitorConfig) -> list[Alert]:
    t = config.threshold
    ref_auc = report["reference"]["auc"]
    out: list[Alert] = []
    # a mature cohort's figures are final: it is judged by the run(s) of the week it matured in
    # (cohort k matured 7 k days before as_of), not again by every later weekly run
    newly = math.ceil(config.days / 7)
    for c in report["realised"][:newly]:
        if (
            c["seen_in_training"]
            or c["n_orders"] < config.min_cohort_orders
            or c["n_cases"] < config.min_cohort_cases
        ):
            continue
        subject = f"cohort {c['cohort_start'][:10]}"
        max_drop = t("auc_drop")
        if max_drop is not None and c["auc"] is not None and ref_auc is not None:
            drop = ref_auc - c["auc"]
            if drop > max_drop:
                text = f"{subject}: AUC {c['auc']:.3f} vs reference {ref_auc:.3f}"
                out.append(("auc_drop", subject, drop, text))
        max_ece = t("ece")
        if max_ece is not None and c["ece"] is not None and c["ece"] > max_ece:
            out.append(("ece", subject, c["ece"], f"ECE {c['ece']:.3f}"))
    return out


def evaluate_alerts(report: dict[str, Any], config: MonitorConfig) -> list[dict[str, Any]]:
    """Every threshold crossed, one entry each (metric, subject, value, threshold, message)."""
    found = [
        *_drift_alerts(report["drift"], config),
        *_expected_alerts(report, config),
        *_early_alerts(report, config),
        *_new_destination_alerts(report, config),
        *_lane_alerts(report, config),
        *_realised_alerts(report, config),
    ]
    return [
        {
            "metric": metric,
            "subject": subject,
            "value": as_float(value),
            "threshold": config.threshold(metric),
            "message": message,
        }
        for metric, subject, value, message in found
    ]


def _signups(customers: pd.DataFrame, as_of: pd.Timestamp, days: int) -> pd.Series:
    """The ``country_code`` of the customers first seen in the last ``days`` days."""
    if "country_code" not in customers or "first_seen_ts" not in customers:
        return pd.Series(dtype="object")
    seen = customers["first_seen_ts"]
    new = (seen > as_of - pd.Timedelta(days=days)) & (seen <= as_of)
    return customers.loc[new.to_numpy(dtype=bool), "country_code"]


def _reference_auc(loaded: Any, reference: dict[str, Any]) -> dict[str, Any]:
    """The AUC a mature cohort is compared with: the model's test AUC (logged at training, the
    slice it was judged on), else the validation slice's (optimistic: it early-stopped there)."""
    test_auc = (loaded.metrics or {}).get("test_auc")
    if test_auc is not None and math.isfinite(test_auc):
        return {"auc": as_float(test_auc), "auc_source": "test slice"}
    return {
        "auc": as_float((reference.get("metrics") or {}).get("auc")),
        "auc_source": "valid slice",
    }


# ---------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class MonitorResult:
    report: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return self.report["alerts"]


def monitor_tables(
    tables: Tables,
    loaded: Any,
    reference: dict[str, Any],
    *,
    as_of: pd.Timestamp | None = None,
    config: MonitorConfig = MonitorConfig(),
    log: StepLog = QUIET,
) -> MonitorResult:
    """The monitor report of ``loaded`` (a ``registry.LoadedModel``) over ``tables`` at ``as_of``
    (default: the tables' export time). Reads nothing after ``as_of``."""
    from returnrisk.features import FeatureConfig, build_features

    T = pd.Timestamp(tables.as_of() if as_of is None else as_of)
    T = T.tz_localize("UTC") if T.tzinfo is None else T.tz_convert("UTC")
    window = int(reference.get("label_window_days", 90))
    model = loaded.risk_model
    names = list(model.feature_names_)
    unknown = sorted(set(config.drift_exclude) - set(reference["features"]) - set(DRIFT_EXCLUDE))
    if unknown:
        raise MonitorInputError(
            f"monitor config: drift_exclude names {unknown[0]!r}, not a feature of model "
            f"v{loaded.version}"
        )
    absent = [c for c in reference["features"] if c not in names]
    if absent:
        raise MonitorInputError(
            f"reference of model v{loaded.version} describes feature(s) {absent[:5]} the model "
            "does not have; retrain it"
        )
    cut = cut_tables(tables, T)
    back = max(window + 7 * config.realised_weeks, config.days)
    if config.season_weeks > 0:  # last year's weeks of the early and recalibration cohorts
        half = config.season_weeks // 2
        back = max(back, YEAR_DAYS + window + 7 * (config.recalibrate_weeks + half + 1))
    start = T - pd.Timedelta(days=back)
    orders = cut.orders
    ids = orders.loc[orders["order_ts"] > start, "order_id"]
    with log.step(f"features of {len(ids):,d} orders placed {start:%Y-%m-%d}..{T:%Y-%m-%d}"):
        feats = build_features(
            cut,
            order_ids=list(ids),
            as_of=T,
            config=FeatureConfig(label_window_days=window),
        )
    with log.step(f"score {len(feats):,d} orders with v{loaded.version}"):
        p = model.predict_case(feats[names]) if len(feats) else np.zeros(0)
    fc = feats["first_case_ts"]
    opened = fc.notna() & (fc >= feats["order_ts"]) & (fc - feats["order_ts"] <= window * DAY)
    frame = pd.DataFrame(
        {
            "order_id": feats["order_id"].to_numpy(),
            "order_ts": feats["order_ts"],
            "p": p,
            "label": feats["label"].to_numpy(dtype=np.float64),
            "opened": opened.to_numpy(dtype=bool),
            "delay_days": ((fc - feats["order_ts"]).dt.total_seconds() / 86_400.0)
            .where(opened)
            .to_numpy(dtype=np.float64, na_value=np.nan),
        }
    ).assign(**_family_labels(feats, cut.after_sales_cases, window))
    recent = (feats["order_ts"] > T - pd.Timedelta(days=config.days)).to_numpy()
    seen = loaded.data_window.get("valid_end")
    seen_until = pd.Timestamp(seen) if seen else None
    with log.step("drift, expected, early realised, realised"):
        report: dict[str, Any] = {
            "as_of": T.isoformat(),
            "days": config.days,
            "model": {
                "uri": loaded.uri,
                "version": loaded.version,
                "run_id": loaded.run_id,
                "trained_until": seen,
            },
            "reference": {
                **{
                    k: reference.get(k)
                    for k in ("start", "end", "n_orders", "case_rate", "expected_case_rate")
                },
                **_reference_auc(loaded, reference),
            },
            "config": {
                **{k: getattr(config, k) for k in _CONFIG_KEYS},
                "drift_exclude": list(config.drift_exclude),
                "alerts": {k: config.threshold(k) for k in ALERT_METRICS},
            },
            "drift": drift_report(feats.loc[recent], p[recent], model, reference, config),
            "new_destinations": new_destinations(
                feats.loc[recent], _signups(cut.customers, T, config.days), reference
            ),
            "lane_transit": lane_transit(
                cut.orders, cut.shipments, T, pd.Timestamp(reference["end"]), config
            ),
            "expected": expected_report(p[recent], reference, config.capacity_pct),
        }
        real = realised(frame, T, window, config.realised_weeks, seen_until)
        report["recalibration"] = recalibration(real, config.recalibrate_weeks)
        cal = report["recalibration"]
        season = seasonal_basis(
            frame, T, window, cal["cohorts"], config.season_weeks, config.min_season_cases
        )
        report["early_realised"] = early_realised(
            frame,
            T,
            reference,
            window,
            cal["ratio"],
            cal["rel_sd"],
            ratio_cases=cal["cases"] if cal["weeks"] else 0,
            season=season,
        )
        report["realised"] = real
        report["alerts"] = evaluate_alerts(report, config)
    return MonitorResult(report)


# ---------------------------------------------------------------------------------- output
def write_outputs(result: MonitorResult, out: Path) -> tuple[Path, Path]:
    """``out/monitor.json`` (deterministic: same data and as_of, same bytes) + ``monitor.html``."""
    out.mkdir(parents=True, exist_ok=True)
    js = out / "monitor.json"
    js.write_text(json.dumps(result.report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    page = out / "monitor.html"
    page.write_text(render_html(result.report), encoding="utf-8")
    return js, page


def log_monitor_run(result: MonitorResult, paths: tuple[Path, Path]) -> str:
    """One MLflow run in experiment ``returnrisk-monitor`` tagged with the model version; the
    model version gets the tag ``last_monitor_run``. Returns the run id."""
    import mlflow
    from mlflow import MlflowClient

    from returnrisk.train.registry import MODEL_NAME

    r = result.report
    mlflow.set_experiment("returnrisk-monitor")
    with mlflow.start_run(run_name=f"monitor {r['as_of'][:10]}") as run:
        mlflow.set_tags(
            {
                "model_name": MODEL_NAME,
                "model_version": r["model"]["version"],
                "model_run_id": r["model"]["run_id"],
                "as_of": r["as_of"],
                "alerts": str(len(r["alerts"])),
            }
        )
        metrics = {
            "n_alerts": len(r["alerts"]),
            "recent_orders": r["drift"]["n_orders"],
            "score_psi": r["drift"]["score_psi"],
            "max_feature_psi": max(
                (x["psi"] for x in r["drift"]["features"] if x.get("psi") is not None),
                default=None,
            ),
            "expected_case_rate": r["expected"]["expected_case_rate"],
            "expected_precision": r["expected"]["expected_precision"],
        }
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        for p in paths:
            mlflow.log_artifact(str(p))
    MlflowClient().set_model_version_tag(
        MODEL_NAME, r["model"]["version"], "last_monitor_run", run.info.run_id
    )
    return run.info.run_id


def run_monitor(
    data: Path,
    out: Path,
    *,
    model_uri: str,
    as_of: pd.Timestamp | None = None,
    config: MonitorConfig = MonitorConfig(),
    log: StepLog = QUIET,
    mlflow_run: bool = True,
) -> tuple[MonitorResult, tuple[Path, Path], str | None]:
    """``returnrisk monitor``: load the model and its reference (``MonitorInputError`` when it
    has none), the tables, compute, write ``monitor.json`` + ``monitor.html``, log the run."""
    from returnrisk.contract import load_tables
    from returnrisk.train.reference import MissingReferenceError, load_reference
    from returnrisk.train.registry import load_model

    with log.step(f"load {model_uri}"):
        loaded = load_model(model_uri)
        try:
            reference = load_reference(loaded.run_id, version=loaded.version)
        except MissingReferenceError as err:
            raise MonitorInputError(str(err)) from None
    tables = load_tables(data, log=log)
    result = monitor_tables(tables, loaded, reference, as_of=as_of, config=config, log=log)
    with log.step(f"write {out}/monitor.json, monitor.html"):
        paths = write_outputs(result, out)
    run_id = log_monitor_run(result, paths) if mlflow_run else None
    return result, paths, run_id
