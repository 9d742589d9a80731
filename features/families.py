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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from returnrisk.arrays import DAY_NS, NAT, lookup, ts_int
from returnrisk.duties import duties_in_force, duty_rules_of

from .history import Cases, Context, Items
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
LANE_SOURCES: dict[str, tuple[str, ...]] = {
    "orders": (),
    "case": (),
    "not_received": (),
    "damaged": (),
    "ships": ("transit_s", "late", "promised"),
}
DESTINATION_SOURCES: dict[str, tuple[str, ...]] = {"orders": (), "dispute": ()}
ITEM_SOURCES: dict[str, tuple[str, ...]] = {"items": ("units",), "cases": ()}


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
    apparel_sku = (
        skus["category"].str.lower().isin({c.lower() for c in cfg.apparel_categories})
        | skus["size"].notna()
    ).to_numpy(dtype=bool)
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
    orders_before = ctx.prior_one(
        "customer_orders", cust[ev], ctx.o_ts[ev], cust[q], q_ts, with_times=True
    )
    type_values = {
        name: cases.case_type.isin(types).to_numpy(dtype=bool)
        for name, types in CUSTOMER_TYPE_GROUPS.items()
    }
    cases_before = ctx.prior_one(
        "customer_cases", cust[cases.o], cases.ts, cust[q], q_ts, type_values, with_times=True
    )
    with_case = ctx.prior_one(
        "customer_with_case", cust[cases.first_o], cases.first_ts, cust[q], q_ts
    ).count
    prior = ctx.global_rate("case", cases.first_ts, ctx.cfg.default_case_rate)
    customers = ctx.tables.customers
    ui = ctx.q_customer
    seen_all = ts_int(customers["first_seen_ts"])
    seen = np.where(ui >= 0, seen_all[np.where(ui >= 0, ui, 0)] if len(seen_all) else NAT, NAT)
    customer_features(out, k, q_ts, prior, orders_before, cases_before, with_case, seen)


def customer_features(
    out: dict[str, Any],
    k: float,
    q_ts: np.ndarray,
    prior: np.ndarray,
    orders: PriorAggregate,
    cases: PriorAggregate,
    with_case: np.ndarray,
    seen: np.ndarray,
) -> None:
    """The customer-history features from the customer's aggregates before each order
    (shared with the online store): orders (with times), cases (with times and type sums),
    orders with a case, and ``first_seen_ts`` (``NAT`` when unknown)."""
    out["customer_prior_orders"] = orders.count.astype(np.float64)
    out["customer_prior_cases"] = cases.count.astype(np.float64)
    out["customer_case_rate"] = smoothed_rate(with_case, orders.count, prior, k)
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
    lane_h = ctx.prior(
        "lane",
        {
            "orders": (lane[ev], ctx.o_ts[ev], None),
            "case": (lane[cases.first_o], cases.first_ts, None),
            "not_received": (lane[nr_o], nr_ts, None),
            "damaged": (lane[dm_o], dm_ts, None),
            "ships": (lane[so], d_ts, ship_vals),
        },
        lane[q],
        q_ts,
    )
    dd_o, dd_ts = first_of["duty_dispute"]
    dest_h = ctx.prior(
        "destination",
        {"orders": (dest[ev], ctx.o_ts[ev], None), "dispute": (dest[dd_o], dd_ts, None)},
        dest[q],
        q_ts,
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
    lane_features(out, k, cfg, lane_h, dest_h, ctx.orders_before, global_counts, delivered)


def lane_features(
    out: dict[str, Any],
    k: float,
    cfg: FeatureConfig,
    lane: Mapping[str, PriorAggregate],
    dest: Mapping[str, PriorAggregate],
    orders_before: np.ndarray,
    global_counts: Mapping[str, np.ndarray],
    delivered: PriorAggregate,
) -> None:
    """The lane and destination features from their aggregates before each order (shared with
    the online store): per lane its orders, orders with a case / not received / damaged and
    delivered shipments; per destination its orders and duty disputes; globally the orders
    placed, the orders with each kind of case and the delivered shipments (the priors)."""
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
    dest = ctx.codes("destination", ctx.orders["destination_country"])
    cd = ctx.combine(
        "category_destination",
        np.concatenate([cat[items.s], cat[a_s]]),
        np.concatenate([dest[items.o], dest[a_o]]),
    )
    cd_items, cd_cases = cd[: len(items.s)], cd[len(items.s) :]
    qty_int = np.rint(np.nan_to_num(items.qty)).astype(np.int64)

    levels = {
        "category": (cat[items.s], cat[a_s]),
        "sku": (sku[items.s], sku[a_s]),
        "product": (prod[items.s], prod[a_s]),
        "category_destination": (cd_items, cd_cases),
    }
    history = {
        name: ctx.prior(
            name,
            {
                "items": (key_items[ev], it_ts[ev], {"units": qty_int[ev]}),
                "cases": (key_cases, a_ts, None),
            },
            key_items[r],
            q_ts,
        )
        for name, (key_items, key_cases) in levels.items()
    }
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
    history: Mapping[str, Mapping[str, PriorAggregate]],
) -> np.ndarray:
    """The SKU, product and category features of each order from its items' aggregates before
    it (shared with the online store). ``history[level]["items"]`` / ``["cases"]``: per item,
    the level's earlier items (with units) and items with a case, for the levels category, sku,
    product and category_destination; ``n_item_cases`` / ``n_items``: the global counts (the
    prior). Returns per order the item row of its riskiest SKU (-1 when it has none)."""

    def rate(level: str, prior: np.ndarray) -> np.ndarray:
        h = history[level]
        return smoothed_rate(h["cases"].count, h["items"].count, prior, k)

    cat_rate = rate("category", smoothed_rate(n_item_cases, n_items, cfg.default_case_rate, k))
    sku_rate = rate("sku", cat_rate)
    prod_rate = rate("product", cat_rate)
    cd_rate = rate("category_destination", cat_rate)
    sku_trials, sku_cases = history["sku"]["items"], history["sku"]["cases"].count
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
