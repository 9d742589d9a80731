"""Tableau Global Superstore: vendor-made sample order lines (2011-2014) and a returns list.

``read_superstore`` reads both files; ``superstore_tables`` is the pure transformation;
``import_superstore`` reads, transforms and writes. Rules and assumptions: docs/importers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.importers.common import (
    ImportResult,
    build_countries,
    build_duty_rules,
    canonical_columns,
    case_rate,
    clock,
    country_codes,
    first_reason,
    outside_contract_time,
    read_table_file,
    reference_countries,
    write_result,
)
from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.progress import QUIET, StepLog
from returnrisk.reference import load_duty_rules

SUPERSTORE_COLUMNS = {
    c: (c,)
    for c in (
        "Order ID",
        "Order Date",
        "Ship Date",
        "Ship Mode",
        "Customer ID",
        "Segment",
        "Country",
        "Market",
        "Product ID",
        "Category",
        "Sub-Category",
        "Product Name",
        "Sales",
        "Quantity",
        "Discount",
        "Shipping Cost",
    )
}
SUPERSTORE_RETURNS_COLUMNS = {c: (c,) for c in ("Returned", "Order ID", "Market")}
MARKETS_WITH_RETURNS = ("APAC", "EU", "LATAM", "US")
SHIP_MODES = {  # Ship Mode -> (carrier_id, service_level)
    "same day": ("same_day", "express"),
    "first class": ("first_class", "express"),
    "second class": ("second_class", "standard"),
    "standard class": ("standard_class", "economy"),
}
SEGMENTS = {"consumer": "b2c", "corporate": "b2b", "home office": "b2b"}
SUPERSTORE_DATE_FORMAT = "%d-%m-%Y"


def read_superstore(orders_csv: Path, returns_csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The order lines (latin-1 CSV, zipped or not) and the returns list, as text."""
    lines = read_table_file(Path(orders_csv), encoding="latin-1")
    cols = canonical_columns(lines, SUPERSTORE_COLUMNS, str(orders_csv))
    lines = lines.rename(columns={v: k for k, v in cols.items()})
    returns = read_table_file(Path(returns_csv), encoding="latin-1")
    rcols = canonical_columns(returns, SUPERSTORE_RETURNS_COLUMNS, str(returns_csv))
    returns = returns.rename(columns={v: k for k, v in rcols.items()})
    return lines, returns


def _day(text: pd.Series) -> pd.Series:
    out = pd.to_datetime(text.str.strip(), errors="coerce", format=SUPERSTORE_DATE_FORMAT)
    return out.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")


def _parse_lines(lines_raw: pd.DataFrame) -> pd.DataFrame:
    """The order lines' text parsed, one column per field (same index as ``lines_raw``)."""
    oid = lines_raw["Order ID"].astype("str").str.strip()
    market = lines_raw["Market"].astype("str").str.strip()
    cust = lines_raw["Customer ID"].astype("str").str.strip()
    order_day = _day(lines_raw["Order Date"].astype("str"))
    line_key = market + "\x1f" + oid
    # An Order ID is reused within a market by different customers / dates: each
    # (market, order id, customer, order date) is one order.
    sub = cust + "\x1f" + order_day.dt.strftime("%Y-%m-%d").fillna("")
    return pd.DataFrame(
        {
            "oid": oid,
            "market": market,
            "cust": cust,
            "pid": lines_raw["Product ID"].astype("str").str.strip(),
            "order_day": order_day,
            "ship_day": _day(lines_raw["Ship Date"].astype("str")),
            "sales": pd.to_numeric(lines_raw["Sales"], errors="coerce"),
            "qty": pd.to_numeric(lines_raw["Quantity"], errors="coerce"),
            "discount": pd.to_numeric(lines_raw["Discount"], errors="coerce"),
            "ship_cost": pd.to_numeric(lines_raw["Shipping Cost"], errors="coerce"),
            "country": country_codes(lines_raw["Country"]),
            "mode": lines_raw["Ship Mode"].astype("str").str.strip().str.lower(),
            "segment": lines_raw["Segment"].astype("str").str.strip().str.lower().map(SEGMENTS),
            "line_key": line_key,
            "sub": sub,
            "n_sub": sub.groupby(line_key).transform("nunique"),
        }
    )


def _clean_returns(returns_raw: pd.DataFrame) -> pd.DataFrame:
    """The returns list with ``Order ID`` and ``Market`` stripped."""
    return returns_raw.assign(
        **{
            "Order ID": returns_raw["Order ID"].astype("str").str.strip(),
            "Market": returns_raw["Market"].astype("str").str.strip(),
        }
    )


def _return_keys(ret: pd.DataFrame) -> pd.DataFrame:
    """Each returns row's (market, order id) key and whether it says the order was returned."""
    return pd.DataFrame(
        {
            "key": ret["Market"] + "\x1f" + ret["Order ID"],
            "yes": ret["Returned"].astype("str").str.strip().str.lower().isin(["yes", "true", "1"]),
        }
    )


def _line_reasons(
    p: pd.DataFrame, returned: pd.Series, *, all_markets: bool, now: pd.Timestamp
) -> pd.Series:
    """Each parsed order line's first refusal reason (NaN: kept)."""
    oid, market, cust, pid = p["oid"], p["market"], p["cust"], p["pid"]
    sales, qty, discount, ship_cost = p["sales"], p["qty"], p["discount"], p["ship_cost"]
    reason = pd.Series(np.nan, index=p.index, dtype="str")
    rules: list[tuple[str, pd.Series]] = [
        ("missing_order_id", oid.isna() | (oid == "")),
        ("missing_market", market.isna() | (market == "")),
        ("missing_customer_id", cust.isna() | (cust == "")),
        ("missing_product_id", pid.isna() | (pid == "")),
        ("unparseable_order_date", p["order_day"].isna()),
        ("unparseable_ship_date", p["ship_day"].isna()),
        ("order_date_outside_2000_to_now", outside_contract_time(p["order_day"], now)),
        ("ship_date_outside_2000_to_now", outside_contract_time(p["ship_day"], now)),
        ("unparseable_sales", sales.isna()),
        ("unparseable_quantity", qty.isna() | (qty % 1 != 0)),
        ("unparseable_discount", discount.isna()),
        ("unparseable_shipping_cost", ship_cost.isna()),
        (
            "market_records_no_returns",
            pd.Series(not all_markets, index=market.index) & ~market.isin(MARKETS_WITH_RETURNS),
        ),
        ("country_not_mappable", p["country"].isna()),
        ("unknown_ship_mode", ~p["mode"].isin(SHIP_MODES)),
        ("unknown_segment", p["segment"].isna()),
        ("non_positive_quantity", qty < 1),
        ("negative_sales", sales < 0),
        ("discount_outside_0_1", (discount < 0) | (discount >= 1)),
        ("negative_shipping_cost", ship_cost < 0),
        ("ship_date_before_order_date", p["ship_day"] < p["order_day"]),
        ("returned_order_id_reused_within_market", returned & (p["n_sub"] > 1)),
    ]
    for name, mask in rules:
        reason = first_reason(reason, mask, name)
    return reason


def _kept_lines(
    lines_raw: pd.DataFrame, p: pd.DataFrame, returned: pd.Series, keep: pd.Series
) -> pd.DataFrame:
    """The kept order lines with their order id, prices and product fields."""
    base_id = p["market"] + ":" + p["oid"]
    order_id = base_id.where(p["n_sub"] <= 1, base_id + ":" + p["sub"].str.replace("\x1f", ":"))
    sales, qty = p["sales"], p["qty"]
    gross = sales / (1.0 - p["discount"])
    return pd.DataFrame(
        {
            "order_id": order_id,
            "customer_id": p["cust"],
            "order_ts": p["order_day"],
            "shipped_ts": p["ship_day"],
            "destination_country": p["country"],
            "carrier_id": p["mode"].map({m: cid for m, (cid, _) in SHIP_MODES.items()}),
            "sales": sales,
            "discount_value": gross - sales,
            "shipping_fee": p["ship_cost"],
            "market": p["market"],
            "source_order_id": p["oid"],
            "returned": returned,
            "segment": p["segment"],
            "sku_id": p["pid"],
            "quantity": qty,
            "unit_price": sales / qty,
            "gross_unit_price": gross / qty,
            "category": lines_raw["Category"].astype("str").str.strip()
            + "/"
            + lines_raw["Sub-Category"].astype("str").str.strip(),
            "product_name": lines_raw["Product Name"].astype("str").str.strip(),
            "order_priority": lines_raw["Order Priority"].astype("str")
            if "Order Priority" in lines_raw.columns
            else pd.Series(np.nan, index=lines_raw.index, dtype="str"),
        }
    )[keep]


def _orders(df: pd.DataFrame) -> pd.DataFrame:
    """One row per order, still with ``shipped_ts`` and ``returned``."""
    orders = (
        df.groupby("order_id", sort=True)
        .agg(
            customer_id=("customer_id", "first"),
            order_ts=("order_ts", "first"),
            shipped_ts=("shipped_ts", "min"),
            destination_country=("destination_country", "first"),
            carrier_id=("carrier_id", "first"),
            order_value=("sales", "sum"),
            shipping_fee=("shipping_fee", "sum"),
            discount_value=("discount_value", "sum"),
            market=("market", "first"),
            source_order_id=("source_order_id", "first"),
            order_priority=("order_priority", "first"),
            returned=("returned", "any"),
        )
        .reset_index()
    )
    orders["discount_value"] = orders["discount_value"].clip(lower=0.0)
    orders["channel"] = "unknown"
    for col in ("incoterm", "payment_method"):
        orders[col] = pd.Series(np.nan, index=orders.index, dtype="str")
    orders["promised_delivery_days"] = pd.array([pd.NA] * len(orders), dtype="Int64")
    return orders


def _shipments(orders: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "shipped_ts": orders["shipped_ts"],
            "delivered_ts": pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]"),
        }
    )


def _cases(orders: pd.DataFrame, return_lag_days: int, now: pd.Timestamp) -> pd.DataFrame:
    """One return case per returned order, opened ``return_lag_days`` after shipping, but
    never after ``now`` (the export already lists the return)."""
    ret_orders = orders[orders["returned"]]
    return pd.DataFrame(
        {
            "case_id": "return:" + ret_orders["order_id"],
            "order_id": ret_orders["order_id"],
            "opened_ts": (ret_orders["shipped_ts"] + pd.Timedelta(days=return_lag_days)).clip(
                upper=now
            ),
            "case_type": "return",
            "sku_id": pd.Series(np.nan, index=ret_orders.index, dtype="str"),
            "amount": np.nan,
        }
    ).reset_index(drop=True)


def _order_lines(df: pd.DataFrame, discount: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": df["order_id"],
            "sku_id": df["sku_id"],
            "quantity": df["quantity"].astype("int64"),
            "unit_price": df["unit_price"].astype("float64"),
            "discount_rate": discount,
        }
    ).reset_index(drop=True)


def _customers(df: pd.DataFrame) -> pd.DataFrame:
    """Each customer at their first order."""
    first = df.sort_values(["order_ts", "order_id"], kind="stable").drop_duplicates("customer_id")
    return pd.DataFrame(
        {
            "customer_id": first["customer_id"],
            "first_seen_ts": first["order_ts"],
            "country_code": first["destination_country"],
            "segment": first["segment"],
        }
    ).sort_values("customer_id", ignore_index=True)


def _sku_mode(df: pd.DataFrame, col: str) -> pd.Series:
    """Each SKU's most frequent ``col`` (ties: the smallest)."""
    return (
        df.value_counts(["sku_id", col])
        .reset_index()
        .sort_values(["sku_id", "count", col], ascending=[True, False, True])
        .drop_duplicates("sku_id")
        .set_index("sku_id")[col]
    )


def _skus(df: pd.DataFrame) -> pd.DataFrame:
    """One row per SKU: median gross price, most frequent category and product name."""
    skus = df.groupby("sku_id", sort=True).agg(
        list_price=("gross_unit_price", "median"),
        n_product_names=("product_name", "nunique"),
    )
    skus = skus.reset_index()
    skus["category"] = skus["sku_id"].map(_sku_mode(df, "category")).astype("str")
    skus["product_name"] = skus["sku_id"].map(_sku_mode(df, "product_name")).astype("str")
    for col in ("product_id", "brand", "supplier_id", "size", "color", "listing_languages"):
        skus[col] = pd.Series(np.nan, index=skus.index, dtype="str")
    skus["weight_g"] = np.nan
    skus["n_images"] = pd.array([pd.NA] * len(skus), dtype="Int64")
    skus["has_size_chart"] = pd.array([pd.NA] * len(skus), dtype="boolean")
    return skus


def _carriers() -> pd.DataFrame:
    carriers = pd.DataFrame(
        [(cid, f"Superstore {name.title()}", level) for name, (cid, level) in SHIP_MODES.items()],
        columns=["carrier_id", "carrier_name", "service_level"],
    )
    carriers["tracked"] = pd.array([pd.NA] * len(carriers), dtype="boolean")
    return carriers


def _refused_returns(
    ret: pd.DataFrame, keys: pd.DataFrame, orders: pd.DataFrame, line_key: pd.Series
) -> pd.DataFrame:
    """Returns rows that open no case, with their reason."""
    ret_key = keys["key"]
    kept_keys = set(orders["market"] + "\x1f" + orders["source_order_id"])
    all_keys = set(line_key)
    r_reason = pd.Series(np.nan, index=ret.index, dtype="str")
    r_rules: list[tuple[str, pd.Series]] = [
        ("returned_is_not_yes", ~keys["yes"]),
        ("duplicate_return_row", ret_key.duplicated()),
        ("no_order_with_this_order_id_and_market", ~ret_key.isin(all_keys)),
        ("order_refused_see_line_reasons", ~ret_key.isin(kept_keys)),
    ]
    for name, mask in r_rules:
        r_reason = first_reason(r_reason, mask, name)
    return ret.loc[r_reason.notna()].assign(
        reason=r_reason[r_reason.notna()], source_row=np.flatnonzero(r_reason.notna())
    )


def superstore_tables(
    lines_raw: pd.DataFrame,
    returns_raw: pd.DataFrame,
    *,
    all_markets: bool = False,
    return_lag_days: int = 14,
    reference: pd.DataFrame | None = None,
    duty_rules: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """Contract tables from Global Superstore order lines and its returns list. ``now``: the
    import's clock (``clock``); a line dated outside 2000..now is refused."""
    now = clock(now)
    with log.step("superstore: parsing and applying the refusal rules"):
        parsed = _parse_lines(lines_raw)
        ret = _clean_returns(returns_raw)
        keys = _return_keys(ret)
        returned = parsed["line_key"].isin(set(keys["key"][keys["yes"]]))
        reason = _line_reasons(parsed, returned, all_markets=all_markets, now=now)
        keep = reason.isna()

    with log.step("superstore: orders, lines, shipments, cases"):
        df = _kept_lines(lines_raw, parsed, returned, keep)
        orders = _orders(df)
        shipments = _shipments(orders)
        cases = _cases(orders, return_lag_days, now)
        orders = orders.drop(columns=["shipped_ts", "returned"])
        order_lines = _order_lines(df, parsed["discount"][keep])

    with log.step("superstore: customers, SKUs, countries, carriers"):
        customers = _customers(df)
        skus = _skus(df)
        countries = build_countries(orders["destination_country"], reference, currency="USD")
        carriers = _carriers()

    refused_lines = lines_raw.loc[~keep].assign(
        reason=reason[~keep], source_row=np.flatnonzero(~keep)
    )
    # Returns rows: each either opens a case or is refused with its reason.
    refused_returns = _refused_returns(ret, keys, orders, parsed["line_key"])
    tables = {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
        "duty_rules": build_duty_rules(countries, duty_rules, currency="USD"),
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases,
        "shipments": shipments,
    }
    rate, n_mature = case_rate(orders, cases, label_window_days)
    figures: dict[str, float | int] = {
        "input order lines": len(lines_raw),
        "input returns rows": len(returns_raw),
        "order lines": len(order_lines),
        "refused order lines": len(refused_lines),
        "orders": len(orders),
        "cases (returned orders)": len(cases),
        "refused returns rows": len(refused_returns),
        "customers": len(customers),
        "skus": len(skus),
        "skus with several product names": int((skus["n_product_names"] > 1).sum()),
        "destination countries": int(orders["destination_country"].nunique()),
        "markets": int(orders["market"].nunique()),
        "mature orders": n_mature,
        f"case rate ({label_window_days} d, mature orders)": rate,
    }
    return ImportResult(
        tables,
        {"superstore_orders": refused_lines, "superstore_returns": refused_returns},
        {"superstore_orders": len(lines_raw), "superstore_returns": len(returns_raw)},
        figures,
    )


@dataclass(frozen=True)
class SuperstoreConfig:
    orders_csv: Path
    returns_csv: Path
    out: Path
    all_markets: bool = False
    return_lag_days: int = 14
    label_window_days: int = LABEL_WINDOW_DAYS


def import_superstore(cfg: SuperstoreConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the export, build the tables, write ``cfg.out`` (+ ``refused/``)."""
    now = clock()
    with log.step("reading the Global Superstore export"):
        lines, returns = read_superstore(cfg.orders_csv, cfg.returns_csv)
    result = superstore_tables(
        lines,
        returns,
        all_markets=cfg.all_markets,
        return_lag_days=cfg.return_lag_days,
        reference=reference_countries(),
        duty_rules=load_duty_rules(),
        label_window_days=cfg.label_window_days,
        log=log,
        now=now,
    )
    write_result(result, cfg.out, log, now=now)
    return result
