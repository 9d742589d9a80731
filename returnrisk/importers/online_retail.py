"""UCI Online Retail / Online Retail II: a UK gift shop's invoices (2009-2011).

``read_online_retail`` stacks the files; ``online_retail_tables`` is the pure transformation;
``import_online_retail`` reads, transforms and writes. Rules and assumptions: docs/importers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.importers.common import (
    ImporterError,
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

ONLINE_RETAIL_COLUMNS = {  # canonical (Online Retail II) name -> accepted spellings
    "Invoice": ("Invoice", "InvoiceNo"),
    "StockCode": ("StockCode",),
    "Description": ("Description",),
    "Quantity": ("Quantity",),
    "InvoiceDate": ("InvoiceDate",),
    "Price": ("Price", "UnitPrice"),
    "Customer ID": ("Customer ID", "CustomerID"),
    "Country": ("Country",),
}
SHOP_TIMEZONE = "Europe/London"
SHOP_COUNTRY = "GB"
SHOP_CURRENCY = "GBP"
# 2009-2011: the UK was in the EU customs union; parcels to these countries owed no import duty.
_EU_2010 = "AT BE BG CY CZ DE DK EE ES FI FR GR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
EU_MEMBERS_2010 = frozenset(_EU_2010.split())
# A product's stock code: up to 4 letters, at least 4 digits, up to 3 letters (85123A, 15056BL,
# DCGS0058, SP1002). Everything else is a service code (POST, DOT, M, D, S, B, C2, PADS,
# BANK CHARGES, AMAZONFEE, CRUK, ADJUST2, gift_0001_20, ...). TEST codes are test products.
PRODUCT_CODE = r"[A-Z]{0,4}\d{4,}[A-Z]{0,3}"
POSTAGE_DESCRIPTION = r"POSTAGE|CARRIAGE|DELIVERY"
UNKNOWN_CARRIER = "unknown"
# Coarse category from the description: first matching rule wins, else "other".
CATEGORY_RULES: tuple[tuple[str, str], ...] = (
    ("christmas", r"CHRISTMAS|XMAS|ADVENT|SANTA|REINDEER|SNOWFLAKE|BAUBLE"),
    ("bags", r"\bBAGS?\b|TOTE|SHOPPER|PURSE|RUCKSACK|BACKPACK"),
    ("lighting_candles", r"CANDLE|T-LIGHT|TEA ?LIGHT|LANTERN|\bLIGHTS?\b|\bLAMP|NIGHT LIGHT"),
    (
        "kitchen_dining",
        r"\bMUGS?\b|\bCUPS?\b|SAUCER|PLATE|BOWL|TEAPOT|\bTEA\b|CAKE|BAKING|\bJAR|LUNCH|"
        r"\bTINS?\b|SPOON|NAPKIN|KITCHEN|BOTTLE|CUTLERY|BEAKER|TRAY|COASTER|EGG|TUMBLER|"
        r"RECIPE|JUG|GLASS",
    ),
    (
        "stationery_wrap",
        r"\bCARDS?\b|WRAP|PAPER|NOTEBOOK|\bPENS?\b|PENCIL|STICKER|\bTAPE\b|ENVELOPE|"
        r"\bBOOK|CALENDAR|DIARY|CRAYON|CHALK|RIBBON|GIFT BOX",
    ),
    (
        "toys_games",
        r"\bTOYS?\b|GAME|DOLL|PUZZLE|PLAYHOUSE|SKIPPING|SPACEBOY|JIGSAW|DOMINO|KIT\b|"
        r"TEDDY|PARTY|BALLOON|BUNTING",
    ),
    (
        "jewellery_accessories",
        r"NECKLACE|EARRING|BRACELET|\bRINGS?\b|HAIR|\bCLIPS?\b|BROOCH|CHARM|BEAD|"
        r"UMBRELLA|\bKEY ?RING|SCARF|GLOVES?\b|HAT\b|WALLET|MIRROR",
    ),
    ("garden_outdoor", r"GARDEN|PLANT|WATERING|BIRD|\bPOTS?\b|FLOWER|HERB|PICNIC"),
    (
        "textiles",
        r"APRON|TOWEL|CUSHION|BLANKET|HOT WATER BOTTLE|THROW|QUILT|DOORMAT|\bMAT\b|TEA TOWEL",
    ),
    (
        "home_decor",
        r"HEART|\bSIGN\b|DECORATION|ORNAMENT|HANGING|WREATH|FRAME|CLOCK|VASE|"
        r"HOOK|DRAWER|BOX|STORAGE|CABINET|DOORSTOP|PLAQUE|HOLDER|CHIME|BASKET|WICKER",
    ),
)
# A cancellation within this time of its order is a `refund` (most likely cancelled before
# dispatch, nothing to send back); a later one is a `return`.
REFUND_WITHIN = pd.Timedelta(hours=24)


def read_online_retail(paths: list[Path] | tuple[Path, ...]) -> pd.DataFrame:
    """All files stacked, with canonical column names (as text), ``source_file``, ``source_row``."""
    if not paths:
        raise ImporterError("online-retail: no input file given")
    parts = []
    for i, path in enumerate(paths):
        df = read_table_file(Path(path))
        cols = canonical_columns(df, ONLINE_RETAIL_COLUMNS, str(path))
        part = pd.DataFrame({canon: df[col] for canon, col in cols.items()})
        part["source_file"] = Path(path).name
        part["source_row"] = np.arange(len(df), dtype="int64")
        part["file_index"] = i
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _parse_shop_time(text: pd.Series) -> pd.Series:
    """Naive UK shop time (ISO, or the CSV's month-first ``12/1/2010 8:26``) -> UTC."""
    ts = pd.to_datetime(text, errors="coerce", format="ISO8601")
    retry = ts.isna() & text.notna()
    if retry.any():
        ts = ts.mask(retry, pd.to_datetime(text[retry], errors="coerce", format="%m/%d/%Y %H:%M"))
    local = ts.dt.tz_localize(SHOP_TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _category(descriptions: pd.Series) -> pd.Series:
    text = descriptions.fillna("").astype("str").str.upper()
    conditions = [text.str.contains(pattern, regex=True) for _, pattern in CATEGORY_RULES]
    return pd.Series(
        np.select(conditions, [name for name, _ in CATEGORY_RULES], default="other"),
        index=descriptions.index,
        dtype="str",
    )


def _parse_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """The raw text parsed, one column per field (same index as ``raw``)."""
    inv = raw["Invoice"].astype("str").str.strip().str.upper()
    code = raw["StockCode"].astype("str").str.strip().str.upper()
    desc = raw["Description"].astype("str").str.strip()
    cust = raw["Customer ID"].astype("str").str.strip().str.replace(r"\.0+$", "", regex=True)
    is_product = code.str.fullmatch(PRODUCT_CODE).fillna(False) & ~code.str.startswith("TEST")
    return pd.DataFrame(
        {
            "invoice": inv,
            "stock_code": code,
            "description": desc,
            "quantity": pd.to_numeric(raw["Quantity"], errors="coerce"),
            "price": pd.to_numeric(raw["Price"], errors="coerce"),
            "ts": _parse_shop_time(raw["InvoiceDate"].astype("str").str.strip()),
            "customer_id": cust.where(cust.notna() & (cust != "") & (cust.str.lower() != "nan")),
            "country": country_codes(raw["Country"]),
            "file_index": raw["file_index"],
            "is_cancel": inv.str.startswith("C"),
            "is_product": is_product,
            "is_postage": ~is_product
            & desc.str.upper().str.contains(POSTAGE_DESCRIPTION).fillna(False),
        }
    )


def _refusal_reasons(rows: pd.DataFrame, now: pd.Timestamp) -> pd.Series:
    """Each parsed row's first refusal reason (NaN: kept), before cancellation matching."""
    inv, qty, price, is_cancel = rows["invoice"], rows["quantity"], rows["price"], rows["is_cancel"]
    is_postage = rows["is_postage"]
    first_file = rows["file_index"].groupby(inv).transform("min")
    reason = pd.Series(np.nan, index=rows.index, dtype="str")
    rules: list[tuple[str, pd.Series]] = [
        ("duplicate_invoice_in_earlier_file", rows["file_index"] > first_file),
        ("unparseable_invoice_date", rows["ts"].isna()),
        ("invoice_date_outside_2000_to_now", outside_contract_time(rows["ts"], now)),
        ("unparseable_quantity", qty.isna() | (qty % 1 != 0)),
        ("unparseable_price", price.isna()),
        ("not_a_sales_or_cancellation_invoice", ~inv.str.fullmatch(r"C?\d+").fillna(False)),
        ("missing_customer_id", rows["customer_id"].isna()),
        ("postage_line_summed_into_shipping_fee", is_postage & ~is_cancel),
        ("postage_refund_line", is_postage & is_cancel),
        ("non_product_stock_code", ~rows["is_product"]),
        ("non_positive_price", price <= 0),
        ("zero_quantity", qty == 0),
        ("negative_quantity_on_sales_invoice", (qty < 0) & ~is_cancel),
        ("positive_quantity_on_cancellation", (qty > 0) & is_cancel),
        ("country_not_mappable", rows["country"].isna()),
    ]
    for name, mask in rules:
        reason = first_reason(reason, mask, name)
    return reason


def _sale_lines(rows: pd.DataFrame, reason: pd.Series) -> pd.DataFrame:
    """The kept sales-invoice rows as order lines (with ``ts``, customer, country, value)."""
    sale = reason.isna() & ~rows["is_cancel"]
    lines = pd.DataFrame(
        {
            "order_id": rows["invoice"][sale],
            "sku_id": rows["stock_code"][sale],
            "quantity": rows["quantity"][sale].astype("int64"),
            "unit_price": rows["price"][sale].astype("float64"),
            "ts": rows["ts"][sale],
            "customer_id": rows["customer_id"][sale],
            "country": rows["country"][sale],
        }
    )
    return lines.assign(value=lines["quantity"] * lines["unit_price"])


def _orders(lines: pd.DataFrame, rows: pd.DataFrame, reason: pd.Series) -> pd.DataFrame:
    """One row per invoice; the postage lines' sum is its shipping fee."""
    orders = (
        lines.groupby("order_id", sort=True)
        .agg(
            customer_id=("customer_id", "first"),
            order_ts=("ts", "min"),
            destination_country=("country", "first"),
            order_value=("value", "sum"),
        )
        .reset_index()
    )
    qty, price = rows["quantity"], rows["price"]
    postage = (reason == "postage_line_summed_into_shipping_fee") & (price > 0) & (qty > 0)
    fee = (qty[postage] * price[postage]).groupby(rows["invoice"][postage]).sum()
    orders["shipping_fee"] = orders["order_id"].map(fee).fillna(0.0).astype("float64")
    orders["channel"] = "own_site"
    orders["carrier_id"] = UNKNOWN_CARRIER
    for col in ("incoterm", "payment_method"):
        orders[col] = pd.Series(np.nan, index=orders.index, dtype="str")
    orders["discount_value"] = np.nan
    orders["promised_delivery_days"] = pd.array([pd.NA] * len(orders), dtype="Int64")
    return orders


def _match_cancellations(
    rows: pd.DataFrame, reason: pd.Series, lines: pd.DataFrame, orders: pd.DataFrame
) -> pd.DataFrame:
    """Each kept cancellation row (index: its row) with the latest earlier order of the same
    customer and SKU (``order_id`` NaN: none)."""
    cancel = reason.isna() & rows["is_cancel"]
    left = pd.DataFrame(
        {
            "row": rows.index[cancel],
            "customer_id": rows["customer_id"][cancel],
            "sku_id": rows["stock_code"][cancel],
            "opened_ts": rows["ts"][cancel],
        }
    ).sort_values(["opened_ts", "row"], kind="stable")
    order_ts = orders.set_index("order_id")["order_ts"]
    right = (
        lines[["order_id", "customer_id", "sku_id"]]
        .drop_duplicates()
        .assign(order_ts=lambda d: d["order_id"].map(order_ts))
        .sort_values(["order_ts", "order_id"], kind="stable")
    )
    return pd.merge_asof(
        left,
        right,
        left_on="opened_ts",
        right_on="order_ts",
        by=["customer_id", "sku_id"],
        direction="backward",
        allow_exact_matches=True,
    ).set_index("row")


def _cases(matched: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One case per matched cancellation line: a refund within ``REFUND_WITHIN``, else a return."""
    hit = matched.loc[matched["order_id"].notna()].sort_index()
    idx = hit.index
    cases = pd.DataFrame(
        {
            "order_id": hit["order_id"].astype("str"),
            "opened_ts": hit["opened_ts"],
            "sku_id": hit["sku_id"],
            "amount": (rows["quantity"][idx] * rows["price"][idx]).abs().astype("float64"),
            "cancellation_invoice": rows["invoice"][idx],
        }
    )
    cases["case_type"] = np.where(
        cases["opened_ts"] - hit["order_ts"] < REFUND_WITHIN, "refund", "return"
    )
    line_no = cases.groupby("cancellation_invoice").cumcount() + 1
    cases["case_id"] = cases["cancellation_invoice"] + ":" + line_no.astype("str")
    return cases.reset_index(drop=True)


def _customers(orders: pd.DataFrame) -> pd.DataFrame:
    """Each customer at their first order."""
    first = orders.sort_values(["order_ts", "order_id"]).drop_duplicates("customer_id")
    return pd.DataFrame(
        {
            "customer_id": first["customer_id"],
            "first_seen_ts": first["order_ts"],
            "country_code": first["destination_country"],
            "segment": pd.Series(np.nan, index=first.index, dtype="str"),
        }
    ).sort_values("customer_id", ignore_index=True)


def _skus(lines: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per sold SKU: median price, most frequent description, its category."""
    sold = pd.DataFrame(
        {"sku_id": lines["sku_id"], "description": rows["description"].loc[lines.index]}
    )
    top_desc = (
        sold.dropna()
        .value_counts(["sku_id", "description"])
        .reset_index()
        .sort_values(["sku_id", "count", "description"], ascending=[True, False, True])
        .drop_duplicates("sku_id")
        .set_index("sku_id")["description"]
    )
    skus = lines.groupby("sku_id", sort=True)["unit_price"].median().rename("list_price")
    skus = skus.reset_index()
    skus["description"] = skus["sku_id"].map(top_desc).astype("str")
    skus["category"] = _category(skus["description"])
    skus["product_id"] = pd.Series(np.nan, index=skus.index, dtype="str")
    for col in ("brand", "supplier_id", "size", "color"):
        skus[col] = pd.Series(np.nan, index=skus.index, dtype="str")
    skus["weight_g"] = np.nan
    skus["n_images"] = pd.array([pd.NA] * len(skus), dtype="Int64")
    skus["has_size_chart"] = pd.array([pd.NA] * len(skus), dtype="boolean")
    skus["listing_languages"] = "en"
    return skus


def _carriers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "carrier_id": [UNKNOWN_CARRIER],
            "carrier_name": ["unknown (not in the export)"],
            "service_level": ["standard"],
            "tracked": pd.array([pd.NA], dtype="boolean"),
        }
    )


def online_retail_tables(
    raw: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    duty_rules: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """Contract tables from stacked Online Retail rows (see ``read_online_retail``). ``now``:
    the import's clock (``clock``); a row dated outside 2000..now is refused."""
    n_in = len(raw)
    now = clock(now)
    with log.step("online-retail: parsing and applying the refusal rules"):
        rows = _parse_rows(raw)
        reason = _refusal_reasons(rows, now)

    with log.step("online-retail: orders, lines, customers, SKUs"):
        lines = _sale_lines(rows, reason)
        orders = _orders(lines, rows, reason)

    with log.step("online-retail: matching cancellations to earlier orders"):
        matched = _match_cancellations(rows, reason, lines, orders)
        no_match = pd.Series(False, index=raw.index)
        no_match[matched.index[matched["order_id"].isna()]] = True
        reason = first_reason(reason, no_match, "cancellation_without_earlier_order")
        cases = _cases(matched, rows)

    with log.step("online-retail: customers, SKUs, countries, carrier"):
        customers = _customers(orders)
        skus = _skus(lines, rows)
        countries = build_countries(
            orders["destination_country"],
            reference,
            currency=SHOP_CURRENCY,
            domestic=SHOP_COUNTRY,
            duty_free=EU_MEMBERS_2010,
        )
        carriers = _carriers()

    refused_rows = reason.notna()
    # assign the refused rows' reasons only: an empty frame would take the whole index of `reason`
    refused = raw.loc[refused_rows].drop(columns="file_index").assign(reason=reason[refused_rows])
    refused = refused.astype({c: "str" for c in ONLINE_RETAIL_COLUMNS})
    tables = {
        "orders": orders,
        "order_lines": lines[["order_id", "sku_id", "quantity", "unit_price"]].reset_index(
            drop=True
        ),
        "skus": skus,
        "countries": countries,
        "duty_rules": build_duty_rules(countries, duty_rules, currency=SHOP_CURRENCY),
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases[
            ["case_id", "order_id", "opened_ts", "case_type", "sku_id", "amount"]
        ],
    }
    rate, n_mature = case_rate(orders, cases, label_window_days)
    figures: dict[str, float | int] = {
        "input rows": n_in,
        "order lines": len(tables["order_lines"]),
        "cases (matched cancellation lines)": len(cases),
        "refused rows": len(refused),
        "orders": len(orders),
        "customers": len(customers),
        "skus": len(skus),
        "destination countries": int(orders["destination_country"].nunique()),
        "mature orders": n_mature,
        f"case rate ({label_window_days} d, mature orders)": rate,
    }
    return ImportResult(tables, {"online_retail": refused}, {"online_retail": n_in}, figures)


@dataclass(frozen=True)
class OnlineRetailConfig:
    files: tuple[Path, ...]
    out: Path
    label_window_days: int = LABEL_WINDOW_DAYS


def import_online_retail(cfg: OnlineRetailConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the files, build the tables, write ``cfg.out`` (+ ``refused/``)."""
    now = clock()
    with log.step(f"reading {len(cfg.files)} Online Retail file(s)"):
        raw = read_online_retail(list(cfg.files))
    result = online_retail_tables(
        raw,
        reference=reference_countries(),
        duty_rules=load_duty_rules(),
        label_window_days=cfg.label_window_days,
        log=log,
        now=now,
    )
    write_result(result, cfg.out, log, now=now)
    return result
