"""Reference data shipped with the package: destination countries and their duty de-minimis.

``reference/countries.csv`` lists 40 destination countries with the real customs-duty
de-minimis thresholds in force during 2024, converted to EUR (the reporting currency of the
synthetic world); its header comment names the exchange rates and caveats. Importers for real
exports can use it to fill the ``countries`` table of the contract.

``reference/duty_rules.csv`` lists dated changes of those thresholds (Turkey 2024 and 2026, the
US 2025 suspension, the EU's removal of its EUR 150 relief from 2026-07-01), each with its source
and, where a date is uncertain, a note; ``load_duty_rules`` reads it as a contract ``duty_rules``
table (EUR), plus the local figure, source and notes.

``reference/country_names.csv`` maps country names as merchant exports spell them (lower case)
to ISO 3166-1 alpha-2 codes; ``load_country_names`` reads it.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

COUNTRY_COLUMNS = (
    "country_code",
    "region",
    "languages",
    "duty_de_minimis",
    "default_incoterm",
)
REPORTING_CURRENCY = "EUR"


def load_countries() -> pd.DataFrame:
    """The countries reference table: contract columns first, then name, local figure, notes.

    Returns a new frame on every call (callers may modify it). ``duty_de_minimis`` is in EUR;
    ``de_minimis_local`` / ``local_currency`` hold the figure as published.
    """
    with files("returnrisk").joinpath("reference/countries.csv").open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, comment="#", dtype={"de_minimis_local": "float64"})
    other = [c for c in df.columns if c not in COUNTRY_COLUMNS]
    df = df[list(COUNTRY_COLUMNS) + other]
    df["duty_de_minimis"] = df["duty_de_minimis"].astype("float64")
    return df.sort_values("country_code", ignore_index=True)


DUTY_RULE_COLUMNS = (
    "rule_id",
    "country_code",
    "valid_from",
    "valid_to",
    "duty_de_minimis",
    "default_incoterm",
    "source",
)


def load_duty_rules() -> pd.DataFrame:
    """The dated duty rules (contract ``duty_rules`` columns first; de-minimis in EUR, times in
    UTC), then ``de_minimis_local``, ``local_currency``, ``notes``. A new frame on every call."""
    path = files("returnrisk").joinpath("reference/duty_rules.csv")
    with path.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, comment="#", dtype="str", keep_default_na=False, na_values=[""])
    for col in ("valid_from", "valid_to"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    df["duty_de_minimis"] = df["duty_de_minimis"].astype("float64")
    df["de_minimis_local"] = df["de_minimis_local"].astype("float64")
    other = [c for c in df.columns if c not in DUTY_RULE_COLUMNS]
    return df[list(DUTY_RULE_COLUMNS) + other]


def load_country_names() -> dict[str, str]:
    """Country name (lower case, trimmed) -> ISO 3166-1 alpha-2, a new dict on every call.

    Names that do not identify one country (``Unspecified``, ``European Community``, ...) are
    not in the table: callers refuse them instead of guessing.
    """
    path = files("returnrisk").joinpath("reference/country_names.csv")
    with path.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, comment="#", dtype=str, keep_default_na=False)
    return dict(zip(df["name"], df["country_code"], strict=True))
