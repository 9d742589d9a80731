"""The monitor's measurements, each a pure function of arrays and frames: PSI and drift, the
expected case rate and precision without labels, the early-realised cohorts against the
model's time-to-case expectation (with its seasonal basis and dispersion), the leading signals
(new destinations, lanes whose parcels stop arriving) and the realised metrics of mature
cohorts. ``serve/monitor.py`` runs them at one ``as_of``, turns them into alerts and writes the
report; the cut at ``as_of`` (``cut_tables``) is here so every measurement reads only the past.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .monitor_page import as_float

if TYPE_CHECKING:
    from returnrisk.contract import Tables

    from .monitor import MonitorConfig

PSI_FLOOR = 1e-4
PSI_PSEUDOCOUNT = 0.5
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
