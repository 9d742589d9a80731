"""Amazon Seller Central reports: All Orders, FBA customer returns, merchant-fulfilled returns.

``read_amazon`` reads the tab-separated reports; ``amazon_tables`` is the pure transformation;
``import_amazon`` reads, transforms and writes. Report layouts read (as the Selling Partner API
report types publish them, 2024-2025): ``GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL``,
``GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA``, ``GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE``.
Rules, the reason-code mapping table and what the reports cannot tell: docs/importers.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

ORDERS_REQUIRED = (
    "amazon-order-id",
    "purchase-date",
    "last-updated-date",
    "order-status",
    "fulfillment-channel",
    "sales-channel",
    "ship-service-level",
    "sku",
    "quantity",
    "currency",
    "item-price",
    "shipping-price",
    "item-promotion-discount",
    "ship-promotion-discount",
    "ship-country",
)
ORDERS_OPTIONAL = ("product-name", "asin", "item-status", "is-business-order", "buyer-email")
# The buyer's identity for the customer key, first present wins. The All Orders report of most
# accounts has none: then each order is its own customer (documented).
BUYER_COLUMNS = ("buyer-email", "buyer-id")
FBA_COLUMNS = {
    "return-date": ("return-date",),
    "order-id": ("order-id", "amazon-order-id"),
    "sku": ("sku",),
    "quantity": ("quantity",),
    "reason": ("reason",),
}
FBA_OPTIONAL = ("detailed-disposition", "status", "license-plate-number", "asin", "fnsku")
MFN_COLUMNS = {
    "Order ID": ("Order ID",),
    "Return request date": ("Return request date",),
    "Return Reason": ("Return Reason",),
    "Merchant SKU": ("Merchant SKU",),
}
MFN_OPTIONAL = (
    "Amazon RMA ID",
    "Return quantity",
    "Refunded Amount",
    "A-to-Z Claim",
    "SafeT claim id",
    "SafeT claim state",
    "Return request status",
)
RETURN_DATE_FORMATS = ("%d-%b-%Y", "%d-%m-%Y", "%m/%d/%Y", "%d/%m/%Y")
CANCELLED = "cancelled"

# Return reason code (upper case; "CR-" / "AMZ-PG-" prefixes dropped, "-" read as "_") ->
# case_type. Codes starting UNDELIVERABLE_ are `not_received`; any other code is `other`.
REASON_CASE_TYPES: dict[str, str] = {
    # fit, style, changed mind: the buyer sends it back
    "APPAREL_TOO_SMALL": "return",
    "APPAREL_TOO_LARGE": "return",
    "APPAREL_STYLE": "return",
    "TOO_SMALL": "return",
    "TOO_LARGE": "return",
    "APP_TOO_SMALL": "return",
    "APP_TOO_LARGE": "return",
    "STYLE": "return",
    "UNWANTED_ITEM": "return",
    "NO_REASON_GIVEN": "return",
    "FOUND_BETTER_PRICE": "return",
    "ORDERED_WRONG_ITEM": "return",  # the buyer's mistake, not the seller's
    "NOT_COMPATIBLE": "return",
    "UNAUTHORIZED_PURCHASE": "return",
    "MISSED_ESTIMATED_DELIVERY": "return",  # it arrived, late, and came back
    # damaged in transit or in the warehouse
    "DAMAGED_BY_CARRIER": "damaged",
    "DAMAGED_BY_FC": "damaged",
    "DAMAGED": "damaged",
    # the product is not what the listing promised
    "NOT_AS_DESCRIBED": "not_as_described",
    "DEFECTIVE": "not_as_described",
    "QUALITY_UNACCEPTABLE": "not_as_described",
    "MISSING_PARTS": "not_as_described",
    "PART_NOT_COMPATIBLE": "not_as_described",
    # the seller sent something else
    "WRONG_ITEM": "wrong_item",
    "DIFFERENT_PRODUCT": "wrong_item",
    "EXTRA_ITEM": "wrong_item",
    "NEVER_ARRIVED": "not_received",
}
UNDELIVERABLE_PREFIX = "UNDELIVERABLE_"
# ship-service-level -> service level (other values: the shared name rules, else standard)
SHIP_SERVICE_LEVELS = {
    "standard": "standard",
    "scheduled": "standard",
    "expedited": "express",
    "secondday": "express",
    "nextday": "express",
    "sameday": "express",
    "priority": "express",
    "freeeconomy": "economy",
    "economy": "economy",
}
FULFILLMENT = {"amazon": "afn", "afn": "afn", "merchant": "mfn", "mfn": "mfn"}


def reason_case_types(codes: pd.Series) -> pd.Series:
    """``case_type`` per return reason code through ``REASON_CASE_TYPES`` (unknown -> other)."""
    norm = codes.astype("str").str.strip().str.upper().where(~blank(codes))
    norm = norm.str.replace(r"^(CR|AMZ-PG)-", "", regex=True).str.replace("-", "_", regex=False)
    out = norm.map(REASON_CASE_TYPES)
    out = out.mask(
        out.isna() & norm.str.startswith(UNDELIVERABLE_PREFIX).fillna(False), "not_received"
    )
    return out.fillna("other").astype("str")


def _read(path: Path, spec: Mapping[str, Sequence[str]], optional: tuple[str, ...]) -> pd.DataFrame:
    df = read_table_file(Path(path), encoding="utf-8-sig", sep="\t")
    cols = canonical_columns(df, spec, str(path))
    df = df.rename(columns={v: k for k, v in cols.items()})
    for col in optional:
        if col not in df.columns:
            df[col] = null_str(df.index)
    return df.assign(source_file=Path(path).name, source_row=np.arange(len(df), dtype="int64"))


def read_amazon(
    orders: list[Path] | tuple[Path, ...],
    fba_returns: Path | None = None,
    mfn_returns: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """The All Orders report(s) stacked (``file_index`` = position), and the returns reports."""
    if not orders:
        raise ImporterError("amazon: --orders: no All Orders report given")
    spec = {c: (c,) for c in ORDERS_REQUIRED}
    parts = [_read(p, spec, ORDERS_OPTIONAL).assign(file_index=i) for i, p in enumerate(orders)]
    fba = _read(fba_returns, FBA_COLUMNS, FBA_OPTIONAL) if fba_returns else None
    mfn = _read(mfn_returns, MFN_COLUMNS, MFN_OPTIONAL) if mfn_returns else None
    return pd.concat(parts, ignore_index=True), fba, mfn


def _orders_part(
    raw: pd.DataFrame, *, salt: str, currency: str | None, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.Series, str, str]:
    """Per row: parsed fields, the refusal reason, the reporting currency, the buyer column."""
    oid = raw["amazon-order-id"].astype("str").str.strip().where(~blank(raw["amazon-order-id"]))
    buyer_col = next((c for c in BUYER_COLUMNS if c in raw.columns and raw[c].notna().any()), "")
    if buyer_col:
        cust = customer_keys(raw[buyer_col], salt)
    else:  # no buyer column: one pseudonymous customer per order
        cust = customer_keys(oid, salt, prefix="order_")
    status = raw["order-status"].astype("str").str.strip().str.lower()
    cur = raw["currency"].astype("str").str.strip().str.upper().where(~blank(raw["currency"]))
    is_cancel = status == CANCELLED
    reporting = reporting_currency(cur, currency, "amazon")
    country = destination_codes(raw["ship-country"])
    purchase = parse_utc(raw["purchase-date"])
    updated = parse_utc(raw["last-updated-date"])
    qty = pd.to_numeric(raw["quantity"], errors="coerce")
    price = money(raw["item-price"])
    ship = money(raw["shipping-price"]).fillna(0.0)
    promo = money(raw["item-promotion-discount"]).fillna(0.0).abs()
    ship_promo = money(raw["ship-promotion-discount"]).fillna(0.0).abs()
    sku = raw["sku"].astype("str").str.strip().where(~blank(raw["sku"]))
    sku = sku.fillna("asin:" + raw["asin"].astype("str").str.strip().where(~blank(raw["asin"])))
    latest_file = raw["file_index"].groupby(oid).transform("max")
    # a cancelled item has quantity 0 and no price: its order is kept, without a line
    cancelled_item = is_cancel & ((qty == 0) | price.isna())
    parsed = pd.DataFrame(
        {
            "order_id": oid,
            "customer_id": cust,
            "order_ts": purchase,
            "updated_ts": updated,
            "status": status,
            "currency": cur,
            "destination_country": country,
            "fulfillment": raw["fulfillment-channel"].astype("str").str.strip().str.lower(),
            "sales_channel": raw["sales-channel"].astype("str").str.strip(),
            "service": raw["ship-service-level"].astype("str").str.strip(),
            "business": raw["is-business-order"].astype("str").str.strip().str.lower(),
            "sku_id": sku,
            "quantity": qty,
            "price": price,
            "shipping": (ship - ship_promo).clip(lower=0.0),
            "discount": promo + ship_promo,
            "product_name": raw["product-name"].astype("str").str.strip(),
            "cancelled_item": cancelled_item,
        }
    )
    reason = null_str(raw.index)
    rules: list[tuple[str, pd.Series]] = [
        ("missing_amazon_order_id", oid.isna()),
        ("order_in_a_later_report", raw["file_index"] < latest_file),
        ("unparseable_purchase_date", purchase.isna()),
        ("purchase_date_outside_2000_to_now", outside_contract_time(purchase, now)),
        ("last_updated_date_outside_2000_to_now", outside_contract_time(updated, now)),
        ("missing_currency", cur.isna() & ~cancelled_item),
        ("currency_not_reporting_currency", cur.notna() & (cur != reporting)),
        ("country_not_mappable", country.isna()),
        ("missing_sku_and_asin", sku.isna() & ~cancelled_item),
        ("unparseable_quantity", (qty.isna() | (qty % 1 != 0))),
        ("non_positive_quantity", (qty < 1) & ~cancelled_item),
        ("missing_item_price", price.isna() & ~cancelled_item),
        ("negative_item_price", price < 0),
    ]
    for name, mask in rules:
        reason = first_reason(reason, mask, name)
    return parsed, reason, reporting, buyer_col


def _case_rows(
    order_ts: pd.Series,
    order_id: pd.Series,
    opened: pd.Series,
    duplicate: pd.Series,
    reported: pd.Series,
    now: pd.Timestamp,
) -> pd.Series:
    """Refusal reasons of returns-report rows (first rule wins)."""
    ts = order_id.map(order_ts)
    reason = null_str(order_id.index)
    in_report = order_id.isin(reported)
    rules = [
        ("missing_order_id", order_id.isna()),
        ("order_not_in_orders_report", order_id.notna() & ~in_report),
        ("order_refused_see_orders_reasons", in_report & ts.isna()),
        ("unparseable_return_date", opened.isna()),
        ("return_date_outside_2000_to_now", outside_contract_time(opened, now)),
        ("return_date_before_purchase_date", opened < ts),
        ("duplicate_return_row", duplicate),
    ]
    for name, mask in rules:
        reason = first_reason(reason, mask, name)
    return reason


def _orders_and_lines(p: pd.DataFrame, keep: pd.Series) -> tuple[pd.DataFrame, ...]:
    """Orders (fields from the first kept row, totals over its items) and the order lines."""
    kept = p[keep]
    # the order's own fields come from its first kept row
    orders = kept.drop_duplicates("order_id").sort_values("order_id", kind="stable")
    lines = kept[~kept["cancelled_item"]]
    totals = lines.groupby("order_id").agg(
        order_value=("price", "sum"),
        item_discount=("discount", "sum"),
        shipping_fee=("shipping", "sum"),
    )
    orders = orders.drop(columns=["sku_id", "quantity", "price", "shipping", "discount"])
    orders = orders.join(totals, on="order_id")
    orders["order_value"] = (
        orders["order_value"].fillna(0.0) - orders["item_discount"].fillna(0.0)
    ).clip(lower=0.0)
    orders["discount_value"] = orders.pop("item_discount").fillna(0.0)
    orders["shipping_fee"] = orders["shipping_fee"].fillna(0.0)
    ful = orders["fulfillment"].map(FULFILLMENT).fillna("other")
    level = orders["service"].str.lower().str.replace(r"[^a-z]", "", regex=True)
    orders["carrier_id"] = ("amazon_" + ful + "_" + level).astype("str")
    orders["channel"] = "amazon"
    orders["incoterm"] = null_str(orders.index)
    orders["payment_method"] = null_str(orders.index)
    orders["promised_delivery_days"] = pd.array([pd.NA] * len(orders), dtype="Int64")
    orders = orders.rename(columns={"status": "order_status"}).reset_index(drop=True)
    order_lines = pd.DataFrame(
        {
            "order_id": lines["order_id"],
            "sku_id": lines["sku_id"],
            "quantity": lines["quantity"].astype("int64"),
            # item-price is the price of the row's whole quantity
            "unit_price": (lines["price"] / lines["quantity"]).astype("float64"),
        }
    ).reset_index(drop=True)
    return orders, lines, order_lines


def _fba_cases(
    fba_raw: pd.DataFrame, order_ts: pd.Series, reported: pd.Series, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """FBA customer returns -> (cases, refused rows, rows with an unknown reason code)."""
    parts: list[pd.DataFrame] = []
    oid = fba_raw["order-id"].astype("str").str.strip().where(~blank(fba_raw["order-id"]))
    opened = parse_utc(fba_raw["return-date"], *RETURN_DATE_FORMATS)
    key = (
        oid.fillna("")
        + "\x1f"
        + fba_raw["sku"].astype("str").fillna("")
        + "\x1f"
        + fba_raw["return-date"].astype("str").fillna("")
        + "\x1f"
        + fba_raw["license-plate-number"].astype("str").fillna("")
    )
    r = _case_rows(order_ts, oid, opened, key.duplicated(), reported, now)
    ok = r.isna()
    ctype = reason_case_types(fba_raw["reason"])
    seq = oid[ok].groupby(oid[ok]).cumcount() + 1
    parts.append(
        pd.DataFrame(
            {
                "case_id": "fba:" + oid[ok] + ":" + seq.astype("str"),
                "order_id": oid[ok],
                "opened_ts": opened[ok],
                "case_type": ctype[ok],
                "sku_id": fba_raw["sku"][ok].astype("str").str.strip(),
                "amount": np.nan,
                "reason_code": fba_raw["reason"][ok].astype("str"),
                "source": "fba_returns",
            }
        )
    )
    unknown = int(((ctype == "other") & ok).sum())
    refused = without_personal(fba_raw[~ok]).assign(reason=r[~ok])
    return pd.concat(parts, ignore_index=True), refused, unknown


def _mfn_cases(
    mfn_raw: pd.DataFrame, order_ts: pd.Series, reported: pd.Series, now: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Merchant-fulfilled returns (+ A-to-Z and SafeT claims) -> (cases, refused, unknown)."""
    parts: list[pd.DataFrame] = []
    oid = mfn_raw["Order ID"].astype("str").str.strip().where(~blank(mfn_raw["Order ID"]))
    opened = parse_utc(mfn_raw["Return request date"], *RETURN_DATE_FORMATS)
    rma = mfn_raw["Amazon RMA ID"].astype("str").str.strip().where(~blank(mfn_raw["Amazon RMA ID"]))
    key = oid.fillna("") + "\x1f" + rma.fillna(mfn_raw["Merchant SKU"].astype("str")).fillna("")
    r = _case_rows(order_ts, oid, opened, key.duplicated(), reported, now)
    ok = r.isna()
    ctype = reason_case_types(mfn_raw["Return Reason"])
    seq = oid[ok].groupby(oid[ok]).cumcount() + 1
    base = pd.DataFrame(
        {
            "order_id": oid[ok],
            "opened_ts": opened[ok],
            "sku_id": mfn_raw["Merchant SKU"][ok].astype("str").str.strip(),
            "reason_code": mfn_raw["Return Reason"][ok].astype("str"),
        }
    )
    parts.append(
        base.assign(
            case_id="mfn:" + oid[ok] + ":" + rma[ok].fillna(seq.astype("str")),
            case_type=ctype[ok],
            amount=money(mfn_raw["Refunded Amount"])[ok].abs(),
            source="mfn_returns",
        )
    )
    atoz = ok & mfn_raw["A-to-Z Claim"].astype("str").str.strip().str.upper().isin(
        ["Y", "YES", "TRUE"]
    )
    first_atoz = atoz & ~oid.where(atoz).duplicated()
    parts.append(
        base[first_atoz[ok]].assign(
            case_id="atoz:" + oid[first_atoz],
            case_type=ctype[first_atoz],
            amount=np.nan,
            source="a_to_z_claim",
        )
    )
    safet_id = (
        mfn_raw["SafeT claim id"].astype("str").str.strip().where(~blank(mfn_raw["SafeT claim id"]))
    )
    safet = ok & safet_id.notna() & ~safet_id.duplicated()
    parts.append(
        base[safet[ok]].assign(
            case_id="safet:" + safet_id[safet],
            case_type="other",
            amount=np.nan,
            source="safet_claim",
        )
    )
    unknown = int(((ctype == "other") & ok).sum())
    refused = without_personal(mfn_raw[~ok]).assign(reason=r[~ok])
    return pd.concat(parts, ignore_index=True), refused, unknown


def amazon_tables(
    orders_raw: pd.DataFrame,
    fba_raw: pd.DataFrame | None = None,
    mfn_raw: pd.DataFrame | None = None,
    *,
    salt: str,
    currency: str | None = None,
    shop_country: str | None = None,
    reference: pd.DataFrame | None = None,
    duty_rules: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """Contract tables from the All Orders rows and the optional returns reports. ``now``: the
    import's clock (``clock``); a row dated outside 2000..now is refused."""
    now = clock(now)
    with log.step("amazon: All Orders rows, refusal rules"):
        p, reason, reporting, buyer_col = _orders_part(
            orders_raw, salt=salt, currency=currency, now=now
        )
        keep = reason.isna()
        orders, lines, order_lines = _orders_and_lines(p, keep)

    with log.step("amazon: cases from cancellations and the returns reports"):
        order_ts = orders.set_index("order_id")["order_ts"]
        cancelled = orders[orders["order_status"] == CANCELLED]
        cancel_cases = pd.DataFrame(
            {
                "case_id": "amazon:" + cancelled["order_id"] + ":cancel",
                "order_id": cancelled["order_id"],
                "opened_ts": cancelled["updated_ts"].where(
                    cancelled["updated_ts"] >= cancelled["order_ts"], cancelled["order_ts"]
                ),
                "case_type": "refund",
                "sku_id": null_str(cancelled.index),
                "amount": np.nan,
                "reason_code": null_str(cancelled.index),
                "source": "all_orders",
            }
        )
        parts = [cancel_cases]
        refused: dict[str, pd.DataFrame] = {}
        n_input: dict[str, int] = {}
        unknown_codes = 0
        for stem, frame, build in (
            ("amazon_fba_returns", fba_raw, _fba_cases),
            ("amazon_mfn_returns", mfn_raw, _mfn_cases),
        ):
            if frame is None:
                continue
            found, refused[stem], unknown = build(frame, order_ts, p["order_id"], now)
            parts.append(found)
            unknown_codes += unknown
            n_input[stem] = len(frame)
        cases = pd.concat(parts, ignore_index=True)[
            [
                "case_id",
                "order_id",
                "opened_ts",
                "case_type",
                "sku_id",
                "amount",
                "reason_code",
                "source",
            ]
        ]
        cases["amount"] = cases["amount"].astype("float64")

    with log.step("amazon: customers, SKUs, countries, carriers"):
        first = orders.sort_values(["order_ts", "order_id"], kind="stable").drop_duplicates(
            "customer_id"
        )
        customers = pd.DataFrame(
            {
                "customer_id": first["customer_id"],
                "first_seen_ts": first["order_ts"],
                "country_code": first["destination_country"],
                "segment": first["business"].map({"true": "b2b", "false": "b2c"}).astype("str"),
            }
        ).sort_values("customer_id", ignore_index=True)
        sold = lines.assign(unit=lines["price"] / lines["quantity"])
        skus = sold.groupby("sku_id", sort=True).agg(list_price=("unit", "median")).reset_index()
        skus["product_name"] = (
            skus["sku_id"].map(mode_by(sold, "sku_id", "product_name")).astype("str")
        )
        skus["category"] = "unknown"  # the reports carry no product category
        for col in ("product_id", "brand", "supplier_id", "size", "color", "listing_languages"):
            skus[col] = null_str(skus.index)
        skus["weight_g"] = np.nan
        skus["n_images"] = pd.array([pd.NA] * len(skus), dtype="Int64")
        skus["has_size_chart"] = pd.array([pd.NA] * len(skus), dtype="boolean")
        # a returned SKU the orders report never sold stays on the case as text only
        cases["sku_id"] = cases["sku_id"].where(cases["sku_id"].isin(skus["sku_id"]))
        countries = build_countries(
            orders["destination_country"], reference, currency=reporting, domestic=shop_country
        )
        svc = orders.drop_duplicates("carrier_id")
        level = svc["service"].str.lower().str.replace(r"[^a-z]", "", regex=True)
        carriers = pd.DataFrame(
            {
                "carrier_id": svc["carrier_id"],
                "carrier_name": "Amazon "
                + svc["fulfillment"].map(FULFILLMENT).fillna("other").str.upper()
                + " "
                + svc["service"],
                "service_level": level.map(SHIP_SERVICE_LEVELS).fillna("standard").astype("str"),
                "tracked": pd.array([pd.NA] * len(svc), dtype="boolean"),
            }
        ).sort_values("carrier_id", ignore_index=True)
        orders = orders.drop(
            columns=[
                "updated_ts",
                "fulfillment",
                "service",
                "business",
                "product_name",
                "cancelled_item",
            ]
        )

    orders_refused = without_personal(orders_raw[~keep].drop(columns="file_index"))
    refused = {
        "amazon_orders": orders_refused.assign(
            customer_id=p["customer_id"][~keep], reason=reason[~keep]
        ),
        **refused,
    }
    n_input = {"amazon_orders": len(orders_raw), **n_input}
    tables = {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
        "duty_rules": build_duty_rules(countries, duty_rules, currency=reporting),
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases,
    }
    rate, n_mature = case_rate(orders, cases, label_window_days)
    by_type = cases["case_type"].value_counts()
    figures: dict[str, float | int | str] = {
        "input All Orders rows": len(orders_raw),
        "order lines": len(order_lines),
        "cancelled item rows (no line)": int((keep & p["cancelled_item"]).sum()),
        "refused All Orders rows": int((~keep).sum()),
        "reporting currency": reporting,
        "customer key from": buyer_col or "order id (no buyer column)",
        "orders": len(orders),
        "cancelled orders": int((orders["order_status"] == CANCELLED).sum()),
        "customers": len(customers),
        "skus": len(skus),
        **{f"cases: {t}": int(n) for t, n in by_type.sort_index().items()},
        "reason codes unknown (-> other)": unknown_codes,
        "destination countries": int(orders["destination_country"].nunique()),
        "mature orders": n_mature,
        f"case rate ({label_window_days} d, mature orders)": rate,
    }
    return ImportResult(tables, refused, n_input, figures)


@dataclass(frozen=True)
class AmazonConfig:
    orders: tuple[Path, ...]
    out: Path
    fba_returns: Path | None = None
    mfn_returns: Path | None = None
    salt: str | None = field(default=None, repr=False)
    currency: str | None = None
    shop_country: str | None = None
    label_window_days: int = LABEL_WINDOW_DAYS


def import_amazon(cfg: AmazonConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the reports, build the tables, write ``cfg.out`` (+ ``refused/``)."""
    salt = resolve_salt(cfg.salt, "amazon")
    now = clock()
    with log.step("reading the Amazon reports"):
        orders, fba, mfn = read_amazon(list(cfg.orders), cfg.fba_returns, cfg.mfn_returns)
    result = amazon_tables(
        orders,
        fba,
        mfn,
        salt=salt,
        currency=cfg.currency,
        shop_country=shop_country_code(cfg.shop_country, "amazon"),
        reference=reference_countries(),
        duty_rules=load_duty_rules(),
        label_window_days=cfg.label_window_days,
        log=log,
        now=now,
    )
    write_result(result, cfg.out, log, now=now)
    return result
