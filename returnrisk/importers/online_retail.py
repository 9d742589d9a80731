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


def online_retail_tables(
    raw: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    label_window_days: int = LABEL_WINDOW_DAYS,
    log: StepLog = QUIET,
) -> ImportResult:
    """Contract tables from stacked Online Retail rows (see ``read_online_retail``)."""
    n_in = len(raw)
    with log.step("online-retail: parsing and applying the refusal rules"):
        inv = raw["Invoice"].astype("str").str.strip().str.upper()
        code = raw["StockCode"].astype("str").str.strip().str.upper()
        desc = raw["Description"].astype("str").str.strip()
        qty = pd.to_numeric(raw["Quantity"], errors="coerce")
        price = pd.to_numeric(raw["Price"], errors="coerce")
        ts = _parse_shop_time(raw["InvoiceDate"].astype("str").str.strip())
        cust = raw["Customer ID"].astype("str").str.strip().str.replace(r"\.0+$", "", regex=True)
        cust = cust.where(cust.notna() & (cust != "") & (cust.str.lower() != "nan"))
        country = country_codes(raw["Country"])
        is_cancel = inv.str.startswith("C")
        is_product = code.str.fullmatch(PRODUCT_CODE).fillna(False) & ~code.str.startswith("TEST")
        is_postage = ~is_product & desc.str.upper().str.contains(POSTAGE_DESCRIPTION).fillna(False)

        first_file = raw["file_index"].groupby(inv).transform("min")
        reason = pd.Series(np.nan, index=raw.index, dtype="str")
        rules: list[tuple[str, pd.Series]] = [
            ("duplicate_invoice_in_earlier_file", raw["file_index"] > first_file),
            ("unparseable_invoice_date", ts.isna()),
            ("unparseable_quantity", qty.isna() | (qty % 1 != 0)),
            ("unparseable_price", price.isna()),
            ("not_a_sales_or_cancellation_invoice", ~inv.str.fullmatch(r"C?\d+").fillna(False)),
            ("missing_customer_id", cust.isna()),
            ("postage_line_summed_into_shipping_fee", is_postage & ~is_cancel),
            ("postage_refund_line", is_postage & is_cancel),
            ("non_product_stock_code", ~is_product),
            ("non_positive_price", price <= 0),
            ("zero_quantity", qty == 0),
            ("negative_quantity_on_sales_invoice", (qty < 0) & ~is_cancel),
            ("positive_quantity_on_cancellation", (qty > 0) & is_cancel),
            ("country_not_mappable", country.isna()),
        ]
        for name, mask in rules:
            reason = first_reason(reason, mask, name)

    with log.step("online-retail: orders, lines, customers, SKUs"):
        sale = reason.isna() & ~is_cancel
        lines = pd.DataFrame(
            {
                "order_id": inv[sale],
                "sku_id": code[sale],
                "quantity": qty[sale].astype("int64"),
                "unit_price": price[sale].astype("float64"),
                "ts": ts[sale],
                "customer_id": cust[sale],
                "country": country[sale],
            }
        )
        lines["value"] = lines["quantity"] * lines["unit_price"]
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
        postage = (reason == "postage_line_summed_into_shipping_fee") & (price > 0) & (qty > 0)
        fee = (qty[postage] * price[postage]).groupby(inv[postage]).sum()
        orders["shipping_fee"] = orders["order_id"].map(fee).fillna(0.0).astype("float64")
        orders["channel"] = "own_site"
        orders["carrier_id"] = UNKNOWN_CARRIER
        for col in ("incoterm", "payment_method"):
            orders[col] = pd.Series(np.nan, index=orders.index, dtype="str")
        orders["discount_value"] = np.nan
        orders["promised_delivery_days"] = pd.array([pd.NA] * len(orders), dtype="Int64")

    with log.step("online-retail: matching cancellations to earlier orders"):
        cancel = reason.isna() & is_cancel
        left = pd.DataFrame(
            {
                "row": raw.index[cancel],
                "customer_id": cust[cancel],
                "sku_id": code[cancel],
                "opened_ts": ts[cancel],
            }
        ).sort_values(["opened_ts", "row"], kind="stable")
        order_ts = orders.set_index("order_id")["order_ts"]
        right = (
            lines[["order_id", "customer_id", "sku_id"]]
            .drop_duplicates()
            .assign(order_ts=lambda d: d["order_id"].map(order_ts))
            .sort_values(["order_ts", "order_id"], kind="stable")
        )
        matched = pd.merge_asof(
            left,
            right,
            left_on="opened_ts",
            right_on="order_ts",
            by=["customer_id", "sku_id"],
            direction="backward",
            allow_exact_matches=True,
        ).set_index("row")
        unmatched = matched["order_id"].isna()
        no_match = pd.Series(False, index=raw.index)
        no_match[matched.index[unmatched]] = True
        reason = first_reason(reason, no_match, "cancellation_without_earlier_order")
        hit = matched.loc[~unmatched].sort_index()
        rows = hit.index
        cases = pd.DataFrame(
            {
                "order_id": hit["order_id"].astype("str"),
                "opened_ts": hit["opened_ts"],
                "sku_id": hit["sku_id"],
                "amount": (qty[rows] * price[rows]).abs().astype("float64"),
                "cancellation_invoice": inv[rows],
            }
        )
        cases["case_type"] = np.where(
            cases["opened_ts"] - hit["order_ts"] < REFUND_WITHIN, "refund", "return"
        )
        line_no = cases.groupby("cancellation_invoice").cumcount() + 1
        cases["case_id"] = cases["cancellation_invoice"] + ":" + line_no.astype("str")
        cases = cases.reset_index(drop=True)

    with log.step("online-retail: customers, SKUs, countries, carrier"):
        first = orders.sort_values(["order_ts", "order_id"]).drop_duplicates("customer_id")
        customers = pd.DataFrame(
            {
                "customer_id": first["customer_id"],
                "first_seen_ts": first["order_ts"],
                "country_code": first["destination_country"],
                "segment": pd.Series(np.nan, index=first.index, dtype="str"),
            }
        ).sort_values("customer_id", ignore_index=True)
        sold = pd.DataFrame({"sku_id": lines["sku_id"], "description": desc[sale]})
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
        countries = build_countries(
            orders["destination_country"],
            reference,
            currency=SHOP_CURRENCY,
            domestic=SHOP_COUNTRY,
            duty_free=EU_MEMBERS_2010,
        )
        carriers = pd.DataFrame(
            {
                "carrier_id": [UNKNOWN_CARRIER],
                "carrier_name": ["unknown (not in the export)"],
                "service_level": ["standard"],
                "tracked": pd.array([pd.NA], dtype="boolean"),
            }
        )

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
    with log.step(f"reading {len(cfg.files)} Online Retail file(s)"):
        raw = read_online_retail(list(cfg.files))
    result = online_retail_tables(
        raw, reference=reference_countries(), label_window_days=cfg.label_window_days, log=log
    )
    write_result(result, cfg.out, log)
    return result
