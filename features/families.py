"""The feature families: for each, how its inputs are gathered and the formula that makes them
features.

Each family has two halves. The first (``order_attributes``, ``basket``, ``customer_history``,
``lane_history``, ``item_history``) reads the build ``Context``: it looks rows up in the tables
and queries the point-in-time aggregates (``Context.prior`` ...). The second
(``order_value_features``, ``basket_features``, ``customer_features``, ``lane_features``,
``item_features``) is the formula: arrays and aggregates in, feature columns out. The online
store (``online.OnlineFeatures``) hands one order's values and aggregates to the very same
formulas, so batch and online rows agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from returnrisk.arrays import DAY_NS, NAT, lookup, ts_int
from returnrisk.duties import duties_in_force, duty_rules_of

from .history import LIFETIME, Cases, Context, Items, mature_sources
from .kernels import (
    Groups,
    PriorAggregate,
    as_float,
    bool_as_float,
    codes,
    first_per_group,
    flag,
    index_of,
    indicator,
    smoothed_rate,
    sorted_unique,
    split_tokens,
    take_float,
    take_str,
)
from .specs import FeatureConfig

_TS_MAX = np.iinfo(np.int64).max

CUSTOMER_TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    "customer_prior_returns": ("return", "refund"),
    "customer_prior_not_received": ("not_received",),
    "customer_prior_damaged": ("damaged",),
    "customer_prior_not_as_described": ("not_as_described", "wrong_item"),
    "customer_prior_duty_disputes": ("duty_dispute",),
}
# the event sources (name -> value columns) of the aggregates queried several at a time
# (``Context.prior``): the online store splits its per-key totals by the same names
# the matured orders (``history.mature_sources``), a source of the lane, customer and product
MATURE_SOURCES: dict[str, tuple[str, ...]] = {"mature": (), "mature_case": ()}
LANE_SOURCES: dict[str, tuple[str, ...]] = {
    "orders": (),
    "case": (),
    "not_received": (),
    "damaged": (),
    "ships": ("transit_s", "late", "promised"),
    **MATURE_SOURCES,
}
DESTINATION_SOURCES: dict[str, tuple[str, ...]] = {"orders": (), "dispute": ()}
ITEM_SOURCES: dict[str, tuple[str, ...]] = {"items": ("units",), "cases": ()}
# the product level also counts its items' cases by type and its matured items
PRODUCT_SOURCES: dict[str, tuple[str, ...]] = {
    **ITEM_SOURCES,
    "returns": (),
    "not_as_described": (),
    **MATURE_SOURCES,
}

# Recent windows, in days, of each history (``Context.prior_windows``): the aggregate over
# [t - w, t) next to the lifetime one (``LIFETIME``). Fixed, like the features they make.
CUSTOMER_ORDER_WINDOWS = (30,)
CUSTOMER_CASE_WINDOWS = (90,)
LANE_WINDOWS = (30, 90)
DESTINATION_WINDOWS = (90,)


@dataclass(frozen=True)
class ItemLevel:
    """A key of the item history: its event sources and recent windows (days)."""

    sources: Mapping[str, tuple[str, ...]]
    windows: tuple[int, ...] = ()


ITEM_LEVELS: dict[str, ItemLevel] = {
    "category": ItemLevel(ITEM_SOURCES),
    "sku": ItemLevel(ITEM_SOURCES, (90,)),
    "product": ItemLevel(PRODUCT_SOURCES, (30, 90)),
    "supplier": ItemLevel(ITEM_SOURCES, (90,)),
    "brand": ItemLevel(ITEM_SOURCES),
    "category_destination": ItemLevel(ITEM_SOURCES, (90,)),
    "customer_category": ItemLevel(ITEM_SOURCES),
    "customer_product": ItemLevel(ITEM_SOURCES),
}
RETURN_TYPES = ("return", "refund")
NOT_AS_DESCRIBED_TYPES = ("not_as_described", "wrong_item")


# ---------------------------------------------------------------------------------------------
# static attributes of the order


def order_attributes(ctx: Context, out: dict[str, Any]) -> None:
    tables, q = ctx.tables, ctx.q_orders
    ts = q["order_ts"].dt.tz_convert("UTC")
    month = ts.dt.month.to_numpy(dtype=np.int64)
    day = ts.dt.day.to_numpy(dtype=np.int64)
    out["channel"] = q["channel"].array
    out["payment_method"] = q["payment_method"].array
    # destination and duties
    countries = tables.countries
    ci = ctx.q_country
    out["destination_region"] = take_str(countries["region"], ci)
    rules = duty_rules_of(tables.duty_rules)
    de_minimis, default_inc = duties_in_force(
        rules,
        lookup(q["destination_country"], rules.countries),
        ctx.q_ts,
        take_float(as_float(countries["duty_de_minimis"]), ci),
        take_str(countries["default_incoterm"], ci).to_numpy(dtype=object, na_value=None),
    )
    eff = pd.Series(q["incoterm"].astype("str").array).fillna(pd.Series(default_inc, dtype="str"))
    out["effective_incoterm"] = eff.array
    order_value_features(
        out,
        ts.dt.hour.to_numpy(dtype=np.int64),
        ts.dt.weekday.to_numpy(dtype=np.int64),
        month,
        day,
        value=as_float(q["order_value"]),
        discount=as_float(q["discount_value"]),
        shipping_fee=as_float(q["shipping_fee"]),
        promised_days=as_float(q["promised_delivery_days"]),
        de_minimis=de_minimis,
        ddu=(eff == "DDU").fillna(False).to_numpy(dtype=bool),
        incoterm_known=eff.notna().to_numpy(),
    )

    # carrier
    carriers = tables.carriers
    ki = lookup(q["carrier_id"], carriers["carrier_id"])
    out["carrier_name"] = take_str(carriers["carrier_name"], ki)
    out["carrier_service_level"] = take_str(carriers["service_level"], ki)
    out["carrier_tracked"] = take_float(bool_as_float(carriers["tracked"]), ki)

    # customer (static)
    customers = tables.customers
    ui = ctx.q_customer
    out["customer_segment"] = take_str(customers["segment"], ui)
    home = pd.Series(take_str(customers["country_code"], ui))
    dest = pd.Series(q["destination_country"].astype("str").array)
    same = (home == dest).fillna(False).to_numpy(dtype=bool)
    out["ships_to_customer_country"] = flag(same, known=home.notna().to_numpy())


def order_value_features(
    out: dict[str, Any],
    hour: np.ndarray,
    weekday: np.ndarray,
    month: np.ndarray,
    day: np.ndarray,
    *,
    value: np.ndarray,
    discount: np.ndarray,
    shipping_fee: np.ndarray,
    promised_days: np.ndarray,
    de_minimis: np.ndarray,
    ddu: np.ndarray,
    incoterm_known: np.ndarray,
) -> None:
    """The order's own numbers and its duties (shared with the online store): time of day and
    season, value, discount share, fees, the promise, and DDU above the de-minimis."""
    out["order_hour"] = hour.astype(np.float64)
    out["order_weekday"] = weekday.astype(np.float64)
    out["order_month"] = month.astype(np.float64)
    out["is_peak_season"] = flag(((month == 11) & (day >= 20)) | ((month == 12) & (day <= 24)))
    out["order_value"] = value
    out["shipping_fee"] = shipping_fee
    with np.errstate(divide="ignore", invalid="ignore"):
        out["discount_share"] = np.where(
            value + discount > 0, discount / (value + discount), np.nan
        )
        out["value_to_de_minimis"] = value / np.maximum(de_minimis, 1.0)
    out["promised_delivery_days"] = promised_days
    out["duty_de_minimis"] = de_minimis
    known = incoterm_known & ~(ddu & np.isnan(de_minimis))
    out["duties_due_on_arrival"] = flag(ddu & (value > de_minimis), known=known)


# ---------------------------------------------------------------------------------------------
# basket, listing and size


def _weights(g: Groups, value: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """Item weights for value-weighted means: the item's value, or its units when the whole
    order is free."""
    v = np.nan_to_num(value)
    total = g.sum(v)
    return np.where(total[g.pos] > 0, v, np.nan_to_num(qty)) if len(g.pos) else v


def basket(ctx: Context, items: Items, out: dict[str, Any]) -> None:
    tables, cfg = ctx.tables, ctx.cfg
    skus, countries = tables.skus, tables.countries
    r = items.q_rows
    s = items.s[r]
    g = Groups(items.q_pos, len(ctx.q_idx))

    # listing language vs the destination's languages (indicator matrices over a small vocab)
    ci = ctx.q_country[items.q_pos]
    sku_lists = split_tokens(skus["listing_languages"])
    cty_lists = split_tokens(countries["languages"])
    vocab = pc.unique(pa.concat_arrays([sku_lists[1], cty_lists[1]]))
    sku_m = indicator(sku_lists, vocab, len(skus))
    cty_m = indicator(cty_lists, vocab, len(countries))
    cti = np.where(ci >= 0, ci, 0)
    if len(vocab) and len(s) and len(countries):
        match = (sku_m[s] & cty_m[cti]).any(axis=1)
    else:
        match = np.zeros(len(s), dtype=bool)
    cty_known = countries["languages"].notna().to_numpy()
    known = skus["listing_languages"].notna().to_numpy()[s] & (
        (ci >= 0) & cty_known[cti] if len(countries) else np.zeros(len(s), bool)
    )

    # SKU attributes, computed once per SKU and then indexed
    apparel_sku = sized_skus(skus, cfg)
    size_code = np.where(skus["size"].notna().to_numpy(), codes(skus["size"]), -1)
    main = basket_features(
        out,
        g,
        n_lines=items.lines[r],
        qty=items.qty[r],
        value=items.value[r],
        max_price=items.max_price[r],
        list_price=as_float(skus["list_price"])[s],
        weight=as_float(skus["weight_g"])[s],
        images=as_float(skus["n_images"])[s],
        size_chart=bool_as_float(skus["has_size_chart"])[s],
        apparel=apparel_sku[s],
        category=codes(skus["category"])[s],
        product=codes(skus["product_id"].fillna(skus["sku_id"]))[s],
        size=size_code[s],
        language_match=match,
        language_known=known,
    )
    main_sku = np.full(len(main), -1, dtype=np.int64)
    main_sku[main >= 0] = s[main[main >= 0]]
    out["main_category"] = take_str(skus["category"], main_sku)
    out["main_brand"] = take_str(skus["brand"], main_sku)


def basket_features(
    out: dict[str, Any],
    g: Groups,
    *,
    n_lines: np.ndarray,
    qty: np.ndarray,
    value: np.ndarray,
    max_price: np.ndarray,
    list_price: np.ndarray,
    weight: np.ndarray,
    images: np.ndarray,
    size_chart: np.ndarray,
    apparel: np.ndarray,
    category: np.ndarray,
    product: np.ndarray,
    size: np.ndarray,
    language_match: np.ndarray,
    language_known: np.ndarray,
) -> np.ndarray:
    """The basket, listing and size features from the orders' items (rows of ``g``; shared
    with the online store). ``category`` / ``product`` / ``size``: integer codes (size -1 when
    the SKU has none). Returns per order the item row of its main (most valuable) item, ties
    to the first, -1 when it has no items."""
    out["n_lines"] = g.sum(n_lines)
    out["n_units"] = g.sum(qty)
    out["n_distinct_skus"] = g.sum(np.ones(len(qty)))
    n_cat_codes = int(category.max(initial=0)) + 1
    pair = sorted_unique(g.pos * n_cat_codes + category)
    n_cat = np.bincount(pair // n_cat_codes, minlength=g.n)
    out["n_distinct_categories"] = n_cat.astype(np.float64)
    out["max_unit_price"] = g.max(max_price)
    lp_ok = list_price > 0
    out["price_to_list_ratio"] = g.ratio(
        np.where(lp_ok, value, 0.0), np.where(lp_ok, qty * list_price, 0.0)
    )
    out["total_weight_g"] = g.sum(qty * weight, empty=np.nan)
    out["min_n_images"] = g.min(images)
    out["mean_n_images"] = g.mean(images)
    w = _weights(g, value, qty)
    out["listing_language_match"] = g.ratio(
        np.where(language_known & language_match, w, 0.0), np.where(language_known, w, 0.0)
    )

    # size and fit
    out["n_sized_units"] = g.sum(np.where(apparel, qty, 0.0))
    sized = size >= 0
    n_prod = int(product.max(initial=0)) + 1
    n_size = int(size.max(initial=0)) + 1
    trip = sorted_unique((g.pos[sized] * n_prod + product[sized]) * n_size + size[sized])
    pp = trip // n_size  # sorted: one entry per (order, product, size)
    p_starts = np.flatnonzero(np.r_[True, pp[1:] != pp[:-1]]) if len(pp) else pp
    n_sizes = np.diff(np.r_[p_starts, len(pp)])
    pp = pp[p_starts] if len(pp) else pp
    bracket = np.zeros(g.n)
    bracket[(pp[n_sizes >= 2] // n_prod).astype(np.int64)] = 1.0
    out["size_bracketing"] = bracket
    multi = np.zeros(g.n)
    multi[g.pos[apparel & (qty > 1)]] = 1.0
    out["multi_qty_apparel"] = multi
    out["sized_without_size_chart"] = g.ratio(
        np.where(apparel & (size_chart == 0.0), qty, 0.0), np.where(apparel, qty, 0.0)
    )

    # main (most valuable) item: its category and brand; ties -> the first item row
    main = np.full(g.n, -1, dtype=np.int64)
    if len(g.pos):
        main[g.ids] = g.argbest(value)
    return main


# ---------------------------------------------------------------------------------------------
# customer history


def customer_history(ctx: Context, cases: Cases, out: dict[str, Any]) -> None:
    k, q, q_ts = ctx.k, ctx.q_idx, ctx.q_ts
    cust = ctx.codes("customer", ctx.orders["customer_id"])
    ev = np.flatnonzero(ctx.o_known)
    orders_before = ctx.prior_one_windows(
        "customer_orders",
        cust[ev],
        ctx.o_ts[ev],
        cust[q],
        q_ts,
        CUSTOMER_ORDER_WINDOWS,
        with_times=True,
    )
    type_values = {
        name: cases.case_type.isin(types).to_numpy(dtype=bool)
        for name, types in CUSTOMER_TYPE_GROUPS.items()
    }
    cases_before = ctx.prior_one_windows(
        "customer_cases",
        cust[cases.o],
        cases.ts,
        cust[q],
        q_ts,
        CUSTOMER_CASE_WINDOWS,
        type_values,
        with_times=True,
    )
    with_case = ctx.prior_one(
        "customer_with_case", cust[cases.first_o], cases.first_ts, cust[q], q_ts
    ).count
    mature = ctx.prior("customer_mature", mature_sources(cust, cases), cust[q], q_ts)
    prior = ctx.global_rate("case", cases.first_ts, ctx.cfg.default_case_rate)
    customers = ctx.tables.customers
    ui = ctx.q_customer
    seen_all = ts_int(customers["first_seen_ts"])
    seen = np.where(ui >= 0, seen_all[np.where(ui >= 0, ui, 0)] if len(seen_all) else NAT, NAT)
    customer_features(
        out,
        k,
        q_ts,
        prior,
        orders_before,
        cases_before,
        with_case,
        seen,
        mature,
        cases.mature_prior,
    )


def customer_features(
    out: dict[str, Any],
    k: float,
    q_ts: np.ndarray,
    prior: np.ndarray,
    orders_w: Mapping[int, PriorAggregate],
    cases_w: Mapping[int, PriorAggregate],
    with_case: np.ndarray,
    seen: np.ndarray,
    mature: Mapping[str, PriorAggregate],
    mature_prior: np.ndarray,
) -> None:
    """The customer-history features from the customer's aggregates before each order
    (shared with the online store): orders (with times; and per ``CUSTOMER_ORDER_WINDOWS``),
    cases (with times and type sums; and per ``CUSTOMER_CASE_WINDOWS``), orders with a case,
    ``first_seen_ts`` (``NAT`` when unknown), the matured orders (``MATURE_SOURCES``) and the
    global share of matured orders with a case (their prior)."""
    orders, cases = orders_w[LIFETIME], cases_w[LIFETIME]
    out["customer_prior_orders"] = orders.count.astype(np.float64)
    out["customer_prior_cases"] = cases.count.astype(np.float64)
    out["customer_case_rate"] = smoothed_rate(with_case, orders.count, prior, k)
    out["customer_orders_30d"] = orders_w[30].count.astype(np.float64)
    out["customer_cases_90d"] = cases_w[90].count.astype(np.float64)
    out["customer_case_rate_mature"] = smoothed_rate(
        mature["mature_case"].count, mature["mature"].count, mature_prior, k
    )
    # tenure: from the earliest of first_seen_ts (when not after the order) and the first order
    first = np.where(orders.count > 0, orders.first_ts, _TS_MAX)
    first = np.where((seen != NAT) & (seen <= q_ts), np.minimum(first, seen), first)
    has = first != _TS_MAX
    out["customer_tenure_days"] = np.where(has, (q_ts - np.where(has, first, 0)) / DAY_NS, 0.0)
    out["customer_days_since_last_order"] = orders.days_since(q_ts, "last")
    out["customer_days_since_last_case"] = cases.days_since(q_ts, "last")
    for name in CUSTOMER_TYPE_GROUPS:
        out[name] = cases.sums[name].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# lane and destination history


def lane_history(ctx: Context, cases: Cases, out: dict[str, Any]) -> None:
    k, q, q_ts, cfg = ctx.k, ctx.q_idx, ctx.q_ts, ctx.cfg
    dest = ctx.codes("destination", ctx.orders["destination_country"])
    lane = ctx.combine("lane", dest, ctx.codes("carrier", ctx.orders["carrier_id"]))
    ev = np.flatnonzero(ctx.o_known)
    # orders with a case of one type, known from the first such case's opened_ts
    case_type = cases.case_type.to_numpy(dtype=object, na_value=None)
    first_of = {
        t: first_per_group(cases.o[case_type == t], cases.ts[case_type == t])
        for t in ("not_received", "damaged", "duty_dispute")
    }
    # shipments delivered before the order: transit days and lateness against the promise
    ships = ctx.tables.shipments
    d_ts, s_ts = ts_int(ships["delivered_ts"]), ts_int(ships["shipped_ts"])
    ok = (d_ts != NAT) & (s_ts != NAT) & (d_ts <= ctx.as_of_ns)
    d_ts, s_ts = d_ts[ok], s_ts[ok]
    so = index_of(ships["order_id"].loc[ok], ctx.orders["order_id"], "shipments.order_id")
    promised = as_float(ctx.orders["promised_delivery_days"])[so]
    has_promise = ~np.isnan(promised)
    ship_vals = {
        "transit_s": (d_ts - s_ts) // 10**9,  # whole seconds: summed exactly
        "late": has_promise & ((d_ts - ctx.o_ts[so]) > np.nan_to_num(promised) * DAY_NS),
        "promised": has_promise,
    }
    nr_o, nr_ts = first_of["not_received"]
    dm_o, dm_ts = first_of["damaged"]
    lane_h = ctx.prior_windows(
        "lane",
        {
            "orders": (lane[ev], ctx.o_ts[ev], None),
            "case": (lane[cases.first_o], cases.first_ts, None),
            "not_received": (lane[nr_o], nr_ts, None),
            "damaged": (lane[dm_o], dm_ts, None),
            "ships": (lane[so], d_ts, ship_vals),
            **mature_sources(lane, cases),
        },
        lane[q],
        q_ts,
        LANE_WINDOWS,
    )
    dd_o, dd_ts = first_of["duty_dispute"]
    dest_h = ctx.prior_windows(
        "destination",
        {"orders": (dest[ev], ctx.o_ts[ev], None), "dispute": (dest[dd_o], dd_ts, None)},
        dest[q],
        q_ts,
        DESTINATION_WINDOWS,
    )
    # global history (the priors of the lane's and destination's rates): before each order
    global_counts = {
        "case": ctx.count_before("case", cases.first_ts, q_ts),
        "not_received": ctx.count_before("not_received", first_of["not_received"][1], q_ts),
        "damaged": ctx.count_before("damaged", first_of["damaged"][1], q_ts),
        "duty_dispute": ctx.count_before("duty_dispute", dd_ts, q_ts),
    }
    zero_d, zero_q = np.zeros(len(d_ts), np.int64), np.zeros(len(q_ts), np.int64)
    delivered = ctx.prior_one("ships", zero_d, d_ts, zero_q, q_ts, ship_vals)
    lane_features(
        out,
        k,
        cfg,
        lane_h,
        dest_h,
        ctx.orders_before,
        global_counts,
        delivered,
        cases.mature_prior,
    )


def lane_features(
    out: dict[str, Any],
    k: float,
    cfg: FeatureConfig,
    lane_w: Mapping[int, Mapping[str, PriorAggregate]],
    dest_w: Mapping[int, Mapping[str, PriorAggregate]],
    orders_before: np.ndarray,
    global_counts: Mapping[str, np.ndarray],
    delivered: PriorAggregate,
    mature_prior: np.ndarray,
) -> None:
    """The lane and destination features from their aggregates before each order (shared with
    the online store): per lane (``LANE_SOURCES``, lifetime and per ``LANE_WINDOWS``) its
    orders, orders with a case / not received / damaged, delivered shipments and matured
    orders; per destination (lifetime and per ``DESTINATION_WINDOWS``) its orders and duty
    disputes; globally the orders placed, the orders with each kind of case, the delivered
    shipments and the share of matured orders with a case (the priors). A recent rate is
    shrunk towards the key's lifetime rate."""
    lane, dest = lane_w[LIFETIME], dest_w[LIFETIME]
    lane_orders = lane["orders"].count
    out["lane_prior_orders"] = lane_orders.astype(np.float64)
    out["destination_prior_orders"] = dest["orders"].count.astype(np.float64)
    prior_any = smoothed_rate(global_counts["case"], orders_before, cfg.default_case_rate, k)
    out["lane_case_rate"] = smoothed_rate(lane["case"].count, lane_orders, prior_any, k)
    for t, rate_col, count_col in (
        ("not_received", "lane_not_received_rate", "lane_prior_not_received"),
        ("damaged", "lane_damaged_rate", "lane_prior_damaged"),
    ):
        prior_t = smoothed_rate(global_counts[t], orders_before, cfg.default_type_rate, k)
        out[rate_col] = smoothed_rate(lane[t].count, lane_orders, prior_t, k)
        out[count_col] = lane[t].count.astype(np.float64)
    prior_dd = smoothed_rate(global_counts["duty_dispute"], orders_before, cfg.default_type_rate, k)
    out["destination_duty_dispute_rate"] = smoothed_rate(
        dest["dispute"].count, dest["orders"].count, prior_dd, k
    )
    day_s = 86_400.0
    n_del, before = delivered.count, delivered.sums
    g_transit = (before["transit_s"] / day_s + k * cfg.default_transit_days) / (n_del + k)
    g_late = smoothed_rate(before["late"], before["promised"], cfg.default_type_rate, k)
    sh = lane["ships"]
    out["lane_transit_days"] = (sh.sums["transit_s"] / day_s + k * g_transit) / (sh.count + k)
    out["lane_late_rate"] = smoothed_rate(sh.sums["late"], sh.sums["promised"], g_late, k)
    out["lane_case_rate_mature"] = smoothed_rate(
        lane["mature_case"].count, lane["mature"].count, mature_prior, k
    )
    # recent: the last 30 / 90 days, shrunk towards the lane's lifetime values
    for w in LANE_WINDOWS:
        recent = lane_w[w]
        out[f"lane_case_rate_{w}d"] = smoothed_rate(
            recent["case"].count, recent["orders"].count, out["lane_case_rate"], k
        )
    out["lane_case_trend_30d"] = out["lane_case_rate_30d"] - out["lane_case_rate"]
    recent = lane_w[30]
    out["lane_not_received_rate_30d"] = smoothed_rate(
        recent["not_received"].count, recent["orders"].count, out["lane_not_received_rate"], k
    )
    sh30 = recent["ships"]
    out["lane_transit_days_30d"] = (
        sh30.sums["transit_s"] / day_s + k * out["lane_transit_days"]
    ) / (sh30.count + k)
    out["lane_late_rate_30d"] = smoothed_rate(
        sh30.sums["late"], sh30.sums["promised"], out["lane_late_rate"], k
    )
    dest90 = dest_w[90]
    out["destination_duty_dispute_rate_90d"] = smoothed_rate(
        dest90["dispute"].count, dest90["orders"].count, out["destination_duty_dispute_rate"], k
    )


# ---------------------------------------------------------------------------------------------
# SKU, product and category history


def _case_items(
    ctx: Context, items: Items, cases: Cases
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attribute cases to (order, SKU) items: the case's SKU when given, else every SKU of the
    order. Returns (order row, sku row, first opened_ts) per item with a case."""
    skus = ctx.tables.skus
    n_sku = max(len(skus), 1)
    sku_idx = lookup(cases.sku, skus["sku_id"])  # -1 when missing
    direct = sku_idx >= 0
    keys = [cases.o[direct] * n_sku + sku_idx[direct]]
    times = [cases.ts[direct]]
    if (~direct).any():  # expand to the order's items: items are sorted by order row
        co, cts = cases.o[~direct], cases.ts[~direct]
        lo = np.searchsorted(items.o, co, side="left")
        hi = np.searchsorted(items.o, co, side="right")
        n = hi - lo
        rep = np.repeat(np.arange(len(co)), n)
        offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        rows = lo[rep] + offs
        keys.append(items.o[rows] * n_sku + items.s[rows])
        times.append(cts[rep])
    key, ts = first_per_group(np.concatenate(keys), np.concatenate(times))
    return key // n_sku, key % n_sku, ts


def _of_types(cases: Cases, types: tuple[str, ...]) -> Cases:
    """The cases of some types (their per-order first cases are not recomputed: unused)."""
    keep = cases.case_type.isin(types).to_numpy(dtype=bool)
    return replace(
        cases,
        o=cases.o[keep],
        ts=cases.ts[keep],
        case_type=cases.case_type[keep].reset_index(drop=True),
        sku=cases.sku[keep].reset_index(drop=True),
    )


def sized_skus(skus: pd.DataFrame, cfg: FeatureConfig) -> np.ndarray:
    """Per SKU row: it has a size (apparel or shoes by category, or a size given)."""
    return (
        skus["category"].str.lower().isin({c.lower() for c in cfg.apparel_categories})
        | skus["size"].notna()
    ).to_numpy(dtype=bool)


def own_or_sku(column: pd.Series, sku_id: pd.Series) -> pd.Series:
    """A SKU's supplier / brand key; a SKU without one is a key of its own (its sku_id, as a
    product without product_id is), so missing values never pool into one key."""
    return column.astype(object).where(column.notna(), "\0" + sku_id.astype(object))


def item_history(ctx: Context, items: Items, cases: Cases, out: dict[str, Any]) -> None:
    k, cfg, skus = ctx.k, ctx.cfg, ctx.tables.skus
    a_o, a_s, a_ts = _case_items(ctx, items, cases)
    it_ts = ctx.o_ts[items.o]
    ev = np.flatnonzero(ctx.o_known[items.o])
    r = items.q_rows
    q_ts = it_ts[r]

    sku = ctx.codes("sku", skus["sku_id"])
    cat = ctx.codes("category", skus["category"])
    prod = ctx.codes("product", skus["product_id"].fillna(skus["sku_id"]))
    supplier = ctx.codes("supplier", own_or_sku(skus["supplier_id"], skus["sku_id"]))
    brand = ctx.codes("brand", own_or_sku(skus["brand"], skus["sku_id"]))
    dest = ctx.codes("destination", ctx.orders["destination_country"])
    cust = ctx.codes("customer", ctx.orders["customer_id"])
    n_it = len(items.s)

    def pair(
        name: str, first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One code per (first, second) key pair; each given for the items and the case items."""
        c = ctx.combine(name, np.concatenate(first), np.concatenate(second))
        return c[:n_it], c[n_it:]

    by_cat, by_prod = (cat[items.s], cat[a_s]), (prod[items.s], prod[a_s])
    by_cust = (cust[items.o], cust[a_o])
    levels = {
        "category": by_cat,
        "sku": (sku[items.s], sku[a_s]),
        "product": by_prod,
        "supplier": (supplier[items.s], supplier[a_s]),
        "brand": (brand[items.s], brand[a_s]),
        "category_destination": pair("category_destination", by_cat, (dest[items.o], dest[a_o])),
        "customer_category": pair("customer_category", by_cust, by_cat),
        "customer_product": pair("customer_product", by_cust, by_prod),
    }
    qty_int = np.rint(np.nan_to_num(items.qty)).astype(np.int64)
    # the product's extra sources: its items' cases by type, its matured items
    window = cfg.label_window_days * DAY_NS
    ret_o, ret_s, ret_ts = _case_items(ctx, items, _of_types(cases, RETURN_TYPES))
    nad_o, nad_s, nad_ts = _case_items(ctx, items, _of_types(cases, NOT_AS_DESCRIBED_TYPES))
    m_ts = it_ts[ev] + window
    a_end = ctx.o_ts[a_o] + window
    a_mature = (a_ts >= ctx.o_ts[a_o]) & (a_ts <= a_end) & ctx.o_known[a_o]
    product_extra = {
        "returns": (prod[ret_s], ret_ts, None),
        "not_as_described": (prod[nad_s], nad_ts, None),
        "mature": (prod[items.s][ev], m_ts, None),
        "mature_case": (prod[a_s][a_mature], a_end[a_mature], None),
    }
    history = {}
    for name, (key_items, key_cases) in levels.items():  # a loop over the 8 levels
        sources = {
            "items": (key_items[ev], it_ts[ev], {"units": qty_int[ev]}),
            "cases": (key_cases, a_ts, None),
        }
        if name == "product":
            sources.update(product_extra)
        windows = ITEM_LEVELS[name].windows
        history[name] = ctx.prior_windows(name, sources, key_items[r], q_ts, windows)
    # the customer's earlier returns of sized items (a return or refund case on a sized SKU)
    sized = sized_skus(skus, cfg)[ret_s]
    sized_returns = ctx.prior_one(
        "customer_sized_returns", cust[ret_o[sized]], ret_ts[sized], cust[ctx.q_idx], ctx.q_ts
    ).count
    g = Groups(items.q_pos, len(ctx.q_idx))
    best = item_features(
        out,
        k,
        cfg,
        g,
        items.value[r],
        items.qty[r],
        ctx.count_before("item_cases", a_ts, q_ts),
        ctx.count_before("items", it_ts[ev], q_ts),
        history,
        cases.mature_prior[items.q_pos],
        sized_returns,
    )
    top_sku = np.full(len(best), -1, dtype=np.int64)
    top_sku[best >= 0] = items.s[r][best[best >= 0]]
    out["top_sku_id"] = take_str(skus["sku_id"], top_sku)
    out["top_category"] = take_str(skus["category"], top_sku)


def item_features(
    out: dict[str, Any],
    k: float,
    cfg: FeatureConfig,
    g: Groups,
    value: np.ndarray,
    qty: np.ndarray,
    n_item_cases: np.ndarray,
    n_items: np.ndarray,
    history: Mapping[str, Mapping[int, Mapping[str, PriorAggregate]]],
    mature_prior: np.ndarray,
    sized_returns: np.ndarray,
) -> np.ndarray:
    """The SKU, product, supplier, brand, category and customer x item features of each order
    from its items' aggregates before it (shared with the online store).
    ``history[level][w][source]``: per item, the level's (``ITEM_LEVELS``) earlier items (with
    units), items with a case, and for the product its cases by type and matured items, over
    the lifetime (``w = LIFETIME``) and the level's recent windows; ``n_item_cases`` /
    ``n_items``: the global counts (the prior); ``mature_prior``: per item, the global share of
    matured orders with a case; ``sized_returns``: per order, the customer's earlier return or
    refund items of sized SKUs. Returns per order the item row of its riskiest SKU (-1 when it
    has none)."""

    def rate(level: str, prior: np.ndarray, w: int = LIFETIME) -> np.ndarray:
        h = history[level][w]
        return smoothed_rate(h["cases"].count, h["items"].count, prior, k)

    item_rate = smoothed_rate(n_item_cases, n_items, cfg.default_case_rate, k)
    cat_rate = rate("category", item_rate)
    sku_rate = rate("sku", cat_rate)
    prod_rate = rate("product", cat_rate)
    cd_rate = rate("category_destination", cat_rate)
    supplier_rate = rate("supplier", item_rate)
    sku_trials, sku_cases = (
        history["sku"][LIFETIME]["items"],
        history["sku"][LIFETIME]["cases"].count,
    )
    w = _weights(g, value, qty)

    def wmean(x: np.ndarray) -> np.ndarray:
        return g.ratio(w * x, w)

    out["sku_min_prior_orders"] = g.min(sku_trials.count.astype(np.float64))
    out["sku_prior_units"] = g.sum(sku_trials.sums["units"].astype(np.float64))
    out["sku_prior_cases"] = g.sum(sku_cases.astype(np.float64))
    out["sku_case_rate_max"] = g.max(sku_rate)
    out["sku_case_rate_mean"] = wmean(sku_rate)
    out["product_case_rate_max"] = g.max(prod_rate)
    out["product_case_rate_mean"] = wmean(prod_rate)
    out["category_case_rate_mean"] = wmean(cat_rate)
    out["category_destination_case_rate_max"] = g.max(cd_rate)
    out["supplier_case_rate_max"] = g.max(supplier_rate)
    out["brand_case_rate_max"] = g.max(rate("brand", item_rate))

    # recent windows, each shrunk towards the key's lifetime rate
    out["sku_case_rate_90d_max"] = g.max(rate("sku", sku_rate, 90))
    out["product_case_rate_30d_max"] = g.max(rate("product", prod_rate, 30))
    prod_90 = rate("product", prod_rate, 90)
    out["product_case_rate_90d_max"] = g.max(prod_90)
    out["product_case_trend_90d_max"] = g.max(prod_90 - prod_rate)
    out["supplier_case_rate_90d_max"] = g.max(rate("supplier", supplier_rate, 90))
    out["category_destination_case_rate_90d_max"] = g.max(rate("category_destination", cd_rate, 90))

    # the product's case-type mix and its rate over matured items only
    prod = history["product"][LIFETIME]
    prod_items = prod["items"].count
    out["product_return_rate_max"] = g.max(
        smoothed_rate(prod["returns"].count, prod_items, cfg.default_type_rate, k)
    )
    out["product_not_as_described_rate_max"] = g.max(
        smoothed_rate(prod["not_as_described"].count, prod_items, cfg.default_type_rate, k)
    )
    out["product_case_rate_mature_max"] = g.max(
        smoothed_rate(prod["mature_case"].count, prod["mature"].count, mature_prior, k)
    )

    # the customer with these categories and products
    cc = history["customer_category"][LIFETIME]
    out["customer_category_prior_items"] = g.max(cc["items"].count.astype(np.float64))
    out["customer_category_case_rate_max"] = g.max(rate("customer_category", cat_rate))
    cp = history["customer_product"][LIFETIME]["items"].count
    out["customer_product_prior_items"] = g.max(cp.astype(np.float64))
    out["customer_prior_sized_returns"] = sized_returns.astype(np.float64)

    # riskiest SKU of each order (context for reason codes): highest rate, then value
    best = np.full(g.n, -1, dtype=np.int64)
    top_orders = np.full(g.n, np.nan)
    top_cases = np.full(g.n, np.nan)
    if len(g.pos):
        rows = g.argbest(sku_rate, value)
        best[g.ids] = rows
        top_orders[g.ids] = sku_trials.count[rows]
        top_cases[g.ids] = sku_cases[rows]
    out["sku_case_rate_top"] = g.max(sku_rate)
    out["top_sku_prior_orders"] = top_orders
    out["top_sku_prior_cases"] = top_cases
    return best
