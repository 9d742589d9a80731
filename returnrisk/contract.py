"""The merchant's data directory: one file per table, Parquet or CSV.

This module is the one source of truth for the data contract. ``SCHEMAS`` declares every
table's columns, types and rules; loading coerces types, then checks each rule vectorised,
column rules first and cross-table rules (keys, foreign keys, time order) after. Every
problem names the table, the column, the rule, how many rows break it and their keys, so a
command can refuse exactly those rows and say why. ``returnrisk contract`` prints the
contract from ``SCHEMAS`` itself. ``check_new`` (and its one-order form ``check_new_order``) is
the one authority on new orders against a history's keys: the batch scorer, the service's fast
path and the feature code take its answer.

Why one file over ~700 lines: it is the contract's one authority, the schemas and every rule
in both shapes (vectorised ``check_frames`` and the one-row ``row_problems`` / ``check_new_order``
the service uses), which a per-rule test keeps in step; split, the twins would drift apart.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from returnrisk.arrays import member_mask, to_utc
from returnrisk.errors import ReturnriskError
from returnrisk.progress import QUIET, StepLog

TABLE_NAMES = (
    "orders",
    "order_lines",
    "skus",
    "countries",
    "carriers",
    "customers",
    "after_sales_cases",
    "shipments",
    "duty_rules",
)
OPTIONAL_TABLES = frozenset({"shipments", "duty_rules"})
CASE_TYPES = (
    "return",
    "refund",
    "not_received",
    "damaged",
    "not_as_described",
    "wrong_item",
    "duty_dispute",
    "other",
)
INCOTERMS = ("DDP", "DDU")
SERVICE_LEVELS = ("economy", "standard", "express")
SEGMENTS = ("b2c", "b2b")
KNOWN_CHANNELS = ("amazon", "ebay", "aliexpress", "shopify", "own_site")

Kind = Literal["str", "timestamp", "float", "int", "bool"]
_DTYPES: dict[str, object] = {
    "str": "str",
    "timestamp": "datetime64[ns, UTC]",
    "float": "float64",
    "bool": "boolean",
}
_ISO2 = r"^[A-Z]{2}$"
_LANGS = r"^[a-z]{2}(,[a-z]{2})*$"
# C0 controls (NUL, tab, newline, ...), DEL and C1 controls: never part of a key
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
# every timestamp lies in [EARLIEST_TS, now + CLOCK_SKEW]: a year-2100 first_seen_ts would
# otherwise move as_of (the export time) and turn orders of unknown outcome into negatives
EARLIEST_TS = pd.Timestamp("2000-01-01", tz="UTC")
CLOCK_SKEW = pd.Timedelta(minutes=5)
# integers are exact in float64 below 2**53 (the service's JSON numbers, the features' maths)
MAX_INT = 2**53


@dataclass(frozen=True)
class Column:
    """One column of the contract and the rules a value must follow."""

    name: str
    kind: Kind
    nullable: bool = False
    unique: bool = False
    ge: float | None = None
    gt: float | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    no_control: bool = False
    future: bool = False  # a timestamp that may lie after now (a rule's announced dates)
    doc: str = ""

    @property
    def dtype(self) -> object:
        if self.kind == "int":
            return "Int64" if self.nullable else "int64"
        return _DTYPES[self.kind]

    def rules(self) -> list[str]:
        out = ["nullable" if self.nullable else "not null"]
        if self.unique:
            out.append("unique")
        if self.ge is not None:
            out.append(f">= {self.ge:g}")
        if self.gt is not None:
            out.append(f"> {self.gt:g}")
        if self.allowed:
            out.append("one of " + ", ".join(f"`{a}`" for a in self.allowed))
        if self.pattern == _ISO2:
            out.append("ISO 3166-1 alpha-2 (two capital letters)")
        if self.pattern == _LANGS:
            out.append("comma-separated ISO 639-1 codes (`en,de`)")
        if self.kind == "float":
            out.append("finite (no inf, -inf, NaN)")
        if self.kind == "int":
            out.append("whole number, |x| < 2^53")
        if self.kind == "timestamp" and self.future:
            out.append(f"not before {EARLIEST_TS:%Y-%m-%d} (may be in the future)")
        elif self.kind == "timestamp":
            out.append(f"{EARLIEST_TS:%Y-%m-%d} .. now (not in the future)")
        if self.no_control:
            out.append("no control characters (NUL, tab, newline, ...)")
        return out


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    target: str


@dataclass(frozen=True)
class TableSchema:
    name: str
    key: str
    doc: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, kind: Kind, **kw: object) -> Column:
    kw.setdefault("no_control", name.endswith("_id"))  # every key and reference to one
    return Column(name, kind, **kw)  # type: ignore[arg-type]


# a destination's duties: the country's values, and a duty rule's for its period
_DUTY_COLUMNS = (
    _c(
        "duty_de_minimis",
        "float",
        nullable=True,
        ge=0,
        doc="order value below which no import duty is charged",
    ),
    _c("default_incoterm", "str", nullable=True, allowed=INCOTERMS),
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in (
        TableSchema(
            "orders",
            "order_id",
            "one row per order",
            (
                _c("order_id", "str", unique=True),
                _c("customer_id", "str", doc="in `customers`"),
                _c("order_ts", "timestamp", doc="when the order was placed (UTC)"),
                _c("channel", "str", doc="where it was placed: amazon, ebay, shopify, ..."),
                _c("destination_country", "str", pattern=_ISO2, doc="in `countries`"),
                _c("carrier_id", "str", nullable=True, doc="not yet assigned when null"),
                _c(
                    "incoterm", "str", nullable=True, allowed=INCOTERMS, doc="null: country default"
                ),
                _c("order_value", "float", ge=0, doc="goods value after discounts"),
                _c("shipping_fee", "float", nullable=True, ge=0),
                _c("discount_value", "float", nullable=True, ge=0),
                _c("payment_method", "str", nullable=True),
                _c("promised_delivery_days", "int", nullable=True, gt=0),
            ),
            (
                ForeignKey("customer_id", "customers", "customer_id"),
                ForeignKey("destination_country", "countries", "country_code"),
                ForeignKey("carrier_id", "carriers", "carrier_id"),
            ),
        ),
        TableSchema(
            "order_lines",
            "order_id",
            "one row per order line",
            (
                _c("order_id", "str", doc="in `orders`"),
                _c("sku_id", "str", doc="in `skus`"),
                _c("quantity", "int", ge=1),
                _c("unit_price", "float", ge=0),
            ),
            (
                ForeignKey("order_id", "orders", "order_id"),
                ForeignKey("sku_id", "skus", "sku_id"),
            ),
        ),
        TableSchema(
            "skus",
            "sku_id",
            "one row per sellable variant",
            (
                _c("sku_id", "str", unique=True),
                _c("product_id", "str", nullable=True, doc="parent product; null: its own"),
                _c("category", "str"),
                _c("brand", "str", nullable=True),
                _c("supplier_id", "str", nullable=True),
                _c("list_price", "float", nullable=True, ge=0),
                _c("weight_g", "float", nullable=True, gt=0),
                _c("size", "str", nullable=True),
                _c("color", "str", nullable=True),
                _c("n_images", "int", nullable=True, ge=0),
                _c("has_size_chart", "bool", nullable=True),
                _c("listing_languages", "str", nullable=True, pattern=_LANGS),
            ),
        ),
        TableSchema(
            "countries",
            "country_code",
            "one row per destination",
            (
                _c("country_code", "str", unique=True, pattern=_ISO2),
                _c("region", "str"),
                _c("languages", "str", nullable=True, pattern=_LANGS),
                *_DUTY_COLUMNS,
            ),
        ),
        TableSchema(
            "carriers",
            "carrier_id",
            "one row per carrier service",
            (
                _c("carrier_id", "str", unique=True),
                _c("carrier_name", "str"),
                _c("service_level", "str", allowed=SERVICE_LEVELS),
                _c("tracked", "bool", nullable=True),
            ),
        ),
        TableSchema(
            "customers",
            "customer_id",
            "one row per customer",
            (
                _c("customer_id", "str", unique=True),
                _c("first_seen_ts", "timestamp", nullable=True),
                _c("country_code", "str", nullable=True, pattern=_ISO2),
                _c("segment", "str", nullable=True, allowed=SEGMENTS),
            ),
        ),
        TableSchema(
            "after_sales_cases",
            "case_id",
            "zero or more rows per order; the label comes from here",
            (
                _c("case_id", "str", unique=True),
                _c("order_id", "str", doc="in `orders`"),
                _c("opened_ts", "timestamp", doc="not before the order's `order_ts`"),
                _c("case_type", "str", allowed=CASE_TYPES),
                _c("sku_id", "str", nullable=True, doc="the line the case is about"),
                _c("amount", "float", nullable=True, ge=0, doc="what the case cost"),
            ),
            (
                ForeignKey("order_id", "orders", "order_id"),
                ForeignKey("sku_id", "skus", "sku_id"),
            ),
        ),
        TableSchema(
            "shipments",
            "order_id",
            "optional; at most one row per order, once it has shipped",
            (
                _c("order_id", "str", unique=True, doc="in `orders`"),
                _c("shipped_ts", "timestamp", doc="not before `order_ts`"),
                _c("delivered_ts", "timestamp", nullable=True, doc="not before `shipped_ts`"),
            ),
            (ForeignKey("order_id", "orders", "order_id"),),
        ),
        TableSchema(
            "duty_rules",
            "rule_id",
            "optional; the duty rules of a destination over time: in force from `valid_from` "
            "(inclusive) to `valid_to` (exclusive; open when missing), a rule replaces the "
            "country's `duty_de_minimis` / `default_incoterm` for orders placed then (a missing "
            "value keeps the country's); the rules of one country do not overlap",
            (
                _c("rule_id", "str", unique=True),
                _c("country_code", "str", pattern=_ISO2, doc="in `countries`"),
                _c("valid_from", "timestamp", future=True),
                _c("valid_to", "timestamp", nullable=True, future=True, doc="after `valid_from`"),
                *_DUTY_COLUMNS,
                _c("source", "str", nullable=True, doc="where the rule is published"),
            ),
            (ForeignKey("country_code", "countries", "country_code"),),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """Rows of one table that break one rule of one column."""

    table: str
    column: str
    rule: str
    key_column: str
    keys: tuple[str, ...] = ()
    n_rows_override: int | None = None

    @property
    def n_rows(self) -> int:
        return self.n_rows_override if self.n_rows_override is not None else len(self.keys)

    @property
    def examples(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.keys))[:5]

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if not self.n_rows and self.n_rows_override is None:
            return f"{where}: {self.rule}"  # about a file or a table, not rows
        rows = "row" if self.n_rows == 1 else "rows"
        text = f"{where}: {self.rule} — {self.n_rows} {rows}"
        if self.examples:
            text += f", e.g. {self.key_column} " + ", ".join(map(_shown, self.examples))
        return text


def _shown(key: object) -> str:
    """A key as printed in a message: quoted with escapes when it holds a control character
    (a NUL or newline would break the one-line message, or the terminal)."""
    text = str(key)
    return repr(text) if re.search(_CONTROL, text) else text


class ContractError(ReturnriskError, ValueError):
    """A data directory (or in-memory tables) breaks the contract."""

    def __init__(
        self,
        problems: list[Problem],
        source: str = "data",
        refused: dict[str, pd.DataFrame] | None = None,
    ):
        self.problems = problems
        self.source = source
        self.refused = refused or {}
        super().__init__(self.report())

    def report(self) -> str:
        head = f"{self.source}: {len(self.problems)} contract problem(s)"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


# ---------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class Tables:
    """One typed DataFrame per contract table."""

    orders: pd.DataFrame
    order_lines: pd.DataFrame
    skus: pd.DataFrame
    countries: pd.DataFrame
    carriers: pd.DataFrame
    customers: pd.DataFrame
    after_sales_cases: pd.DataFrame
    shipments: pd.DataFrame = field(default_factory=lambda: empty_table("shipments"))
    duty_rules: pd.DataFrame = field(default_factory=lambda: empty_table("duty_rules"))

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **frames: pd.DataFrame) -> Tables:
        return replace(self, **frames)

    def as_of(self) -> pd.Timestamp:
        """The export time: the latest timestamp anywhere in the directory (UTC)."""
        stamps = [
            self.orders["order_ts"].max(),
            self.after_sales_cases["opened_ts"].max(),
            self.shipments["shipped_ts"].max(),
            self.shipments["delivered_ts"].max(),
            self.customers["first_seen_ts"].max(),
        ]
        stamps = [s for s in stamps if not pd.isna(s)]
        if not stamps:
            raise ValueError("orders: no timestamps, cannot infer as_of")
        return max(stamps)

    def summary(self) -> str:
        lines = [f"{name:18s} {len(df):>10,d} rows" for name, df in self.as_dict().items()]
        if len(self.orders):
            ts = self.orders["order_ts"]
            lines.append(f"orders placed      {ts.min():%Y-%m-%d} .. {ts.max():%Y-%m-%d}")
            lines.append(f"as of              {self.as_of():%Y-%m-%d %H:%M:%S} UTC")
        return "\n".join(lines)


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the contract's columns and dtypes."""
    schema = SCHEMAS[name]
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype) for c in schema.columns})


# ---------------------------------------------------------------------------------------------
# Reading and coercion


def _table_file(path: Path, name: str) -> Path | None:
    """``name.parquet``, ``name.csv`` or the directory ``name/`` of Parquet parts."""
    for ext in (".parquet", ".csv"):
        candidate = path / f"{name}{ext}"
        if candidate.is_file():
            return candidate
    parts = path / name
    return parts if parts.is_dir() else None


def _parquet_parts(parts: Path) -> list[Path]:
    """A table's Parquet parts (``**/*.parquet``, hive-partitioned or not; marker files such as
    ``_SUCCESS`` and hidden files ignored), in path order: the same rows in the same order on
    every read."""
    found = (p for p in parts.rglob("*.parquet") if p.is_file())
    rel = (p.relative_to(parts).parts for p in found)
    return sorted(parts.joinpath(*r) for r in rel if not any(x.startswith((".", "_")) for x in r))


def _read_parts(parts: Path) -> pd.DataFrame:
    """The parts as one frame; ``key=value`` directories (hive partitions) become columns."""
    import pyarrow.dataset as ds

    files = _parquet_parts(parts)
    if not files:
        raise ValueError(f"no Parquet parts (*.parquet) in the directory {parts}")
    dataset = ds.dataset(
        [str(f) for f in files],
        format="parquet",
        partitioning=ds.HivePartitioning.discover(infer_dictionary=False),
        partition_base_dir=str(parts),
    )
    return dataset.to_table().to_pandas()


def read_frames(
    path: str | Path, names: Iterable[str] = TABLE_NAMES, *, required: Iterable[str] | None = None
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Read the tables present in ``path``; a missing required table is a problem."""
    path = Path(path)
    required = set(TABLE_NAMES) - OPTIONAL_TABLES if required is None else set(required)
    frames: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    if not path.is_dir():
        return frames, [Problem("(directory)", "", f"not a directory: {path}", "path")]
    for name in names:
        file = _table_file(path, name)
        if file is None:
            if name in required:
                problems.append(
                    Problem(name, "", f"file missing: expected {name}.parquet or {name}.csv", "")
                )
            continue
        if file.is_file() and (path / name).is_dir():
            problems.append(
                Problem(name, "", f"both {file.name} and a directory {name}/: keep one", "")
            )
            continue
        try:
            if file.is_dir():
                frame = _read_parts(file)
            elif file.suffix == ".parquet":
                frame = pd.read_parquet(file)
            else:
                frame = pd.read_csv(
                    file, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8"
                )
        except Exception as err:  # any unreadable file is reported, not raised
            reason = " ".join(str(err).split()) or type(err).__name__  # one line
            problems.append(Problem(name, "", f"unreadable {file}: {reason}", ""))
            continue
        delimiter = _wrong_delimiter(frame) if file.suffix == ".csv" else None
        if delimiter is not None:
            problems.append(
                Problem(
                    name,
                    "",
                    f"{file}: read as one column {frame.columns[0][:60]!r}; the file seems "
                    f"delimited by {delimiter!r}, the contract's CSV is comma-separated",
                    "",
                )
            )
            continue
        frames[name] = frame
    return frames, problems


def _wrong_delimiter(frame: pd.DataFrame) -> str | None:
    """The delimiter a one-column CSV seems to use instead of the comma (``;``, tab, ``|``)."""
    if frame.shape[1] != 1:
        return None
    header = str(frame.columns[0])
    seen = [d for d in (";", "\t", "|") if d in header]
    return max(seen, key=header.count) if seen else None


def _keys(df: pd.DataFrame, key: str, mask: np.ndarray | pd.Series) -> tuple[str, ...]:
    mask = np.asarray(mask, dtype=bool)
    if key in df.columns:
        return tuple(df.loc[mask, key].astype("str").fillna("<null>").tolist())
    return tuple(f"row {i}" for i in np.flatnonzero(mask))


_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _as_text(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s) or pd.api.types.is_integer_dtype(s):
        # numeric codes read from Parquet: render integers without a trailing .0
        as_int = pd.to_numeric(s, errors="coerce")
        whole = as_int.dropna().astype("float64")
        if ((whole % 1 == 0) & (whole.abs() < MAX_INT)).all():
            return as_int.astype("Int64").astype("str").where(as_int.notna())
    return s.astype("str").where(s.notna())


def _as_timestamp(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(s):
        out = s.dt.tz_localize("UTC")
    else:
        text = s.astype("str").where(s.notna())
        out = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        retry = out.isna() & text.notna()
        if retry.any():
            out = out.copy()
            out[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed")
    # beyond 1677..2262 a timestamp has no nanosecond form: a wrong value, not a crash
    in_range = (out >= _NS_MIN) & (out <= _NS_MAX)
    return out.where(in_range).astype("datetime64[ns, UTC]")


def _as_int(s: pd.Series) -> pd.Series:
    # through float64: a value beyond int64 (1e20) or 2**53 is a wrong value, not a crash
    num = pd.to_numeric(s, errors="coerce").astype("float64")
    return num.where((num % 1 == 0) & (num.abs() < MAX_INT)).astype("Int64")


def _as_bool(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype("boolean")
    text = s.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    return out


def _as_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


_COERCE = {
    "str": _as_text,
    "timestamp": _as_timestamp,
    "float": _as_float,
    "int": _as_int,
    "bool": _as_bool,
}


def _coerce_column(s: pd.Series, col: Column) -> pd.Series:
    """Cast one column to its contract dtype; unparseable values become missing."""
    if col.kind == "int" and s.dtype in ("int64", "Int64"):
        if not (s.abs() >= MAX_INT).any():
            return s  # already typed (Parquet written by us, frames from the scorer)
    elif s.dtype == col.dtype:
        return s  # already typed (Parquet written by us, frames from the scorer)
    return _COERCE[col.kind](s)


def _coerce_table(
    name: str, df: pd.DataFrame
) -> tuple[pd.DataFrame, list[Problem], dict[str, np.ndarray]]:
    """Typed copy of ``df``, its type problems, and per column the rows that failed to parse."""
    schema = SCHEMAS[name]
    problems: list[Problem] = []
    missing = [c.name for c in schema.columns if c.name not in df.columns]
    for column in missing:
        problems.append(Problem(name, column, "column missing", schema.key, (), len(df)))
    out = df.copy()
    unparsed: dict[str, np.ndarray] = {}
    for col in schema.columns:
        if col.name in missing:
            continue
        raw = df[col.name]
        typed = _coerce_column(raw, col)
        bad = typed.isna().to_numpy() & raw.notna().to_numpy()
        if bad.any() and col.kind != "str":
            unparsed[col.name] = bad
            expected = "int (a whole number, |x| < 2^53)" if col.kind == "int" else col.kind
            problems.append(
                Problem(
                    name,
                    col.name,
                    f"wrong type: expected {expected}",
                    schema.key,
                    _keys(df, schema.key, bad),
                )
            )
        out[col.name] = typed
    return out, problems, unparsed


def latest_ts(now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest timestamp the contract accepts: ``now`` (default: the wall clock, read at the
    call) plus ``CLOCK_SKEW``."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now = to_utc(now)
    return now + CLOCK_SKEW


def _has_control(s: pd.Series) -> np.ndarray:
    """Which values contain a control character (computed in Arrow; missing values: False)."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        text = pa.chunked_array(pa.array(s.array))  # the column's own Arrow data, no copy
    else:
        text = pa.array(s.astype("str").where(s.notna()), from_pandas=True, type=pa.string())
    found = pc.match_substring_regex(text, _CONTROL)
    return np.asarray(found.fill_null(False), dtype=bool)


def _column_problems(
    name: str,
    df: pd.DataFrame,
    skip: set[str],
    unparsed: dict[str, np.ndarray],
    latest: pd.Timestamp,
) -> list[Problem]:
    schema = SCHEMAS[name]
    problems: list[Problem] = []

    def add(col: Column, rule: str, mask: pd.Series | np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            problems.append(Problem(name, col.name, rule, schema.key, _keys(df, schema.key, mask)))

    for col in schema.columns:
        if col.name in skip or col.name not in df.columns:
            continue
        s = df[col.name]
        present = s.notna()
        if not col.nullable:
            add(col, "not null", ~present & ~unparsed.get(col.name, False))
        if col.unique:
            add(col, "unique (duplicate key)", s.duplicated(keep=False) & present)
        if col.ge is not None:
            add(col, f">= {col.ge:g}", present & (s.astype("float64") < col.ge).fillna(False))
        if col.gt is not None:
            add(col, f"> {col.gt:g}", present & (s.astype("float64") <= col.gt).fillna(False))
        if col.allowed is not None:
            add(col, "one of " + ", ".join(col.allowed), present & ~member_mask(s, col.allowed))
        if col.pattern is not None:
            ok = s.astype("str").str.fullmatch(col.pattern).fillna(False).astype(bool)
            rule = "ISO 3166-1 alpha-2" if col.pattern == _ISO2 else "ISO 639-1 code list"
            add(col, f"format: {rule}", present & ~ok)
        if col.kind == "float":
            add(col, "finite (not inf, -inf)", present & ~np.isfinite(s.to_numpy("float64")))
        if col.kind == "timestamp":
            add(col, f"not before {EARLIEST_TS:%Y-%m-%d}", present & (s < EARLIEST_TS))
            if not col.future:
                future = f"not in the future (after {latest:%Y-%m-%d %H:%M:%S} UTC)"
                add(col, future, present & (s > latest))
        if col.no_control:
            add(col, "no control characters (NUL, tab, newline, ...)", _has_control(s))
    return problems


def _cross_table_problems(
    frames: Mapping[str, pd.DataFrame], skip: set[tuple[str, str]]
) -> list[Problem]:
    problems: list[Problem] = []
    for name, df in frames.items():
        schema = SCHEMAS[name]
        for fk in schema.foreign_keys:
            target = frames.get(fk.table)
            if target is None or (name, fk.column) in skip or (fk.table, fk.target) in skip:
                continue
            s = df[fk.column]
            mask = s.notna().to_numpy() & ~member_mask(s, target[fk.target])
            if mask.any():
                problems.append(
                    Problem(
                        name,
                        fk.column,
                        f"foreign key: must exist in {fk.table}.{fk.target}",
                        schema.key,
                        _keys(df, schema.key, mask),
                    )
                )

    def time_order(table: str, col: str, earlier: pd.Series, later: pd.Series, rule: str) -> None:
        mask = (later < earlier).fillna(False).to_numpy(dtype=bool)
        if mask.any():
            df = frames[table]
            problems.append(
                Problem(table, col, rule, SCHEMAS[table].key, _keys(df, SCHEMAS[table].key, mask))
            )

    orders = frames.get("orders")
    if orders is not None and not ({("orders", "order_ts"), ("orders", "order_id")} & skip):
        order_ts = orders.drop_duplicates("order_id").set_index("order_id")["order_ts"]
        cases = frames.get("after_sales_cases")
        if cases is not None and ("after_sales_cases", "opened_ts") not in skip:
            time_order(
                "after_sales_cases",
                "opened_ts",
                order_ts.reindex(cases["order_id"]).set_axis(cases.index),
                cases["opened_ts"],
                "not before the order's order_ts",
            )
        ships = frames.get("shipments")
        if ships is not None and ("shipments", "shipped_ts") not in skip:
            time_order(
                "shipments",
                "shipped_ts",
                order_ts.reindex(ships["order_id"]).set_axis(ships.index),
                ships["shipped_ts"],
                "not before the order's order_ts",
            )
    ships = frames.get("shipments")
    if ships is not None and not (
        {("shipments", "shipped_ts"), ("shipments", "delivered_ts")} & skip
    ):
        time_order(
            "shipments",
            "delivered_ts",
            ships["shipped_ts"],
            ships["delivered_ts"],
            "not before shipped_ts",
        )
    rules = frames.get("duty_rules")
    if rules is not None and not (
        {("duty_rules", "valid_from"), ("duty_rules", "valid_to"), ("duty_rules", "country_code")}
        & skip
    ):
        problems += _duty_rule_problems(rules)
    return problems


def _duty_rule_problems(rules: pd.DataFrame) -> list[Problem]:
    """``valid_to`` after ``valid_from``; the rules of one country do not overlap."""
    out: list[Problem] = []

    def add(col: str, rule: str, mask: np.ndarray) -> None:
        if mask.any():
            out.append(Problem("duty_rules", col, rule, "rule_id", _keys(rules, "rule_id", mask)))

    frm, to = rules["valid_from"], rules["valid_to"]
    add("valid_to", "after valid_from", (to <= frm).fillna(False).to_numpy(dtype=bool))
    order = np.lexsort((frm.to_numpy(dtype="int64"), rules["country_code"].astype("str")))
    cc = rules["country_code"].astype("str").to_numpy(dtype=object)[order]
    start = frm.to_numpy(dtype="int64")[order]
    end = to.to_numpy(dtype="int64", na_value=np.iinfo(np.int64).max)[order]
    clash = np.zeros(len(rules), dtype=bool)
    if len(rules) > 1:
        hit = (cc[1:] == cc[:-1]) & (start[1:] < end[:-1])  # starts before the previous ends
        clash[order[1:][hit]] = True
        clash[order[:-1][hit]] = True
    add("valid_from", "the rules of one country do not overlap", clash)
    return out


def _is_missing(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _typed_ok(kind: str, v: object) -> bool:
    """Whether one Python value has the column kind's type (an int in range, a datetime
    pandas can hold)."""
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "float":
        return number
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool) and abs(v) < MAX_INT
    if kind == "bool":
        return isinstance(v, bool)
    return isinstance(v, datetime) and _NS_MIN <= to_utc(pd.Timestamp(v)) <= _NS_MAX


def _value_rules(col: Column, v: object, latest: pd.Timestamp) -> list[str]:
    """The value rules one well-typed value breaks (``"<column>: <rule>"``)."""
    if col.kind == "float" and isinstance(v, int | float) and not abs(v) < float("inf"):
        return [f"{col.name}: finite"]
    out: list[str] = []
    if col.kind == "timestamp" and isinstance(v, datetime):
        ts = to_utc(pd.Timestamp(v))
        if ts < EARLIEST_TS:
            out.append(f"{col.name}: not before {EARLIEST_TS:%Y-%m-%d}")
        if ts > latest and not col.future:
            out.append(f"{col.name}: not in the future")
    if col.no_control and isinstance(v, str) and re.search(_CONTROL, v):
        out.append(f"{col.name}: no control characters")
    if col.ge is not None and isinstance(v, int | float) and v < col.ge:
        out.append(f"{col.name}: >= {col.ge:g}")
    if col.gt is not None and isinstance(v, int | float) and v <= col.gt:
        out.append(f"{col.name}: > {col.gt:g}")
    if col.allowed is not None and v not in col.allowed:
        out.append(f"{col.name}: one of " + ", ".join(col.allowed))
    if col.pattern is not None and not (isinstance(v, str) and re.fullmatch(col.pattern, v)):
        out.append(f"{col.name}: format")
    return out


def row_problems(
    name: str, row: Mapping[str, object], *, latest: pd.Timestamp | None = None
) -> list[str]:
    """The column rules of ``SCHEMAS[name]`` that one row of typed Python values breaks, as
    ``"<column>: <rule>"`` texts. The service's fast path screens a request with it and sends
    anything it flags through ``check_frames`` (the reference, which words the refusals); it may
    flag more than ``check_frames`` (a numeric string), never less (tested). ``latest``: the
    latest timestamp accepted (``latest_ts(now)``; default: the wall clock's)."""
    latest = latest_ts() if latest is None else latest
    out: list[str] = []
    for col in SCHEMAS[name].columns:
        v = row.get(col.name)
        if _is_missing(v):
            if not col.nullable:
                out.append(f"{col.name}: not null")
        elif not _typed_ok(col.kind, v):
            out.append(f"{col.name}: wrong type: expected {col.kind}")
        else:
            out += _value_rules(col, v, latest)
    return out


def check_frames(
    frames: Mapping[str, pd.DataFrame], *, now: pd.Timestamp | None = None
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Coerce the given tables to contract dtypes and check every rule; never raises.

    Works on any subset of tables (cross-table rules run where both sides are present).
    ``now``: the clock timestamps may not be after (default: the wall clock, read once here).
    """
    latest = latest_ts(now)
    typed: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    broken: set[tuple[str, str]] = set()
    unparsed: dict[str, dict[str, np.ndarray]] = {}
    for name, df in frames.items():
        if name not in SCHEMAS:
            continue
        out, coerce_problems, unparsed[name] = _coerce_table(name, df)
        problems += coerce_problems
        broken |= {(name, p.column) for p in coerce_problems if p.rule == "column missing"}
        typed[name] = out
    for name, df in typed.items():
        skip = {c for (t, c) in broken if t == name}
        problems += _column_problems(name, df, skip, unparsed[name], latest)
    problems += _cross_table_problems(typed, broken)
    for name, df in typed.items():
        schema = SCHEMAS[name]
        for col in schema.columns:
            int_column = col.kind == "int" and not col.nullable and col.name in df.columns
            if int_column and df[col.name].notna().all():
                df[col.name] = df[col.name].astype("int64")
    return typed, problems


def coerce_tables(
    frames: Mapping[str, pd.DataFrame],
    *,
    source: str = "tables",
    now: pd.Timestamp | None = None,
) -> Tables:
    """Typed, validated ``Tables`` from in-memory frames; raises ``ContractError``. ``now``: see
    ``check_frames``."""
    missing = [
        Problem(n, "", "table missing", "")
        for n in TABLE_NAMES
        if n not in frames and n not in OPTIONAL_TABLES
    ]
    typed, problems = check_frames(frames, now=now)
    problems = missing + problems
    if problems:
        raise ContractError(problems, source, refused_rows(typed, problems))
    for name in OPTIONAL_TABLES:
        typed.setdefault(name, empty_table(name))
    return Tables(**{n: typed[n] for n in TABLE_NAMES})


def find_problems(tables: Tables, *, now: pd.Timestamp | None = None) -> list[Problem]:
    """Every rule checked on already-typed tables."""
    return check_frames(tables.as_dict(), now=now)[1]


def load_tables(
    path: str | Path, *, log: StepLog = QUIET, now: pd.Timestamp | None = None
) -> Tables:
    """Read and validate a data directory; raises ``ContractError`` naming every problem.
    ``now``: the clock no timestamp may be after (default: the wall clock)."""
    with log.step(f"reading {path}"):
        frames, problems = read_frames(path)
    if problems:
        raise ContractError(problems, str(path))
    with log.step("checking the data contract"):
        return coerce_tables(frames, source=str(path), now=now)


def write_tables(
    frames: Tables | Mapping[str, pd.DataFrame], path: str | Path, *, fmt: str = "parquet"
) -> None:
    """Write one file per table (Parquet or CSV) into ``path``."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    items = frames.as_dict() if isinstance(frames, Tables) else dict(frames)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, df in items.items():
        if fmt == "parquet":
            df.to_parquet(path / f"{name}.parquet", index=False)
        else:
            df.to_csv(path / f"{name}.csv", index=False)


def refused_rows(
    frames: Mapping[str, pd.DataFrame], problems: list[Problem]
) -> dict[str, pd.DataFrame]:
    """For each table, the rows named by ``problems`` with a ``problem`` column saying why."""
    out: dict[str, pd.DataFrame] = {}
    for name, df in frames.items():
        mine = [p for p in problems if p.table == name and p.keys and p.key_column in df.columns]
        if not mine:
            continue
        key = df[SCHEMAS[name].key].astype("str").fillna("<null>")
        reason = pd.Series("", index=df.index, dtype="str")
        for p in mine:
            hit = member_mask(key, p.keys)
            reason = reason.where(~hit, reason + f"{p.column}: {p.rule}; ")
        mask = reason != ""
        out[name] = df.loc[mask].assign(problem=reason[mask].str.rstrip("; "))
    return out


# ---------------------------------------------------------------------------------------------
# New rows against a history: the one authority (the batch, the service's fast path and the
# features all take its answer)

NEW_STATIC_TABLES = ("skus", "customers", "countries", "carriers")
# the keys new orders refer to: (table, column, target table); an unknown customer is a new
# customer (cold start), never refused
_NEW_REFERENCES = (
    ("order_lines", "sku_id", "skus"),
    ("orders", "destination_country", "countries"),
    ("orders", "carrier_id", "carriers"),
)
_STATIC_USED_BY = {
    "skus": ("order_lines", "sku_id"),
    "customers": ("orders", "customer_id"),
    "countries": ("orders", "destination_country"),
    "carriers": ("orders", "carrier_id"),
}
ALREADY_IN_HISTORY = "orders.order_id: already in the history"
NO_LINES = "order_lines: order has no lines"


def unknown_key(table: str, column: str, target: str, value: str) -> str:
    """The refusal of a new row referring to a key neither the history nor the request has."""
    return (
        f"{table}.{column}: unknown {column} {value!r} (not in {target}; "
        f"send its {target} row with the order)"
    )


def static_row_problem(text: str, column: str, keys: Iterable[str]) -> str:
    """The refusal of an order using a new static row that breaks a rule (``text``)."""
    return f"{text} ({column} {', '.join(keys)})"


@functools.cache
def empty_raw(name: str) -> pd.DataFrame:
    """An empty raw table (cached: callers never modify it, ``assign`` makes new frames)."""
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in SCHEMAS[name].column_names})


def _fill_nullable(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Add absent *nullable* contract columns as missing (a required one stays absent)."""
    extra = {
        c.name: pd.Series(None, index=df.index, dtype="object")
        for c in SCHEMAS[name].columns
        if c.nullable and c.name not in df.columns
    }
    return df.assign(**extra) if extra else df


def order_keys(values: pd.Series) -> pd.Series:
    """order_ids as the text keys refusals are mapped to (a missing one is ``"<null>"``)."""
    return values.astype(object).where(values.notna(), "<null>").astype("str").astype(object)


def _known(known: Mapping[str, pd.Index], name: str, values: pd.Series) -> np.ndarray:
    """Which values are keys of the history's table ``name`` (hash lookup, O(len(values)))."""
    return known[name].get_indexer(values.astype("str")) >= 0


@dataclass(frozen=True)
class NewRows:
    """``check_new``'s answer. ``frames``: the typed new rows (``orders``, ``order_lines`` and
    the new static rows: keys the history lacks, a customer without a row added with unknown
    attributes); ``problems``: one row per (order_id, reason), the reasons in rule order;
    ``order_ids`` / ``line_order_ids``: the order_id of each input orders / order_lines row as
    the text key of ``problems`` (None when the column is missing)."""

    frames: dict[str, pd.DataFrame]
    problems: pd.DataFrame
    order_ids: pd.Series | None
    line_order_ids: pd.Series | None

    @property
    def reasons(self) -> pd.Series:
        """order_id -> its reasons joined by ``"; "`` (refused orders only)."""
        reasons = self.problems.groupby("order_id", sort=False)["reason"].agg("; ".join)
        reasons.index = reasons.index.astype("str")
        return reasons.astype("str")


def _new_static_rows(
    raw: Mapping[str, pd.DataFrame], known: Mapping[str, pd.Index], orders: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The request's static rows whose key the history does not know yet (history rows win),
    plus a customers row with unknown attributes for each new customer (cold start)."""
    static: dict[str, pd.DataFrame] = {}
    for name in NEW_STATIC_TABLES:
        df = raw.get(name)
        if df is None or len(df) == 0:
            static[name] = empty_raw(name)
            continue
        df = _fill_nullable(name, df)
        key = SCHEMAS[name].key
        if key in df.columns:
            df = df.loc[~_known(known, name, df[key])]
        static[name] = df
    if "customer_id" in orders.columns:
        cust = orders["customer_id"].dropna().astype("str").drop_duplicates()
        sent = static["customers"].get("customer_id", pd.Series([], dtype="str"))
        unknown = cust[~(_known(known, "customers", cust) | member_mask(cust, sent.astype("str")))]
        if len(unknown):
            cold = _fill_nullable("customers", pd.DataFrame({"customer_id": unknown.to_numpy()}))
            static["customers"] = pd.concat([static["customers"], cold], ignore_index=True)
    return static


@dataclass(frozen=True)
class _NewKeys:
    """The new orders and lines and the order_id of each of their rows (None: no column)."""

    orders: pd.DataFrame
    lines: pd.DataFrame
    order_key: pd.Series | None
    line_key: pd.Series | None

    def source(self, table: str) -> tuple[pd.DataFrame, pd.Series | None]:
        if table == "order_lines":
            return self.lines, self.line_key
        return self.orders, self.order_key


def _hit(ids: pd.Series | np.ndarray, text: str) -> pd.DataFrame:
    ids = pd.Series(np.asarray(ids, dtype=object)).dropna().unique()
    return pd.DataFrame({"order_id": ids, "reason": text})


def _rule_hits(problems: list[Problem], new: _NewKeys) -> list[pd.DataFrame]:
    """Each broken rule of the new rows, as the orders it concerns (a broken static row refuses
    the orders that use it); references are left to ``_reference_hits``."""
    references = {(table, col) for table, col, _ in _NEW_REFERENCES}
    references.add(("orders", "customer_id"))
    hits = []
    for p in problems:
        text = f"{p.table}.{p.column}: {p.rule}" if p.column else f"{p.table}: {p.rule}"
        if (p.table, p.column) in references and p.rule.startswith("foreign key"):
            continue  # checked against the history's keys as well
        if p.table in ("orders", "order_lines"):
            own = new.source(p.table)[1]
            if own is None:
                both = [s for s in (new.order_key, new.line_key) if s is not None]
                hits.append(_hit(pd.concat(both), text))
            elif not p.keys:  # a whole-column problem (column missing)
                hits.append(_hit(own, text))
            else:
                keys = pd.Series(p.keys, dtype=object)
                hits.append(_hit(keys[member_mask(keys, own)], text))
            continue
        src_table, col = _STATIC_USED_BY[p.table]
        src, skey = new.source(src_table)
        if col in src.columns and skey is not None:
            values = src[col].astype("str")
            mask = member_mask(values, p.keys) if p.keys else values.notna().to_numpy()
            hits.append(_hit(skey[mask], static_row_problem(text, col, p.examples)))
    return hits


def _reference_hits(
    new: _NewKeys, static: Mapping[str, pd.DataFrame], known: Mapping[str, pd.Index]
) -> list[pd.DataFrame]:
    """A SKU, country or carrier neither the history nor the request has."""
    hits = []
    for table, col, target in _NEW_REFERENCES:
        src, skey = new.source(table)
        if col not in src.columns or skey is None:
            continue
        values = src[col].astype("str").where(src[col].notna())
        new_keys = static[target].get(SCHEMAS[target].key, pd.Series([], dtype="str"))
        found = _known(known, target, values) | member_mask(values, new_keys.astype("str"))
        bad = (values.notna() & ~found).to_numpy()
        for value in pd.unique(values[bad]):  # a loop over distinct unknown keys
            text = unknown_key(table, col, target, value)
            hits.append(_hit(skey[(values == value).to_numpy()], text))
    return hits


def check_new(
    raw: Mapping[str, pd.DataFrame],
    known: Mapping[str, pd.Index],
    *,
    now: pd.Timestamp | None = None,
) -> NewRows:
    """The contract's rules on new orders against a history, answered per order: every rule of
    the new rows (``check_frames`` on them alone), their references (a SKU, country or carrier
    neither the history nor the request has), an order_id the history already has, an order
    without lines, and a rule broken by a new static row (refusing the orders that use it).

    ``raw``: ``orders``, ``order_lines`` and optionally new ``skus`` / ``customers`` /
    ``countries`` / ``carriers`` rows (a key the history has keeps the history's row);
    ``known``: the history's keys per table (``History.ids``). O(size of the new rows).
    ``now``: no timestamp may be after it (default: the wall clock). Never raises."""
    orders_raw = _fill_nullable("orders", raw["orders"] if "orders" in raw else empty_raw("orders"))
    lines_raw = _fill_nullable(
        "order_lines", raw["order_lines"] if "order_lines" in raw else empty_raw("order_lines")
    )
    static_raw = _new_static_rows(raw, known, orders_raw)
    # the contract's rules on the new rows only; the references into the static tables are
    # checked against the history's keys + the new rows (so a request costs O(its size))
    frames = {"orders": orders_raw, "order_lines": lines_raw}
    frames.update({name: df for name, df in static_raw.items() if len(df)})
    typed, problems = check_frames(frames, now=now)

    new = _NewKeys(
        orders_raw,
        lines_raw,
        order_keys(orders_raw["order_id"]) if "order_id" in orders_raw else None,
        order_keys(lines_raw["order_id"]) if "order_id" in lines_raw else None,
    )
    hits = _rule_hits(problems, new) + _reference_hits(new, static_raw, known)
    if new.order_key is not None:
        # the order must not exist in the history already, and must have at least one line
        order_key = new.order_key
        hits.append(_hit(order_key[_known(known, "orders", order_key)], ALREADY_IN_HISTORY))
        with_lines = new.line_key if new.line_key is not None else pd.Series([], dtype="str")
        hits.append(_hit(order_key[~member_mask(order_key, with_lines)], NO_LINES))
    hits = [h for h in hits if len(h)]
    if hits:
        by_order = pd.concat(hits, ignore_index=True).drop_duplicates(ignore_index=True)
    else:
        by_order = pd.DataFrame({"order_id": pd.Series([], dtype=object), "reason": ""})
    return NewRows(typed, by_order, new.order_key, new.line_key)


def check_new_order(
    order: Mapping[str, object],
    lines: Iterable[Mapping[str, object]],
    static: Mapping[str, Iterable[Mapping[str, object]]],
    known: Mapping[str, pd.Index],
    *,
    latest: pd.Timestamp | None = None,
) -> list[str]:
    """``check_new`` for one order of plain Python values (the service's fast path, no frames):
    the reasons it would refuse the order for, empty when it accepts it. The reference answers
    are ``check_new``'s: the references, the order already in the history and the order without
    lines are worded as there (the same texts); the column rules are ``row_problems``'s, which
    may flag more than ``check_frames`` (a new static row the order does not use, a numeric
    string), never less (tested). ``static``: new rows per static table, as in ``check_new``;
    ``latest``: see ``row_problems``."""
    latest = latest_ts() if latest is None else latest
    out = [f"orders.{p}" for p in row_problems("orders", order, latest=latest)]
    order_id = order.get("order_id")
    lines = [{**ln, "order_id": order_id} for ln in lines]
    for ln in lines:
        out += [f"order_lines.{p}" for p in row_problems("order_lines", ln, latest=latest)]
    used = {"order_lines": lines, "orders": [order]}
    new_keys: dict[str, set[object]] = {}
    for name in NEW_STATIC_TABLES:
        key = SCHEMAS[name].key
        rows = [r for r in static.get(name, ()) if not _knows(known, name, r.get(key))]
        keys = [r.get(key) for r in rows]
        new_keys[name] = set(keys)
        col = _STATIC_USED_BY[name][1]
        for r in rows:
            broken = row_problems(name, r, latest=latest)
            if keys.count(r.get(key)) > 1:
                broken.append(f"{key}: unique (duplicate key)")
            for p in broken:
                out.append(static_row_problem(f"{name}.{p}", col, [str(r.get(key))]))
    for table, col, target in _NEW_REFERENCES:
        for row in used[table]:
            value = row.get(col)
            if isinstance(value, str) and not (
                _knows(known, target, value) or value in new_keys[target]
            ):
                out.append(unknown_key(table, col, target, value))
    if isinstance(order_id, str) and _knows(known, "orders", order_id):
        out.append(ALREADY_IN_HISTORY)
    if not lines:
        out.append(NO_LINES)
    return list(dict.fromkeys(out))  # each reason once, in rule order (as check_new)


def _knows(known: Mapping[str, pd.Index], name: str, key: object) -> bool:
    """Whether the history's table ``name`` has the key (a hash lookup, ~1 µs)."""
    return isinstance(key, str) and key in known[name]


# ---------------------------------------------------------------------------------------------
# The contract as text


def contract_markdown() -> str:
    """The contract, rendered from ``SCHEMAS`` (the code's own rules)."""
    out = [
        "# returnrisk data contract",
        "",
        "A data directory holds one file per table, `<table>.parquet` or `<table>.csv` "
        "(UTF-8, header row). Column names are exact; extra columns are kept and ignored. "
        "Timestamps are UTC (naive ones are read as UTC). Money is in one reporting currency.",
        "",
    ]
    for schema in SCHEMAS.values():
        optional = " (optional)" if schema.name in OPTIONAL_TABLES else ""
        out += [f"## {schema.name}{optional} — {schema.doc}", ""]
        out += ["| column | type | rules |", "|---|---|---|"]
        for col in schema.columns:
            rules = "; ".join(col.rules() + ([col.doc] if col.doc else []))
            out.append(f"| {col.name} | {col.kind} | {rules} |")
        out.append("")
    out += [
        "## Cross-table rules",
        "",
        *(
            f"- `{s.name}.{fk.column}` must exist in `{fk.table}.{fk.target}`"
            for s in SCHEMAS.values()
            for fk in s.foreign_keys
        ),
        "- `after_sales_cases.opened_ts` and `shipments.shipped_ts` are not before the order's "
        "`order_ts`; `shipments.delivered_ts` is not before `shipped_ts`",
        "",
        "## Label",
        "",
        "An order is positive when it has at least one case opened within `label_window_days` "
        "(default 90) of its `order_ts`, and mature when `order_ts + label_window_days <= as_of` "
        "(default: the latest timestamp in the directory). Only mature orders train or measure.",
    ]
    return "\n".join(out)
