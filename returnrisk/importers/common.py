"""What every importer shares: errors, the result and its report, countries, reading files.

An importer reads an export, turns it into the contract tables (``returnrisk contract``) and
writes a data directory. Nothing is silently dropped: every input row either becomes part of a
table or is written to ``DIR/refused/<source>_refused.parquet`` with a ``reason`` column, and the
counts per reason are printed. Refusal rules are applied first rule wins (``first_reason``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.features import order_outcomes
from returnrisk.progress import StepLog
from returnrisk.reference import load_country_names


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


def first_reason(reason: pd.Series, mask: pd.Series, name: str) -> pd.Series:
    """Set ``name`` on rows of ``mask`` that have no reason yet (first rule wins)."""
    return reason.mask(reason.isna() & mask.fillna(False).astype(bool), name)


def write_result(result: ImportResult, out: Path, log: StepLog) -> None:
    from returnrisk.contract import coerce_tables, write_tables

    with log.step(f"checking the contract and writing {out}"):
        tables = coerce_tables(result.tables, source=f"import into {out}")
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


def canonical_columns(df: pd.DataFrame, spec: dict[str, tuple[str, ...]], where: str) -> dict:
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


def read_table_file(path: Path, *, encoding: str = "utf-8") -> pd.DataFrame:
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
