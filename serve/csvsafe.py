"""CSV output that a spreadsheet opens as data, never as formulas.

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel, LibreOffice and Google Sheets (CSV / formula injection). ``neutralise_formulas``
prefixes such cells with a single quote, as spreadsheet users do by hand; numbers (``-0.5``)
stay numbers because only text columns are touched. The SKU page's CSV export
(``templates/sku_report.js``, ``csvCell``) applies the same rule.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""

_PATTERN = r"^[=+\-@\t\r]"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells starting with a formula character get a leading
    ``'``. Only object / string columns are looked at; missing values and numbers are kept."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
            continue
        is_text = s.map(type).eq(str) if pd.api.types.is_object_dtype(s) else s.notna()
        risky = is_text & s.astype("string").str.contains(_PATTERN, regex=True).fillna(False)
        if risky.any():
            out[col] = s.where(~risky, "'" + s.astype("string")).astype(s.dtype)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """``frame.to_csv(path, index=False)`` with formula cells neutralised."""
    neutralise_formulas(frame).to_csv(path, index=False)
