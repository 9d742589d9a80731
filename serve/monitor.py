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

The measurements themselves are pure functions in ``monitor_signals``; this module holds the
config, the alerts and the run. Why it is still ~700 lines: the alert table (``ALERT_METRICS``,
one documented default per metric), the config parser that checks every key against it, the
alerts that read the report dict and the run that ties them to one model and one ``as_of``
share those names; its page is in ``monitor_page``.
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
from returnrisk.features.specs import CALENDAR_FEATURES, HISTORY_FEATURES
from returnrisk.progress import QUIET, StepLog

from .monitor_page import as_float, render_html
from .monitor_signals import (
    YEAR_DAYS,
    _family_labels,
    cut_tables,
    drift_report,
    early_realised,
    expected_report,
    lane_transit,
    new_destinations,
    realised,
    recalibration,
    seasonal_basis,
)

if TYPE_CHECKING:
    from returnrisk.contract import Tables

DAY = pd.Timedelta(days=1)
# Features without drift alerts by default (their PSI is still reported): the calendar ones move
# with the window (hour, weekday, month, season), and those computed from the history (prior
# counts, tenure, smoothed case / transit rates) move as the history grows, as cases open, and
# with the season -- in a stationary synthetic world of 200k orders their PSI against the
# validation slice reaches 0.5-2 (docs/operations.md). Label drift on a lane or a customer group
# is what the early-realised check watches directly. Both lists live beside the features
# (``features.specs``), the one authority on what each column is.
DRIFT_EXCLUDE = CALENDAR_FEATURES + HISTORY_FEATURES

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
