"""Stage "tables": the contract tables (history and new orders) from the drawn world."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from returnrisk.synth.catalog import Catalog, category_arrays
from returnrisk.synth.config import SynthConfig
from returnrisk.synth.demand import Customers, Lines, Orders, Prices
from returnrisk.synth.logistics import Carriage, Charges, Transit
from returnrisk.synth.outcomes import Cases, Events
from returnrisk.synth.setting import Calendar, Geography
from returnrisk.synth.static import (
    CARRIERS,
    CATEGORIES,
    CHANNELS,
    COLOR_CODES,
    COLORS,
    PAYMENTS,
    carriers_table,
)
from returnrisk.synth.util import ids, str_series, take, ts


@dataclass(frozen=True)
class Keys:
    """The identifiers: orders, customers (only those who ordered), SKUs."""

    order_ids: pd.Series
    cust_code: np.ndarray  # pool index -> customer number (-1: never ordered)
    cust_ids: pd.Series
    sku_ids: pd.Series
    size_lbl: np.ndarray  # per SKU
    col_idx: np.ndarray  # per SKU


def make_keys(cat: Catalog, cust: Customers, orders: Orders) -> Keys:
    """Running ids; SKU ids are product-colour(-size)."""
    cust_used = np.unique(orders.o_cust)
    cust_code = np.full(cust.n_pool, -1, dtype=np.int64)
    cust_code[cust_used] = np.arange(len(cust_used))
    prod = cat.products
    w_sz = int(category_arrays()["nsizes"].max())
    size_lbl = np.array(
        [(c.sizes[i] if i < len(c.sizes) else "") for c in CATEGORIES for i in range(w_sz)],
        dtype=object,
    ).reshape(len(CATEGORIES), w_sz)
    s_prod = cat.s_prod
    col_idx = (cat.p_col0[s_prod] + cat.s_col) % len(COLORS)
    s_size_lbl = size_lbl[prod.p_cat[s_prod], cat.s_size]
    sku_ids = (
        take(ids("P", prod.n_prod, 6), s_prod)
        + "-"
        + pd.Series(np.array(COLOR_CODES, dtype=object)[col_idx], dtype="str")
        + np.where(prod.p_sized[s_prod], "-" + pd.Series(s_size_lbl, dtype="str"), "")
    )
    return Keys(
        order_ids=ids("O", orders.n, 8),
        cust_code=cust_code,
        cust_ids=ids("C", len(cust_used), 7),
        sku_ids=sku_ids,
        size_lbl=s_size_lbl,
        col_idx=col_idx,
    )


def _listing_languages(geo: Geography, p_lang: np.ndarray) -> np.ndarray:
    """Listing languages as text per product: en first, then the rest alphabetically."""
    lang_names = np.array(geo.langs, dtype=object)
    lang_bits = np.array([geo.lang_bit[lg] for lg in geo.langs], dtype=np.uint64)
    has = (p_lang[:, None] & lang_bits[None, :]) != 0
    en_i = geo.langs.index("en")
    lang_txt = pd.Series(np.full(len(p_lang), "en", dtype=object), dtype="str")
    for j in np.argsort(lang_names):  # a few dozen languages, vectorised over products
        if j == en_i:
            continue
        lang_txt = lang_txt.where(~has[:, j], lang_txt + "," + lang_names[j])
    return lang_txt.to_numpy(dtype=object)


def skus_table(rng: np.random.Generator, geo: Geography, cat: Catalog, keys: Keys) -> pd.DataFrame:
    """Every SKU ever launched; each supplier makes 1-3 brands (a brand carries its quality)."""
    prod, s_prod = cat.products, cat.s_prod
    brand_of_prod = 3 * prod.p_sup + np.minimum(
        rng.integers(0, 3, prod.n_prod), rng.integers(0, 3, prod.n_prod)
    )
    nimg_null = rng.random(prod.n_prod) < 0.04
    sized = prod.p_sized[s_prod]
    list_price = prod.p_price[s_prod] * np.where(sized & (cat.s_size >= 5), 1.05, 1.0)
    chart = prod.p_chart[s_prod]
    return pd.DataFrame(
        {
            "sku_id": keys.sku_ids,
            "product_id": take(ids("P", prod.n_prod, 6), s_prod),
            "category": str_series(
                np.array([c.name for c in CATEGORIES], dtype=object)[prod.p_cat[s_prod]]
            ),
            "brand": take(ids("brand_", 3 * prod.n_sup, 3), brand_of_prod[s_prod]),
            "supplier_id": take(ids("SUP", prod.n_sup, 3), prod.p_sup[s_prod]),
            "list_price": np.round(list_price, 2),
            "weight_g": prod.p_weight[s_prod].astype(np.float64),
            "size": str_series(keys.size_lbl, ~sized),
            "color": str_series(np.array(COLORS, dtype=object)[keys.col_idx]),
            "n_images": pd.Series(pd.array(prod.p_nimg[s_prod], dtype="Int64")).where(
                ~nimg_null[s_prod]
            ),
            "has_size_chart": pd.Series(pd.array(chart == 1, dtype="boolean")).where(chart >= 0),
            "listing_languages": str_series(_listing_languages(geo, prod.p_lang)[s_prod]),
        }
    )


def orders_table(
    rng: np.random.Generator,
    geo: Geography,
    keys: Keys,
    orders: Orders,
    prices: Prices,
    car: Carriage,
    transit: Transit,
    charges: Charges,
) -> pd.DataFrame:
    """All orders; new orders sometimes have no carrier yet, some shops no promise."""
    n, o_new, o_chan = orders.n, orders.o_new, orders.o_chan
    return pd.DataFrame(
        {
            "order_id": keys.order_ids,
            "customer_id": take(keys.cust_ids, keys.cust_code[orders.o_cust]),
            "order_ts": ts(orders.o_ts),
            "channel": str_series(np.array(CHANNELS, dtype=object)[o_chan]),
            "destination_country": str_series(geo.cc[orders.o_dest]),
            "carrier_id": str_series(
                np.array([c[0] for c in CARRIERS], dtype=object)[car.o_car],
                o_new & (rng.random(n) < 0.06),
            ),
            "incoterm": str_series(
                np.where(charges.ddu, "DDU", "DDP").astype(object), charges.incoterm_null
            ),
            "order_value": prices.value,
            "shipping_fee": charges.fee,
            "discount_value": prices.discount,
            "payment_method": str_series(np.array(PAYMENTS, dtype=object)[orders.o_pay]),
            "promised_delivery_days": pd.Series(pd.array(transit.promised, dtype="Int64")).where(
                ~((o_chan >= 3) & (rng.random(n) < 0.05))
            ),
        }
    )


def _customers_of(
    geo: Geography, keys: Keys, cust: Customers, first_seen: np.ndarray, mask: np.ndarray
) -> pd.DataFrame:
    idx = np.flatnonzero(mask)
    return pd.DataFrame(
        {
            "customer_id": take(keys.cust_ids, keys.cust_code[idx]),
            "first_seen_ts": ts(first_seen[idx]),
            "country_code": str_series(geo.cc[cust.c_cty[idx]]),
            "segment": str_series(np.where(cust.c_b2b, "b2b", "b2c").astype(object)[idx]),
        }
    )


def customers_tables(
    cal: Calendar, geo: Geography, keys: Keys, cust: Customers, orders: Orders
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers with a history order, and customers whose first order is a new one."""
    o_cust, o_new = orders.o_cust, orders.o_new
    first_ts = np.full(cust.n_pool, np.iinfo(np.int64).max)
    # first order per customer: orders are time-sorted, so take the first occurrence
    uc, first_pos = np.unique(o_cust, return_index=True)
    first_ts[uc] = orders.o_ts[first_pos]
    first_seen = np.minimum(cal.t0 + cust.c_arrive_sec, first_ts)
    hist_any = np.zeros(cust.n_pool, dtype=bool)
    hist_any[o_cust[~o_new]] = True
    new_only = np.zeros(cust.n_pool, dtype=bool)
    new_only[o_cust[o_new]] = True
    new_only &= ~hist_any
    return (
        _customers_of(geo, keys, cust, first_seen, hist_any),
        _customers_of(geo, keys, cust, first_seen, new_only),
    )


def shipments_table(cal: Calendar, keys: Keys, orders: Orders, ev: Events) -> pd.DataFrame:
    """Shipments of history orders shipped before the export; delivered if known by then."""
    ship_known = ~orders.o_new & (ev.shipped < cal.t_end)
    deliv_known = ship_known & ev.delivered & (ev.arrive < cal.t_end)
    ship_idx = np.flatnonzero(ship_known)
    delivered_s = np.where(deliv_known, np.floor(ev.arrive), np.nan)[ship_idx]
    return pd.DataFrame(
        {
            "order_id": take(keys.order_ids, ship_idx),
            "shipped_ts": ts(np.floor(ev.shipped[ship_idx]).astype(np.int64)),
            "delivered_ts": ts(delivered_s),
        }
    )


def cases_table(keys: Keys, lines: Lines, cases: Cases) -> pd.DataFrame:
    """The exported after-sales cases; ``sku_id`` where the seller knows the line."""
    c_line = cases.c_line
    sku_of_case = np.where(c_line >= 0, lines.l_sku[np.maximum(c_line, 0)], -1)
    return pd.DataFrame(
        {
            "case_id": ids("K", len(cases.c_ord), 8),
            "order_id": take(keys.order_ids, cases.c_ord),
            "opened_ts": ts(cases.c_open),
            "case_type": str_series(cases.c_kind),
            "sku_id": take(keys.sku_ids, np.maximum(sku_of_case, 0), sku_of_case < 0),
            "amount": cases.c_amt,
        }
    )


def split_tables(
    cfg: SynthConfig,
    cal: Calendar,
    geo: Geography,
    cat: Catalog,
    orders: Orders,
    lines: Lines,
    frames: dict[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """History tables and the new orders to screen (with their new SKUs and customers)."""
    hist_o, o_new = ~orders.o_new, orders.o_new
    s_launch = cat.products.launch[cat.s_prod]
    sku_hist = s_launch < cal.cutoff_day
    sku_new = (s_launch >= cal.cutoff_day) & (s_launch < cfg.days)
    o_df, l_df, skus = frames["orders"], frames["order_lines"], frames["skus"]
    tables = {
        "orders": o_df.loc[hist_o].reset_index(drop=True),
        "order_lines": l_df.loc[hist_o[lines.l_ord]].reset_index(drop=True),
        "skus": skus.loc[sku_hist].reset_index(drop=True),
        "countries": geo.countries.reset_index(drop=True),
        "carriers": carriers_table(),
        "customers": frames["customers"],
        "after_sales_cases": frames["after_sales_cases"],
        "shipments": frames["shipments"],
        "duty_rules": frames["duty_rules"],
    }
    new = {}
    if o_new.any():
        new = {
            "orders": o_df.loc[o_new].reset_index(drop=True),
            "order_lines": l_df.loc[o_new[lines.l_ord]].reset_index(drop=True),
            "skus": skus.loc[sku_new].reset_index(drop=True),
            "customers": frames["new_customers"],
        }
    return tables, new


def lines_table(keys: Keys, lines: Lines, prices: Prices) -> pd.DataFrame:
    """All order lines (history and new)."""
    return pd.DataFrame(
        {
            "order_id": take(keys.order_ids, lines.l_ord),
            "sku_id": take(keys.sku_ids, lines.l_sku),
            "quantity": lines.qty,
            "unit_price": prices.unit,
        }
    )
