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
    canonical_columns,
    case_rate,
    country_codes,
    first_reason,
    read_table_file,
    reference_countries,
    write_result,
)
from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.progress import QUIET, StepLog

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


def superstore_tables(
    lines_raw: pd.DataFrame,
    returns_raw: pd.DataFrame,
    *,
    all_markets: bool = False,
    return_lag_days: int = 14,
    reference: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
) -> ImportResult:
    """Contract tables from Global Superstore order lines and its returns list."""
    with log.step("superstore: parsing and applying the refusal rules"):
        oid = lines_raw["Order ID"].astype("str").str.strip()
        market = lines_raw["Market"].astype("str").str.strip()
        cust = lines_raw["Customer ID"].astype("str").str.strip()
        pid = lines_raw["Product ID"].astype("str").str.strip()
        order_day = _day(lines_raw["Order Date"].astype("str"))
        ship_day = _day(lines_raw["Ship Date"].astype("str"))
        sales = pd.to_numeric(lines_raw["Sales"], errors="coerce")
        qty = pd.to_numeric(lines_raw["Quantity"], errors="coerce")
        discount = pd.to_numeric(lines_raw["Discount"], errors="coerce")
        ship_cost = pd.to_numeric(lines_raw["Shipping Cost"], errors="coerce")
        country = country_codes(lines_raw["Country"])
        mode = lines_raw["Ship Mode"].astype("str").str.strip().str.lower()
        segment = lines_raw["Segment"].astype("str").str.strip().str.lower().map(SEGMENTS)

        ret = returns_raw.assign(
            **{
                "Order ID": returns_raw["Order ID"].astype("str").str.strip(),
                "Market": returns_raw["Market"].astype("str").str.strip(),
            }
        )
        ret_yes = ret["Returned"].astype("str").str.strip().str.lower().isin(["yes", "true", "1"])
        ret_key = ret["Market"] + "\x1f" + ret["Order ID"]
        line_key = market + "\x1f" + oid
        returned = line_key.isin(set(ret_key[ret_yes]))
        # An Order ID is reused within a market by different customers / dates: each
        # (market, order id, customer, order date) is one order.
        sub = cust + "\x1f" + order_day.dt.strftime("%Y-%m-%d").fillna("")
        n_sub = sub.groupby(line_key).transform("nunique")

        reason = pd.Series(np.nan, index=lines_raw.index, dtype="str")
        rules: list[tuple[str, pd.Series]] = [
            ("missing_order_id", oid.isna() | (oid == "")),
            ("missing_market", market.isna() | (market == "")),
            ("missing_customer_id", cust.isna() | (cust == "")),
            ("missing_product_id", pid.isna() | (pid == "")),
            ("unparseable_order_date", order_day.isna()),
            ("unparseable_ship_date", ship_day.isna()),
            ("unparseable_sales", sales.isna()),
            ("unparseable_quantity", qty.isna() | (qty % 1 != 0)),
            ("unparseable_discount", discount.isna()),
            ("unparseable_shipping_cost", ship_cost.isna()),
            (
                "market_records_no_returns",
                pd.Series(not all_markets, index=market.index) & ~market.isin(MARKETS_WITH_RETURNS),
            ),
            ("country_not_mappable", country.isna()),
            ("unknown_ship_mode", ~mode.isin(SHIP_MODES)),
            ("unknown_segment", segment.isna()),
            ("non_positive_quantity", qty < 1),
            ("negative_sales", sales < 0),
            ("discount_outside_0_1", (discount < 0) | (discount >= 1)),
            ("negative_shipping_cost", ship_cost < 0),
            ("ship_date_before_order_date", ship_day < order_day),
            ("returned_order_id_reused_within_market", returned & (n_sub > 1)),
        ]
        for name, mask in rules:
            reason = first_reason(reason, mask, name)
        keep = reason.isna()

    with log.step("superstore: orders, lines, shipments, cases"):
        base_id = market + ":" + oid
        order_id = base_id.where(n_sub <= 1, base_id + ":" + sub.str.replace("\x1f", ":"))
        gross = sales / (1.0 - discount)
        df = pd.DataFrame(
            {
                "order_id": order_id,
                "customer_id": cust,
                "order_ts": order_day,
                "shipped_ts": ship_day,
                "destination_country": country,
                "carrier_id": mode.map({m: cid for m, (cid, _) in SHIP_MODES.items()}),
                "sales": sales,
                "discount_value": gross - sales,
                "shipping_fee": ship_cost,
                "market": market,
                "source_order_id": oid,
                "returned": returned,
                "segment": segment,
                "sku_id": pid,
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
        shipments = pd.DataFrame(
            {
                "order_id": orders["order_id"],
                "shipped_ts": orders["shipped_ts"],
                "delivered_ts": pd.Series(pd.NaT, index=orders.index, dtype="datetime64[ns, UTC]"),
            }
        )
        ret_orders = orders[orders["returned"]]
        cases = pd.DataFrame(
            {
                "case_id": "return:" + ret_orders["order_id"],
                "order_id": ret_orders["order_id"],
                "opened_ts": ret_orders["shipped_ts"] + pd.Timedelta(days=return_lag_days),
                "case_type": "return",
                "sku_id": pd.Series(np.nan, index=ret_orders.index, dtype="str"),
                "amount": np.nan,
            }
        ).reset_index(drop=True)
        orders = orders.drop(columns=["shipped_ts", "returned"])
        order_lines = pd.DataFrame(
            {
                "order_id": df["order_id"],
                "sku_id": df["sku_id"],
                "quantity": df["quantity"].astype("int64"),
                "unit_price": df["unit_price"].astype("float64"),
                "discount_rate": discount[keep],
            }
        ).reset_index(drop=True)

    with log.step("superstore: customers, SKUs, countries, carriers"):
        first = df.sort_values(["order_ts", "order_id"], kind="stable").drop_duplicates(
            "customer_id"
        )
        customers = pd.DataFrame(
            {
                "customer_id": first["customer_id"],
                "first_seen_ts": first["order_ts"],
                "country_code": first["destination_country"],
                "segment": first["segment"],
            }
        ).sort_values("customer_id", ignore_index=True)

        def mode_of(col: str) -> pd.Series:
            return (
                df.value_counts(["sku_id", col])
                .reset_index()
                .sort_values(["sku_id", "count", col], ascending=[True, False, True])
                .drop_duplicates("sku_id")
                .set_index("sku_id")[col]
            )

        skus = df.groupby("sku_id", sort=True).agg(
            list_price=("gross_unit_price", "median"),
            n_product_names=("product_name", "nunique"),
        )
        skus = skus.reset_index()
        skus["category"] = skus["sku_id"].map(mode_of("category")).astype("str")
        skus["product_name"] = skus["sku_id"].map(mode_of("product_name")).astype("str")
        for col in ("product_id", "brand", "supplier_id", "size", "color", "listing_languages"):
            skus[col] = pd.Series(np.nan, index=skus.index, dtype="str")
        skus["weight_g"] = np.nan
        skus["n_images"] = pd.array([pd.NA] * len(skus), dtype="Int64")
        skus["has_size_chart"] = pd.array([pd.NA] * len(skus), dtype="boolean")
        countries = build_countries(orders["destination_country"], reference, currency="USD")
        carriers = pd.DataFrame(
            [
                (cid, f"Superstore {name.title()}", level)
                for name, (cid, level) in SHIP_MODES.items()
            ],
            columns=["carrier_id", "carrier_name", "service_level"],
        )
        carriers["tracked"] = pd.array([pd.NA] * len(carriers), dtype="boolean")

    refused_lines = lines_raw.loc[~keep].assign(
        reason=reason[~keep], source_row=np.flatnonzero(~keep)
    )
    # Returns rows: each either opens a case or is refused with its reason.
    kept_keys = set(orders["market"] + "\x1f" + orders["source_order_id"])
    all_keys = set(line_key)
    r_reason = pd.Series(np.nan, index=ret.index, dtype="str")
    r_rules: list[tuple[str, pd.Series]] = [
        ("returned_is_not_yes", ~ret_yes),
        ("duplicate_return_row", ret_key.duplicated()),
        ("no_order_with_this_order_id_and_market", ~ret_key.isin(all_keys)),
        ("order_refused_see_line_reasons", ~ret_key.isin(kept_keys)),
    ]
    for name, mask in r_rules:
        r_reason = first_reason(r_reason, mask, name)
    refused_returns = ret.loc[r_reason.notna()].assign(
        reason=r_reason[r_reason.notna()], source_row=np.flatnonzero(r_reason.notna())
    )
    tables = {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
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
    with log.step("reading the Global Superstore export"):
        lines, returns = read_superstore(cfg.orders_csv, cfg.returns_csv)
    result = superstore_tables(
        lines,
        returns,
        all_markets=cfg.all_markets,
        return_lag_days=cfg.return_lag_days,
        reference=reference_countries(),
        label_window_days=cfg.label_window_days,
        log=log,
    )
    write_result(result, cfg.out, log)
    return result
