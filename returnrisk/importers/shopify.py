"""Shopify admin "Export orders" CSV: one row per line item, order fields on the first row only.

``read_shopify`` stacks the files; ``shopify_tables`` is the pure transformation;
``import_shopify`` reads, transforms and writes. The columns read are those of the export as
documented in Shopify's help centre ("Exporting orders"; the layout with ``Lineitem ...``,
``Duties`` and ``Payment References``, as sold in 2024-2025). Rules, the mapping table and what
the export cannot tell: docs/importers.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.importers.common import (
    ImporterError,
    ImportResult,
    blank,
    build_countries,
    build_duty_rules,
    canonical_columns,
    carrier_ids,
    carriers_table,
    case_rate,
    clock,
    customer_keys,
    destination_codes,
    first_reason,
    mode_by,
    money,
    null_str,
    outside_contract_time,
    parse_utc,
    read_table_file,
    reference_countries,
    reporting_currency,
    resolve_salt,
    shop_country_code,
    without_personal,
    write_result,
)
from returnrisk.labels import LABEL_WINDOW_DAYS
from returnrisk.progress import QUIET, StepLog
from returnrisk.reference import load_duty_rules

REQUIRED = (
    "Name",
    "Email",
    "Financial Status",
    "Currency",
    "Subtotal",
    "Shipping",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Shipping Country",
    "Cancelled at",
    "Refunded Amount",
)
OPTIONAL = (
    "Fulfillment Status",
    "Fulfilled at",
    "Lineitem compare at price",
    "Lineitem requires shipping",
    "Vendor",
    "Payment Method",
    "Duties",
    "Source",
)
# Order fields: filled on an order's first row only; every row of the order takes them.
ORDER_FIELDS = (
    "Email",
    "Financial Status",
    "Currency",
    "Subtotal",
    "Shipping",
    "Discount Amount",
    "Shipping Method",
    "Created at",
    "Shipping Country",
    "Cancelled at",
    "Refunded Amount",
    "Fulfillment Status",
    "Fulfilled at",
    "Payment Method",
    "Duties",
    "Source",
)
REFUNDED_STATUSES = ("refunded", "partially_refunded")
FULFILLED_STATUSES = ("fulfilled", "partial")
NO_SKU_PREFIX = "name:"  # sku_id of a line item without a SKU: its line-item name
SOURCE = "shopify_orders"


def read_shopify(paths: list[Path] | tuple[Path, ...]) -> pd.DataFrame:
    """All files stacked (text; a UTF-8 BOM is dropped), with ``source_file``, ``source_row``,
    ``file_index``; optional columns absent from a file are added empty."""
    if not paths:
        raise ImporterError("shopify: no input file given")
    parts = []
    for i, path in enumerate(paths):
        df = read_table_file(Path(path), encoding="utf-8-sig")
        spec = {c: (c,) for c in REQUIRED}
        cols = canonical_columns(df, spec, str(path))
        df = df.rename(columns={v: k for k, v in cols.items()})
        for col in OPTIONAL:
            if col not in df.columns:
                df[col] = null_str(df.index)
        df["source_file"] = Path(path).name
        df["source_row"] = np.arange(len(df), dtype="int64")
        df["file_index"] = i
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def _cases_and_shipments(
    orders: pd.DataFrame, refund_lag_days: int, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A case per cancelled or refunded order, a shipment per fulfilled one. A refund's opening
    time is assumed ``refund_lag_days`` after fulfilment, but never after ``now``: the export
    already says the order was refunded."""
    base = orders["fulfilled_ts"].where(orders["fulfilled_ts"] >= orders["order_ts"])
    fulfilled = orders["fulfillment_status"].isin(FULFILLED_STATUSES) | base.notna()
    is_cancel = orders["cancelled_ts"].notna()
    is_refund = ~is_cancel & (
        orders["financial_status"].isin(REFUNDED_STATUSES) | (orders["refunded_amount"] > 0)
    )
    lag = pd.Timedelta(days=refund_lag_days)
    refund_open = (base.fillna(orders["order_ts"]) + lag).clip(upper=now)
    opened = orders["cancelled_ts"].where(is_cancel, refund_open)
    opened = opened.where(opened >= orders["order_ts"], orders["order_ts"])
    has_case = is_cancel | is_refund
    c = orders[has_case]
    cases = pd.DataFrame(
        {
            "case_id": "shopify:"
            + c["order_id"]
            + np.where(is_cancel[has_case], ":cancel", ":refund"),
            "order_id": c["order_id"],
            "opened_ts": opened[has_case],
            "case_type": np.where(~is_cancel[has_case] & fulfilled[has_case], "return", "refund"),
            "sku_id": null_str(c.index),
            "amount": c["refunded_amount"].astype("float64"),
            "opened_ts_assumed": ~is_cancel[has_case],
        }
    ).reset_index(drop=True)
    shipped = orders[base.notna()]
    shipments = pd.DataFrame(
        {
            "order_id": shipped["order_id"],
            "shipped_ts": base[base.notna()],
            "delivered_ts": pd.Series(pd.NaT, index=shipped.index, dtype="datetime64[ns, UTC]"),
        }
    ).reset_index(drop=True)
    return cases, shipments


def _skus(df: pd.DataFrame) -> pd.DataFrame:
    """One row per SKU: compare-at price as list price, Vendor as brand, title as product."""
    listed = df.assign(compare_at=df["compare_at"].where(df["compare_at"] > 0))
    skus = listed.groupby("sku_id", sort=True).agg(
        compare_at=("compare_at", "median"), paid=("unit_price", "median")
    )
    skus = skus.reset_index()
    skus["list_price"] = skus["compare_at"].fillna(skus["paid"]).astype("float64")
    skus = skus.drop(columns=["compare_at", "paid"])
    skus["product_name"] = skus["sku_id"].map(mode_by(df, "sku_id", "item_name")).astype("str")
    # "Linen Shirt - Blue / M": the product title before " - " groups a product's variants.
    title = skus["product_name"].str.split(" - ", n=1).str[0]
    skus["product_id"] = ("title:" + title).astype("str")
    skus["brand"] = skus["sku_id"].map(mode_by(df, "sku_id", "vendor")).astype("str")
    skus["category"] = "unknown"  # the order export has no product type
    for col in ("supplier_id", "size", "color", "listing_languages"):
        skus[col] = null_str(skus.index)
    skus["weight_g"] = np.nan
    skus["n_images"] = pd.array([pd.NA] * len(skus), dtype="Int64")
    skus["has_size_chart"] = pd.array([pd.NA] * len(skus), dtype="boolean")
    return skus


def shopify_tables(
    raw: pd.DataFrame,
    *,
    salt: str,
    currency: str | None = None,
    shop_country: str | None = None,
    refund_lag_days: int = 14,
    reference: pd.DataFrame | None = None,
    duty_rules: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """Contract tables from stacked Shopify order-export rows (see ``read_shopify``). ``now``:
    the import's clock (``clock``); an order with a time outside 2000..now is refused."""
    n_in = len(raw)
    now = clock(now)
    with log.step("shopify: order fields, refusal rules"):
        name = raw["Name"].astype("str").str.strip().where(~blank(raw["Name"]))
        group = [raw["file_index"], name.fillna("")]
        # First-row-only order fields onto every row of the order (first non-empty value).
        fields = pd.DataFrame({c: raw[c].where(~blank(raw[c])) for c in ORDER_FIELDS})
        order = fields.groupby(group, sort=False).transform("first")
        cust = customer_keys(order["Email"], salt)
        created = parse_utc(order["Created at"])
        cancelled_at = parse_utc(order["Cancelled at"])
        fulfilled_at = parse_utc(order["Fulfilled at"])
        cur = order["Currency"].astype("str").str.strip().str.upper()
        reporting = reporting_currency(cur, currency, "shopify")
        country = destination_codes(order["Shipping Country"])
        subtotal = money(order["Subtotal"])
        amounts = {c: money(order[c]) for c in ("Shipping", "Discount Amount", "Refunded Amount")}
        duties = money(order["Duties"])
        qty = pd.to_numeric(raw["Lineitem quantity"], errors="coerce")
        price = money(raw["Lineitem price"])
        sku = raw["Lineitem sku"].astype("str").str.strip().where(~blank(raw["Lineitem sku"]))
        item_name = raw["Lineitem name"].astype("str").str.strip()
        item_name = item_name.where(~blank(raw["Lineitem name"]))
        sku = sku.fillna(NO_SKU_PREFIX + item_name)
        ships = raw["Lineitem requires shipping"].astype("str").str.strip().str.lower()

        latest_file = raw["file_index"].groupby(name).transform("max")
        unreadable = [
            (f"unparseable_{c.lower().replace(' ', '_')}", ~blank(order[c]) & amounts[c].isna())
            for c in amounts
        ]
        reason = null_str(raw.index)
        rules: list[tuple[str, pd.Series]] = [
            ("missing_order_name", name.isna()),
            ("order_in_a_later_file", raw["file_index"] < latest_file),
            ("missing_email", cust.isna()),
            ("unparseable_created_at", created.isna()),
            ("unparseable_cancelled_at", ~blank(order["Cancelled at"]) & cancelled_at.isna()),
            ("created_at_outside_2000_to_now", outside_contract_time(created, now)),
            ("cancelled_at_outside_2000_to_now", outside_contract_time(cancelled_at, now)),
            ("fulfilled_at_outside_2000_to_now", outside_contract_time(fulfilled_at, now)),
            ("missing_currency", cur.isna()),
            ("currency_not_reporting_currency", cur != reporting),
            ("missing_shipping_country", blank(order["Shipping Country"])),
            ("country_not_mappable", country.isna()),
            ("unparseable_subtotal", subtotal.isna()),
            *unreadable,
            ("unparseable_duties", ~blank(order["Duties"]) & duties.isna()),
            ("negative_amount", (subtotal < 0) | pd.concat(amounts, axis=1).lt(0).any(axis=1)),
            ("line_item_not_shipped", ships.isin(["false", "no"])),
            ("missing_lineitem_sku_and_name", sku.isna()),
            ("unparseable_lineitem_quantity", qty.isna() | (qty % 1 != 0)),
            ("non_positive_lineitem_quantity", qty < 1),
            ("unparseable_lineitem_price", price.isna()),
            ("negative_lineitem_price", price < 0),
        ]
        for rule, mask in rules:
            reason = first_reason(reason, mask, rule)
        keep = reason.isna()

    with log.step("shopify: orders, lines, cases, shipments"):
        k = keep
        df = pd.DataFrame(
            {
                "order_id": name[k],
                "customer_id": cust[k],
                "order_ts": created[k],
                "destination_country": country[k],
                "carrier_id": carrier_ids(order["Shipping Method"][k]),
                "carrier_name": order["Shipping Method"][k],
                "order_value": subtotal[k],
                "shipping_fee": amounts["Shipping"][k].fillna(0.0),
                "discount_value": amounts["Discount Amount"][k].fillna(0.0),
                "refunded_amount": amounts["Refunded Amount"][k].fillna(0.0),
                "duties": duties[k],
                "payment_method": order["Payment Method"][k].astype("str").str.strip().str.lower(),
                "financial_status": order["Financial Status"][k].astype("str").str.lower(),
                "fulfillment_status": order["Fulfillment Status"][k].astype("str").str.lower(),
                "source": order["Source"][k].astype("str"),
                "cancelled_ts": cancelled_at[k],
                "fulfilled_ts": fulfilled_at[k],
                "sku_id": sku[k],
                "quantity": qty[k],
                "unit_price": price[k],
                "compare_at": money(raw["Lineitem compare at price"])[k],
                "vendor": raw["Vendor"][k]
                .astype("str")
                .str.strip()
                .where(~blank(raw["Vendor"][k])),
                "item_name": item_name[k],
            }
        )
        orders = (
            df.drop(
                columns=["sku_id", "quantity", "unit_price", "compare_at", "vendor", "item_name"]
            )
            .drop_duplicates("order_id")
            .sort_values("order_id", kind="stable")
            .reset_index(drop=True)
        )
        orders["channel"] = "shopify"
        orders["incoterm"] = pd.Series(None, index=orders.index, dtype="str").mask(
            orders["duties"] > 0, "DDP"
        )
        orders["promised_delivery_days"] = pd.array([pd.NA] * len(orders), dtype="Int64")

        cases, shipments = _cases_and_shipments(orders, refund_lag_days, now)
        order_lines = pd.DataFrame(
            {
                "order_id": df["order_id"],
                "sku_id": df["sku_id"],
                "quantity": df["quantity"].astype("int64"),
                "unit_price": df["unit_price"].astype("float64"),
            }
        ).reset_index(drop=True)

    with log.step("shopify: customers, SKUs, countries, carriers"):
        first = orders.sort_values(["order_ts", "order_id"], kind="stable").drop_duplicates(
            "customer_id"
        )
        customers = pd.DataFrame(
            {
                "customer_id": first["customer_id"],
                "first_seen_ts": first["order_ts"],
                "country_code": first["destination_country"],
                "segment": null_str(first.index),
            }
        ).sort_values("customer_id", ignore_index=True)
        skus = _skus(df)
        countries = build_countries(
            orders["destination_country"], reference, currency=reporting, domestic=shop_country
        )
        carriers = carriers_table(orders["carrier_name"], orders["carrier_id"])
        orders = orders.drop(columns=["carrier_name", "cancelled_ts", "fulfilled_ts"])

    refused = without_personal(raw.loc[~keep].drop(columns="file_index"))
    refused = refused.assign(customer_id=cust[~keep], reason=reason[~keep])
    tables = {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
        "duty_rules": build_duty_rules(countries, duty_rules, currency=reporting),
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases,
        "shipments": shipments,
    }
    rate, n_mature = case_rate(orders, cases, label_window_days)
    by_type = cases["case_type"].value_counts()
    figures: dict[str, float | int | str] = {
        "input rows (line items)": n_in,
        "order lines": len(order_lines),
        "refused rows": int((~keep).sum()),
        "reporting currency": reporting,
        "orders": len(orders),
        "customers": len(customers),
        "skus": len(skus),
        "skus without a SKU (keyed by name)": int(
            skus["sku_id"].str.startswith(NO_SKU_PREFIX).sum()
        ),
        "cases: refund (cancelled or unfulfilled)": int(by_type.get("refund", 0)),
        "cases: return (refunded after fulfilment)": int(by_type.get("return", 0)),
        "destination countries": int(orders["destination_country"].nunique()),
        "mature orders": n_mature,
        f"case rate ({label_window_days} d, mature orders)": rate,
    }
    return ImportResult(tables, {SOURCE: refused}, {SOURCE: n_in}, figures)


@dataclass(frozen=True)
class ShopifyConfig:
    files: tuple[Path, ...]
    out: Path
    salt: str | None = field(default=None, repr=False)
    currency: str | None = None
    shop_country: str | None = None
    refund_lag_days: int = 14
    label_window_days: int = LABEL_WINDOW_DAYS


def import_shopify(cfg: ShopifyConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the files, build the tables, write ``cfg.out`` (+ ``refused/``)."""
    salt = resolve_salt(cfg.salt, "shopify")
    now = clock()
    with log.step(f"reading {len(cfg.files)} Shopify order export(s)"):
        raw = read_shopify(list(cfg.files))
    result = shopify_tables(
        raw,
        salt=salt,
        currency=cfg.currency,
        shop_country=shop_country_code(cfg.shop_country, "shopify"),
        refund_lag_days=cfg.refund_lag_days,
        reference=reference_countries(),
        duty_rules=load_duty_rules(),
        label_window_days=cfg.label_window_days,
        log=log,
        now=now,
    )
    write_result(result, cfg.out, log, now=now)
    return result
