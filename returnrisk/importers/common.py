"""What every importer shares: errors, the result and its report, countries, reading files.

An importer reads an export, turns it into the contract tables (``returnrisk contract``) and
writes a data directory. Nothing is silently dropped: every input row either becomes part of a
table or is written to ``DIR/refused/<source>_refused.parquet`` with a ``reason`` column, and the
counts per reason are printed. Refusal rules are applied first rule wins (``first_reason``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.arrays import to_utc
from returnrisk.errors import ReturnriskError
from returnrisk.labels import order_outcomes
from returnrisk.progress import StepLog
from returnrisk.reference import load_country_names


class ImporterError(ReturnriskError, ValueError):
    """An export cannot be imported (missing file, missing column, unreadable format)."""


@dataclass(frozen=True)
class ImportResult:
    """Contract tables built from an export, the refused input rows, and figures."""

    tables: dict[str, pd.DataFrame]
    refused: dict[str, pd.DataFrame]  # file stem -> refused rows (with a `reason` column)
    n_input_rows: dict[str, int]  # file stem -> rows read
    figures: Mapping[str, float | int | str] = field(default_factory=dict)

    def refused_counts(self) -> dict[str, dict[str, int]]:
        return {
            stem: {str(k): int(v) for k, v in df["reason"].value_counts().sort_index().items()}
            for stem, df in self.refused.items()
        }

    def report(self) -> str:
        """The figures and the refused-row counts per reason, one per line."""
        lines = []
        for key, value in self.figures.items():
            if isinstance(value, str):
                lines.append(f"{key:40s} {value:>11s}")
            elif "rate" in key:
                lines.append(f"{key:40s} {value:>11.1%}")
            else:
                lines.append(f"{key:40s} {value:>11,d}")
        for stem, counts in self.refused_counts().items():
            total = sum(counts.values())
            lines.append(f"refused from {stem}: {total:,d} of {self.n_input_rows[stem]:,d} rows")
            lines += [f"  {reason:46s} {n:>10,d}" for reason, n in counts.items()]
        return "\n".join(lines)


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
PER_EUR = {
    "EUR": 1.0,
    "GBP": 0.847,
    "USD": 1.082,
    "CAD": 1.482,
    "AUD": 1.640,
    "NZD": 1.788,
    "JPY": 163.9,
    "SGD": 1.446,
    "CHF": 0.953,
    "NOK": 11.63,
}
COUNTRY_REGION: dict[str, str] = {
    code: region for region, codes in _REGION_CODES.items() for code in codes.split()
}
COUNTRY_COLUMNS = ("country_code", "region", "languages", "duty_de_minimis", "default_incoterm")


def country_codes(names: pd.Series) -> pd.Series:
    """ISO alpha-2 code per country name (case/space-insensitive); NaN when not mappable.

    The names are reference data: ``returnrisk/reference/country_names.csv``.
    """
    key = names.astype("str").str.strip().str.lower()
    key = key.where(~key.isin(NOT_A_COUNTRY))
    return key.map(load_country_names()).astype("str")


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


def build_duty_rules(
    countries: pd.DataFrame, rules: pd.DataFrame | None, *, currency: str
) -> pd.DataFrame:
    """The dated duty rules (``returnrisk.reference.load_duty_rules``, EUR) of the destinations in
    ``countries`` (``build_countries``) that owe import duty, converted to ``currency``: the
    contract's ``duty_rules`` (empty without ``rules``)."""
    from returnrisk.contract import SCHEMAS, empty_table

    if rules is None or not len(rules):
        return empty_table("duty_rules")
    owed = countries.loc[~countries["no_import_duty"], "country_code"]
    out = rules.loc[rules["country_code"].isin(owed), SCHEMAS["duty_rules"].column_names].copy()
    out["duty_de_minimis"] = (out["duty_de_minimis"].astype("float64") * PER_EUR[currency]).round(2)
    return out.reset_index(drop=True)


def first_reason(reason: pd.Series, mask: pd.Series, name: str) -> pd.Series:
    """Set ``name`` on rows of ``mask`` that have no reason yet (first rule wins)."""
    return reason.mask(reason.isna() & mask.fillna(False).astype(bool), name)


def clock(now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The import's clock, read once (default: the wall clock): no timestamp the importer keeps
    or assumes may be after it (the contract's rule, checked again on writing)."""
    return pd.Timestamp.now(tz="UTC") if now is None else to_utc(pd.Timestamp(now))


def outside_contract_time(ts: pd.Series, now: pd.Timestamp) -> pd.Series:
    """Which timestamps the contract refuses: before ``EARLIEST_TS`` or after ``now`` (its
    ``latest_ts``); missing ones are not (other rules judge them)."""
    from returnrisk.contract import EARLIEST_TS, latest_ts

    return ts.notna() & ((ts < EARLIEST_TS) | (ts > latest_ts(now)))


def write_result(result: ImportResult, out: Path, log: StepLog, *, now: pd.Timestamp) -> None:
    from returnrisk.contract import coerce_tables, write_tables

    with log.step(f"checking the contract and writing {out}"):
        tables = coerce_tables(result.tables, source=f"import into {out}", now=now)
        write_tables(tables, out)
        (out / "refused").mkdir(parents=True, exist_ok=True)
        for stem, df in result.refused.items():
            df.to_parquet(out / "refused" / f"{stem}_refused.parquet", index=False)


def case_rate(orders: pd.DataFrame, cases: pd.DataFrame, window_days: int) -> tuple[float, int]:
    """(share of mature orders with a case within ``window_days``, number of mature orders)"""
    stamps = [orders["order_ts"].max(), cases["opened_ts"].max() if len(cases) else pd.NaT]
    as_of = max(s for s in stamps if not pd.isna(s))
    out = order_outcomes(orders, cases, as_of=as_of, label_window_days=window_days)
    n_mature = int(out["mature"].sum())
    if n_mature == 0:
        return float("nan"), 0
    return float(out.loc[out["mature"], "label"].mean()), n_mature


def norm_name(name: str) -> str:
    return re.sub(r"[\s_]", "", str(name)).lower()


def canonical_columns(
    df: pd.DataFrame, spec: Mapping[str, Sequence[str]], where: str
) -> dict[str, str]:
    """Map each canonical column to the file's spelling; raise naming the missing ones."""
    by_norm = {norm_name(c): c for c in df.columns}
    found, missing = {}, []
    for canon, spellings in spec.items():
        hit = next((by_norm[norm_name(s)] for s in spellings if norm_name(s) in by_norm), None)
        if hit is None:
            missing.append(" or ".join(f"'{s}'" for s in spellings))
        else:
            found[canon] = hit
    if missing:
        raise ImporterError(
            f"{where}: column(s) missing: {', '.join(missing)} (found: {list(df.columns)})"
        )
    return found


def read_table_file(path: Path, *, encoding: str = "utf-8", sep: str = ",") -> pd.DataFrame:
    """Parquet, CSV (optionally zipped; ``sep`` between fields) or Excel, all read as text."""
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
            df = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding=encoding, sep=sep
            )
            _check_delimiter(df, path, sep)
            return df
    except ImporterError:
        raise
    except Exception as err:  # reported as a clear message, not a traceback
        raise ImporterError(f"{path}: unreadable: {type(err).__name__}: {err}") from None
    raise ImporterError(f"{path}: unsupported file type (use .parquet, .csv or .csv.zip)")


def _check_delimiter(df: pd.DataFrame, path: Path, sep: str) -> None:
    """One column whose name holds another delimiter: the file is not ``sep``-separated."""
    if df.shape[1] != 1:
        return
    header = str(df.columns[0])
    seen = [
        name for d, name in ((";", "';'"), ("\t", "tab"), (",", "','"), ("|", "'|'")) if d in header
    ]
    if seen and sep not in header:
        expected = "tab" if sep == "\t" else repr(sep)
        raise ImporterError(
            f"{path}: the file has one column; its header holds {seen[0]} where {expected} "
            "separates the fields (export it again with that delimiter)"
        )


def parse_utc(text: pd.Series, *formats: str) -> pd.Series:
    """Timestamps as text -> UTC (ISO 8601 with or without offset, then each of ``formats``).

    A naive time is read as UTC; an offset (``+0100``) is converted. Unparseable -> NaT.
    """
    text = text.astype("str").str.strip().where(text.notna())
    ts = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    for fmt in formats:
        retry = ts.isna() & text.notna()
        if not retry.any():
            break
        again = pd.to_datetime(text[retry], errors="coerce", utc=True, format=fmt)
        ts = ts.mask(retry, again)
    return ts.astype("datetime64[ns, UTC]")


def money(text: pd.Series) -> pd.Series:
    """Amounts as text ("1,299.00", " 12.5") -> float; empty -> NaN, unreadable -> NaN."""
    clean = text.astype("str").str.strip().str.replace(",", "", regex=False).where(text.notna())
    return pd.to_numeric(clean, errors="coerce").astype("float64")


def null_str(index: pd.Index) -> pd.Series:
    return pd.Series(np.nan, index=index, dtype="str")


def blank(text: pd.Series) -> pd.Series:
    """True where a text field is missing or only spaces."""
    return text.isna() | (text.astype("str").str.strip() == "")


# ---------------------------------------------------------------------------------------------
# Privacy: personal columns never reach a data directory; the customer key is a keyed hash

# Column names that hold (or may hold) personal data in merchant exports: names, e-mails,
# street addresses, postal codes, cities, phones, companies, free text, staff and devices,
# payment references. Matched case-insensitively anywhere in the column name.
PERSONAL_COLUMN = re.compile(
    r"e-?mail|phone|street|address|zip|postal|city|company|\bnotes?\b|comment|employee|"
    r"device|payment ref|payment id|receipt|^tags$|"
    r"(billing|shipping|buyer|recipient|customer|contact)[ _-]?name",
    re.IGNORECASE,
)
SALT_ENV = "RETURNRISK_SALT"
MIN_SALT_LENGTH = 8


def personal_columns(columns: pd.Index | list[str]) -> list[str]:
    """The columns of an export that must not be written anywhere (``PERSONAL_COLUMN``)."""
    return [str(c) for c in columns if PERSONAL_COLUMN.search(str(c))]


def without_personal(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` without its personal columns (for refused-row files)."""
    return df.drop(columns=personal_columns(df.columns))


def resolve_salt(salt: str | None, where: str) -> str:
    """The salt from ``--salt`` or ``RETURNRISK_SALT``; a clear error when neither is set."""
    value = salt if salt else os.environ.get(SALT_ENV, "")
    if not value:
        raise ImporterError(
            f"{where}: no salt for the customer key: give --salt or set {SALT_ENV} "
            "(a secret of your choice, the same for every import of this shop; "
            "it is never written down)"
        )
    if len(value) < MIN_SALT_LENGTH:
        raise ImporterError(
            f"{where}: --salt / {SALT_ENV} is {len(value)} characters; "
            f"use at least {MIN_SALT_LENGTH} (a short salt makes the customer key guessable)"
        )
    return value


def customer_keys(identity: pd.Series, salt: str, *, prefix: str = "cust_") -> pd.Series:
    """Pseudonymous customer key: HMAC-SHA256(salt, trimmed lower-case identity), 20 hex digits.

    The same buyer (e-mail, Amazon buyer id) gets the same key in every import made with the
    same salt; without the salt the key cannot be recomputed from an e-mail. Missing -> NaN.
    HMAC runs once per distinct identity (customers, not orders): hashlib has no vector form,
    and a stable standard hash matters more here than speed.
    """
    norm = identity.astype("str").str.strip().str.lower().where(~blank(identity))
    uniq = norm.dropna().unique()
    key = salt.encode("utf-8")
    digests = [hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest()[:20] for v in uniq]
    lookup = pd.Series([prefix + d for d in digests], index=uniq, dtype="str")
    return norm.map(lookup).astype("str")


# ---------------------------------------------------------------------------------------------
# Carrier services from free-text shipping method names

SERVICE_LEVEL_RULES: tuple[tuple[str, str], ...] = (
    (
        "express",
        r"express|priority|next[ -]?day|overnight|same[ -]?day|expedited|1[ -]day|"
        r"24 ?h|one[ -]day|2[ -]day|two[ -]day|premium|\bdhl\b|fedex|\bups\b",
    ),
    ("economy", r"economy|saver|budget|slow|untracked|\bletter|post(?:al)? ?(?:small|packet)"),
)
TRACKED_RULES: tuple[tuple[bool, str], ...] = (
    (False, r"untracked|no tracking|without tracking"),
    (True, r"tracked|tracking|signed|express|courier|\bdhl\b|fedex|\bups\b"),
)


def service_levels(names: pd.Series) -> pd.Series:
    """``express`` / ``economy`` when a shipping method's name says so, else ``standard``.

    First matching rule of ``SERVICE_LEVEL_RULES`` wins (case-insensitive); a name that says
    neither (``Standard``, ``International Shipping``, ``Royal Mail 48``) is ``standard``.
    """
    text = names.fillna("").astype("str").str.lower()
    conditions = [text.str.contains(p, regex=True) for _, p in SERVICE_LEVEL_RULES]
    return pd.Series(
        np.select(conditions, [lvl for lvl, _ in SERVICE_LEVEL_RULES], default="standard"),
        index=names.index,
        dtype="str",
    )


def tracked_flags(names: pd.Series) -> pd.Series:
    """True / False when the name says tracked / untracked, else unknown (NA)."""
    text = names.fillna("").astype("str").str.lower()
    out = pd.Series(pd.NA, index=names.index, dtype="boolean")
    for value, pattern in reversed(TRACKED_RULES):  # first rule wins: apply it last
        out = out.mask(text.str.contains(pattern, regex=True), value)
    return out


def carrier_ids(names: pd.Series) -> pd.Series:
    """A stable id per shipping method name: lower case, runs of non-alphanumerics -> ``_``."""
    text = names.astype("str").str.strip().str.lower().where(~blank(names))
    return text.str.replace(r"[^0-9a-z]+", "_", regex=True).str.strip("_").astype("str")


def carriers_table(names: pd.Series, ids: pd.Series) -> pd.DataFrame:
    """One row per carrier id: the most frequent name, its service level and tracked flag."""
    df = pd.DataFrame({"carrier_id": ids, "carrier_name": names.astype("str").str.strip()})
    df = df.dropna()
    top = (
        df.value_counts(["carrier_id", "carrier_name"])
        .reset_index()
        .sort_values(["carrier_id", "count", "carrier_name"], ascending=[True, False, True])
        .drop_duplicates("carrier_id")
        .reset_index(drop=True)
    )
    return pd.DataFrame(
        {
            "carrier_id": top["carrier_id"].astype("str"),
            "carrier_name": top["carrier_name"].astype("str"),
            "service_level": service_levels(top["carrier_name"]),
            "tracked": tracked_flags(top["carrier_name"]),
        }
    )


def mode_by(df: pd.DataFrame, key: str, col: str) -> pd.Series:
    """Most frequent non-null ``col`` per ``key`` (ties: smallest value), indexed by ``key``."""
    return (
        df[[key, col]]
        .dropna()
        .value_counts([key, col])
        .reset_index()
        .sort_values([key, "count", col], ascending=[True, False, True])
        .drop_duplicates(key)
        .set_index(key)[col]
    )


def shop_country_code(code: str | None, where: str) -> str | None:
    """``--shop-country`` as an upper-case ISO alpha-2 code; anything else is a clear error."""
    if code is None:
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", code.strip()):
        raise ImporterError(f"{where}: --shop-country {code!r}: use an ISO alpha-2 code (DE, GB)")
    return code.strip().upper()


def reporting_currency(currencies: pd.Series, currency: str | None, where: str) -> str:
    """``--currency`` (upper case), else the most frequent currency (ties: alphabetical)."""
    if currency is None:
        counts = currencies.dropna().value_counts()
        reporting = str(counts.sort_index().idxmax()) if len(counts) else "EUR"
    else:
        reporting = currency.strip().upper()
    if reporting not in PER_EUR:
        raise ImporterError(
            f"{where}: --currency {reporting}: no EUR rate to convert the duty thresholds of "
            f"the reference table (known: {', '.join(sorted(PER_EUR))})"
        )
    return reporting


def destination_codes(text: pd.Series) -> pd.Series:
    """A destination as exported: an ISO alpha-2 code (any case), else a country name mapped."""
    raw = text.astype("str").str.strip().where(~blank(text))
    is_code = raw.str.fullmatch(r"[A-Za-z]{2}").fillna(False).astype(bool)
    return raw.str.upper().where(is_code, country_codes(raw)).astype("str")
