"""Importers for two public exports: UCI Online Retail (I and II) and Tableau Global Superstore.

Each importer reads the export, turns it into the contract tables (``returnrisk contract``)
and writes a data directory. Nothing is silently dropped: every input row either becomes part
of a table (an order line, or an after-sales case) or is written to
``DIR/refused/<source>_refused.parquet`` with a ``reason`` column, and the counts per reason
are printed. The transformations are pure functions (``online_retail_tables``,
``superstore_tables``) over DataFrames, vectorised, and never mutate their inputs.

The assumptions each importer makes, and what the data cannot tell, are stated next to the
rules below and in the project README ("Importing real exports").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.features import order_outcomes
from returnrisk.progress import QUIET, StepLog

# ---------------------------------------------------------------------------------------------
# Shared: errors, results, countries


class ImporterError(ValueError):
    """An export cannot be imported (missing file, missing column, unreadable format)."""


@dataclass(frozen=True)
class ImportResult:
    """Contract tables built from an export, the refused input rows, and figures."""

    tables: dict[str, pd.DataFrame]
    refused: dict[str, pd.DataFrame]  # file stem -> refused rows (with a `reason` column)
    n_input_rows: dict[str, int]  # file stem -> rows read
    figures: dict[str, float | int] = field(default_factory=dict)

    def refused_counts(self) -> dict[str, dict[str, int]]:
        return {
            stem: {str(k): int(v) for k, v in df["reason"].value_counts().sort_index().items()}
            for stem, df in self.refused.items()
        }

    def report(self) -> str:
        """The figures and the refused-row counts per reason, one per line."""
        lines = []
        for key, value in self.figures.items():
            if "rate" in key:
                lines.append(f"{key:40s} {value:>11.1%}")
            else:
                lines.append(f"{key:40s} {value:>11,d}")
        for stem, counts in self.refused_counts().items():
            total = sum(counts.values())
            lines.append(f"refused from {stem}: {total:,d} of {self.n_input_rows[stem]:,d} rows")
            lines += [f"  {reason:46s} {n:>10,d}" for reason, n in counts.items()]
        return "\n".join(lines)


# Country names as they appear in the exports (lower case) -> ISO 3166-1 alpha-2.
COUNTRY_CODES: dict[str, str] = {
    "afghanistan": "AF", "albania": "AL", "algeria": "DZ", "angola": "AO", "argentina": "AR",
    "armenia": "AM", "australia": "AU", "austria": "AT", "azerbaijan": "AZ", "bahrain": "BH",
    "bangladesh": "BD", "barbados": "BB", "belarus": "BY", "belgium": "BE", "benin": "BJ",
    "bermuda": "BM", "bolivia": "BO", "bosnia and herzegovina": "BA", "brazil": "BR",
    "bulgaria": "BG", "burundi": "BI", "cambodia": "KH", "cameroon": "CM", "canada": "CA",
    "central african republic": "CF", "chad": "TD", "chile": "CL", "china": "CN",
    "colombia": "CO", "cote d'ivoire": "CI", "croatia": "HR", "cuba": "CU", "cyprus": "CY",
    "czech republic": "CZ", "czechia": "CZ", "democratic republic of the congo": "CD",
    "denmark": "DK", "djibouti": "DJ", "dominican republic": "DO", "ecuador": "EC",
    "egypt": "EG", "eire": "IE", "el salvador": "SV", "equatorial guinea": "GQ",
    "eritrea": "ER", "estonia": "EE", "ethiopia": "ET", "finland": "FI", "france": "FR",
    "gabon": "GA", "georgia": "GE", "germany": "DE", "ghana": "GH", "greece": "GR",
    "guadeloupe": "GP", "guatemala": "GT", "guinea": "GN", "guinea-bissau": "GW",
    "haiti": "HT", "honduras": "HN", "hong kong": "HK", "hungary": "HU", "iceland": "IS",
    "india": "IN", "indonesia": "ID", "iran": "IR", "iraq": "IQ", "ireland": "IE",
    "israel": "IL", "italy": "IT", "jamaica": "JM", "japan": "JP", "jordan": "JO",
    "kazakhstan": "KZ", "kenya": "KE", "korea": "KR", "south korea": "KR",
    "kyrgyzstan": "KG", "latvia": "LV", "lebanon": "LB", "lesotho": "LS", "liberia": "LR",
    "libya": "LY", "lithuania": "LT", "luxembourg": "LU", "macedonia": "MK",
    "north macedonia": "MK", "madagascar": "MG", "malaysia": "MY", "mali": "ML",
    "malta": "MT", "martinique": "MQ", "mauritania": "MR", "mexico": "MX", "moldova": "MD",
    "mongolia": "MN", "montenegro": "ME", "morocco": "MA", "mozambique": "MZ",
    "myanmar (burma)": "MM", "myanmar": "MM", "namibia": "NA", "nepal": "NP",
    "netherlands": "NL", "new zealand": "NZ", "nicaragua": "NI", "niger": "NE",
    "nigeria": "NG", "norway": "NO", "pakistan": "PK", "panama": "PA",
    "papua new guinea": "PG", "paraguay": "PY", "peru": "PE", "philippines": "PH",
    "poland": "PL", "portugal": "PT", "qatar": "QA", "republic of the congo": "CG",
    "romania": "RO", "rsa": "ZA", "russia": "RU", "rwanda": "RW", "saudi arabia": "SA",
    "senegal": "SN", "sierra leone": "SL", "singapore": "SG", "slovakia": "SK",
    "slovenia": "SI", "somalia": "SO", "south africa": "ZA", "south sudan": "SS",
    "spain": "ES", "sri lanka": "LK", "sudan": "SD", "swaziland": "SZ", "eswatini": "SZ",
    "sweden": "SE", "switzerland": "CH", "syria": "SY", "taiwan": "TW", "tajikistan": "TJ",
    "tanzania": "TZ", "thailand": "TH", "togo": "TG", "trinidad and tobago": "TT",
    "tunisia": "TN", "turkey": "TR", "turkmenistan": "TM", "uganda": "UG", "ukraine": "UA",
    "united arab emirates": "AE", "united kingdom": "GB", "uk": "GB",
    "united states": "US", "usa": "US", "uruguay": "UY", "uzbekistan": "UZ",
    "venezuela": "VE", "vietnam": "VN", "yemen": "YE", "zambia": "ZM", "zimbabwe": "ZW",
}  # fmt: skip
# Names that do not identify one country: refused, never guessed.
NOT_A_COUNTRY = frozenset(
    {"unspecified", "european community", "west indies", "channel islands", ""}
)
# Regions for countries missing from the reference table, in the reference table's scheme.
_REGION_CODES = {
    "EU": "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK",
    "Europe": "AL AM AZ BA BY CH GB GE IS MD ME MK NO RU TR UA",
    "North America": "US CA BM",
    "Latin America": "AR BB BO BR CL CO CU DO EC GP GT HN HT JM MQ MX NI PA PE PY SV TT UY VE",
    "Asia-Pacific": "AF AU BD CN HK ID IN JP KG KH KR KZ LK MM MN MY NP NZ PG PH PK SG TH TJ TM "
    "TW UZ VN",
    "Middle East & Africa": "AE BH IL IQ IR JO LB QA SA SY YE AO BI BJ CD CF CG CI CM DJ DZ EG "
    "ER ET GA GH GN GQ GW KE LR LS LY MA MG ML MR MZ NA NE NG RW SD SL SN SO SS SZ TD TG TN TZ "
    "UG ZA ZM ZW",
}
# The reference table's duty_de_minimis is in EUR; units of each reporting currency per EUR
# (the ECB 2024 averages the reference table itself was converted with).
PER_EUR = {"EUR": 1.0, "GBP": 0.847, "USD": 1.082}
COUNTRY_REGION: dict[str, str] = {
    code: region for region, codes in _REGION_CODES.items() for code in codes.split()
}
COUNTRY_COLUMNS = ("country_code", "region", "languages", "duty_de_minimis", "default_incoterm")


def country_codes(names: pd.Series) -> pd.Series:
    """ISO alpha-2 code per country name (case/space-insensitive); NaN when not mappable."""
    key = names.astype("str").str.strip().str.lower()
    key = key.where(~key.isin(NOT_A_COUNTRY))
    return key.map(COUNTRY_CODES).astype("str")


def reference_countries() -> pd.DataFrame | None:
    """The package's reference table (``returnrisk/reference/countries.csv``), if shipped."""
    ref = resources.files("returnrisk").joinpath("reference", "countries.csv")
    if not ref.is_file():
        return None
    with ref.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype=str, keep_default_na=False, na_values=[""], comment="#")
    missing = [c for c in COUNTRY_COLUMNS if c not in df.columns]
    if missing:
        raise ImporterError(f"returnrisk/reference/countries.csv: columns missing: {missing}")
    return df[list(COUNTRY_COLUMNS)]


def build_countries(
    codes: pd.Series,
    reference: pd.DataFrame | None,
    *,
    currency: str,
    domestic: str | None = None,
    duty_free: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """One row per destination code: reference values where known, else a region only.

    The reference de-minimis (EUR) is converted to ``currency``. ``domestic`` (the seller's
    home country) and ``duty_free`` destinations (same customs union as the seller) owe no
    import duty: ``duty_de_minimis`` null, ``default_incoterm`` DDP, ``no_import_duty`` True.
    """
    wanted = pd.Series(sorted(set(codes.dropna()) | ({domestic} if domestic else set())))
    out = pd.DataFrame({"country_code": wanted.astype("str")})
    if reference is not None:
        ref = reference.drop_duplicates("country_code").copy()
        ref["duty_de_minimis"] = pd.to_numeric(ref["duty_de_minimis"], errors="coerce")
        out = out.merge(ref, on="country_code", how="left")
        out["in_reference_table"] = out["country_code"].isin(reference["country_code"])
    else:
        for col in ("region", "languages", "default_incoterm"):
            out[col] = pd.Series(np.nan, index=out.index, dtype="str")
        out["duty_de_minimis"] = np.nan
        out["in_reference_table"] = False
    out["region"] = out["region"].fillna(out["country_code"].map(COUNTRY_REGION)).fillna("Other")
    out["duty_de_minimis"] = (out["duty_de_minimis"].astype("float64") * PER_EUR[currency]).round(2)
    out["is_domestic"] = out["country_code"] == domestic
    out["no_import_duty"] = out["is_domestic"] | out["country_code"].isin(duty_free)
    out.loc[out["no_import_duty"], "duty_de_minimis"] = np.nan
    out.loc[out["no_import_duty"], "default_incoterm"] = "DDP"
    return out


def _first_reason(reason: pd.Series, mask: pd.Series, name: str) -> pd.Series:
    """Set ``name`` on rows of ``mask`` that have no reason yet (first rule wins)."""
    return reason.mask(reason.isna() & mask.fillna(False).astype(bool), name)


def _write(result: ImportResult, out: Path, log: StepLog) -> None:
    from returnrisk.contract import coerce_tables, write_tables

    with log.step(f"checking the contract and writing {out}"):
        tables = coerce_tables(result.tables, source=f"import into {out}")
        write_tables(tables, out)
        (out / "refused").mkdir(parents=True, exist_ok=True)
        for stem, df in result.refused.items():
            df.to_parquet(out / "refused" / f"{stem}_refused.parquet", index=False)


def _case_rate(orders: pd.DataFrame, cases: pd.DataFrame, window_days: int) -> tuple[float, int]:
    """(share of mature orders with a case within ``window_days``, number of mature orders)"""
    stamps = [orders["order_ts"].max(), cases["opened_ts"].max() if len(cases) else pd.NaT]
    as_of = max(s for s in stamps if not pd.isna(s))
    out = order_outcomes(orders, cases, as_of=as_of, label_window_days=window_days)
    n_mature = int(out["mature"].sum())
    if n_mature == 0:
        return float("nan"), 0
    return float(out.loc[out["mature"], "label"].mean()), n_mature


# ---------------------------------------------------------------------------------------------
# UCI Online Retail / Online Retail II

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


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_]", "", str(name)).lower()


def _canonical_columns(df: pd.DataFrame, spec: dict[str, tuple[str, ...]], where: str) -> dict:
    """Map each canonical column to the file's spelling; raise naming the missing ones."""
    by_norm = {_norm_name(c): c for c in df.columns}
    found, missing = {}, []
    for canon, spellings in spec.items():
        hit = next((by_norm[_norm_name(s)] for s in spellings if _norm_name(s) in by_norm), None)
        if hit is None:
            missing.append(" or ".join(f"'{s}'" for s in spellings))
        else:
            found[canon] = hit
    if missing:
        raise ImporterError(
            f"{where}: column(s) missing: {', '.join(missing)} (found: {list(df.columns)})"
        )
    return found


def _read_table_file(path: Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Parquet, CSV (optionally zipped) or Excel, every column read as text."""
    if not path.is_file():
        raise ImporterError(f"{path}: file not found")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
            return df.astype("str").where(df.notna())
        if path.suffix.lower() in (".xlsx", ".xls"):
            try:
                return pd.read_excel(path, dtype=str)
            except ImportError as err:
                raise ImporterError(
                    f"{path}: reading Excel needs an extra package ({err}); "
                    "save the sheet as CSV or Parquet instead"
                ) from None
        if suffixes.endswith((".csv", ".csv.zip", ".csv.gz", ".zip", ".gz", ".txt")):
            return pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding=encoding
            )
    except ImporterError:
        raise
    except Exception as err:  # noqa: BLE001 - reported as a clear message, not a traceback
        raise ImporterError(f"{path}: unreadable: {type(err).__name__}: {err}") from None
    raise ImporterError(f"{path}: unsupported file type (use .parquet, .csv or .csv.zip)")


def read_online_retail(paths: list[Path] | tuple[Path, ...]) -> pd.DataFrame:
    """All files stacked, with canonical column names (as text), ``source_file``, ``source_row``."""
    if not paths:
        raise ImporterError("online-retail: no input file given")
    parts = []
    for i, path in enumerate(paths):
        df = _read_table_file(Path(path))
        cols = _canonical_columns(df, ONLINE_RETAIL_COLUMNS, str(path))
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
    label_window_days: int = 90,
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
            reason = _first_reason(reason, mask, name)

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
        reason = _first_reason(reason, no_match, "cancellation_without_earlier_order")
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

    refused = raw.loc[reason.notna()].drop(columns="file_index").assign(reason=reason)
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
    rate, n_mature = _case_rate(orders, cases, label_window_days)
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
    label_window_days: int = 90


def import_online_retail(cfg: OnlineRetailConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the files, build the tables, write ``cfg.out`` (+ ``refused/``)."""
    with log.step(f"reading {len(cfg.files)} Online Retail file(s)"):
        raw = read_online_retail(list(cfg.files))
    result = online_retail_tables(
        raw, reference=reference_countries(), label_window_days=cfg.label_window_days, log=log
    )
    _write(result, cfg.out, log)
    return result


# ---------------------------------------------------------------------------------------------
# Tableau Global Superstore

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
    lines = _read_table_file(Path(orders_csv), encoding="latin-1")
    cols = _canonical_columns(lines, SUPERSTORE_COLUMNS, str(orders_csv))
    lines = lines.rename(columns={v: k for k, v in cols.items()})
    returns = _read_table_file(Path(returns_csv), encoding="latin-1")
    rcols = _canonical_columns(returns, SUPERSTORE_RETURNS_COLUMNS, str(returns_csv))
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
    label_window_days: int = 90,
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
            reason = _first_reason(reason, mask, name)
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
        r_reason = _first_reason(r_reason, mask, name)
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
    rate, n_mature = _case_rate(orders, cases, label_window_days)
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
    label_window_days: int = 90


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
    _write(result, cfg.out, log)
    return result
