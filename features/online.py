"""The online store: ``build_features`` for one new order, in ~1.5 ms, without pandas.

Feast serves the same feature definitions from two stores: the offline store answers
point-in-time joins over tables (training, batch scoring), the online store answers one entity
at a time from what it keeps ready (the service). Here the offline path is ``build_features``
and ``OnlineFeatures`` is the online store of a prepared ``History``:

- the history's event indexes (customer orders, lane cases, SKU items, ...: sorted once, with
  running sums) are queried for the order's keys at the order's time with
  ``kernels.query_events``: the same as-of join ``build_features`` runs, so an order sees
  the events known strictly before it, whether placed after the history's export or earlier
  the same day;
- the key vocabularies and the static tables (SKUs, customers, countries, carriers) are held as
  Python lookups.

``order_features`` hands the order's rows and aggregates to the very formula functions
``build_features`` uses (``order_value_features``, ``basket_features``, ``customer_features``,
``lane_features``, ``item_features``), on arrays of one order and its items. It covers one order
alone (no other new order can then be history for it) on a complete history (no event after its
``as_of``), as the scoring state prepares it; anything else goes through ``build_features``.
``tests/test_features_online.py`` checks that both give the same row, bit for bit, on every new
order of a generated world and on hypothesis variations (cold starts, new SKUs, countries,
carriers, missing values, orders before and after the export).

``variants`` gives the what-if rows of one order (another carrier, another incoterm) from its own
row: only the parts of a row that depend on the carrier or the incoterm are built again, by the
same steps ``order_features`` builds them with, for all the variants at once (~0.1 ms a variant
instead of a whole row's ~0.8 ms); each equals the changed order built afresh (tested).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.arrays import DAY_NS, NAT, to_utc, ts_int
from returnrisk.contract import SCHEMAS
from returnrisk.duties import duties_in_force, duty_rules_of

from .families import (
    CUSTOMER_CASE_WINDOWS,
    CUSTOMER_ORDER_WINDOWS,
    DESTINATION_SOURCES,
    DESTINATION_WINDOWS,
    ITEM_LEVELS,
    LANE_SOURCES,
    LANE_WINDOWS,
    MATURE_SOURCES,
    basket_features,
    customer_features,
    item_features,
    lane_features,
    order_value_features,
)
from .history import LIFETIME, History
from .kernels import (
    PACK,
    Groups,
    PriorAggregate,
    as_float,
    bool_as_float,
    flag,
    query_events,
    query_one,
    smoothed_rate,
    split_columns,
    windowed,
)
from .specs import (
    CATEGORICAL_FEATURES,
    CONTEXT_COLUMNS,
    FEATURE_SPECS,
    HEAD_COLUMNS,
    STRING_CONTEXT,
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GLOBAL_TYPES = ("case", "not_received", "damaged", "duty_dispute")  # lane_features' priors
_STR_HEAD = ("order_id", "customer_id", "destination_country", "carrier_id")
_SKU_COLUMNS = (
    "sku_id",
    "product_id",
    "category",
    "brand",
    "supplier_id",
    "size",
    "listing_languages",
    "has_size_chart",
    "n_images",
    "weight_g",
    "list_price",
)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT


def _text(v: Any) -> str | None:
    return None if _missing(v) else str(v)


def _float(v: Any) -> float:
    return np.nan if _missing(v) else float(v)


def _local_codes(values: Sequence[Any]) -> np.ndarray:
    """Integer codes of a few values (an order's items): equal values, equal codes; None -1."""
    seen: dict[Any, int] = {}
    return np.asarray(
        [-1 if v is None else seen.setdefault(v, len(seen)) for v in values], dtype=np.int64
    )


class _Vocab:
    """A key's codes in the prepared history (``History.vocab``): value -> code, -1 if unseen."""

    def __init__(self, index: pd.Index):
        values = index.tolist()
        self.codes = {v: i for i, v in enumerate(values) if not _missing(v)}
        self.na = next((i for i, v in enumerate(values) if _missing(v)), -1)

    def code(self, value: Any) -> int:
        return self.na if _missing(value) else self.codes.get(value, -1)


def _languages(text: str | None) -> frozenset[str] | None:
    """A comma-separated language list ("en, de") as a set (``kernels.split_tokens``' tokens)."""
    return None if text is None else frozenset(x.strip() for x in text.split(","))


def _value(kind: str, v: Any) -> Any:
    """One contract value, normalised as ``_Table`` holds its columns."""
    if kind == "str":
        return _text(v)
    if kind == "bool":
        return np.nan if _missing(v) else float(bool(v))
    if kind == "timestamp":
        return NAT if _missing(v) else timestamp_ns(v)
    return _float(v)


class _Table:
    """The columns the features read of one static table, keyed by the table's key and
    normalised: text -> str | None, numbers and flags -> float (NaN when missing), timestamps
    -> int ns (``NAT`` when missing). ``row`` also normalises a row the request sends for a key
    the history does not have, so both kinds of rows are read alike."""

    def __init__(self, df: pd.DataFrame, table: str, columns: Sequence[str]):
        schema = SCHEMAS[table]
        self.key = schema.key
        self.kinds = {c.name: c.kind for c in schema.columns if c.name in columns}
        self.pos = dict(zip(df[schema.key].tolist(), range(len(df)), strict=True))
        self.columns: dict[str, Any] = {}
        for name, kind in self.kinds.items():
            col = df[name]
            if kind == "str":
                self.columns[name] = col.astype(object).where(col.notna(), None).tolist()
            elif kind == "bool":
                self.columns[name] = bool_as_float(col)
            elif kind == "timestamp":
                self.columns[name] = ts_int(col)
            else:
                self.columns[name] = as_float(col)

    def row(self, key: Any, new_rows: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any] | None:
        """The history's row of ``key``, else the request's (normalised), else None."""
        pos = self.pos.get(key, -1)
        if pos >= 0:
            return {name: values[pos] for name, values in self.columns.items()}
        if key in new_rows:
            return {
                name: _value(kind, new_rows[key].get(name)) for name, kind in self.kinds.items()
            }
        return None

    def require(self, key: Any, new_rows: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
        """``row``, for a key the request's validation already found in the history or the
        request; a miss here is a bug, not bad input."""
        found = self.row(key, new_rows)
        if found is None:
            raise ValueError(f"unknown {self.key} {key!r}")
        return found

    def missing_row(self) -> dict[str, Any]:
        """A row with every value missing."""
        return {name: _value(kind, None) for name, kind in self.kinds.items()}


@dataclass(frozen=True)
class OnlineOrder:
    """One new order, with plain Python values named as in the data contract.

    ``order``: the orders row (``order_ts`` a timezone-aware or UTC ``datetime``/``Timestamp``);
    ``lines``: its order_lines rows (``sku_id``, ``quantity``, ``unit_price``); ``skus`` /
    ``customers`` / ``countries`` / ``carriers``: rows for keys the history does not have (a key
    the history has keeps the history's row, as in ``build_features``)."""

    order: Mapping[str, Any]
    lines: Sequence[Mapping[str, Any]]
    skus: Sequence[Mapping[str, Any]] = ()
    customers: Sequence[Mapping[str, Any]] = ()
    countries: Sequence[Mapping[str, Any]] = ()
    carriers: Sequence[Mapping[str, Any]] = ()


def timestamp_ns(value: Any) -> int:
    """UTC nanoseconds of a ``datetime`` / ``Timestamp`` (naive values are UTC, as in loading)."""
    return int(to_utc(value).as_unit("ns").value)


class OnlineFeatures:
    """The online store of a prepared history (see the module docstring)."""

    def __init__(self, history: History):
        if not history.complete:
            raise ValueError("the online store needs a complete history (no event after as_of)")
        self.history = history
        self.config = history.config
        self.k = float(history.config.prior_strength)
        self.as_of_ns = int(history.as_of.as_unit("ns").value)
        self.vocab = {name: _Vocab(index) for name, index in history.vocab.items()}
        self.events = history.events  # sorted once, with running sums: a query is a search
        t = history.tables
        self._apparel = {c.lower() for c in self.config.apparel_categories}
        self.tables = {
            "skus": _Table(t.skus, "skus", _SKU_COLUMNS),
            "countries": _Table(
                t.countries,
                "countries",
                ("region", "default_incoterm", "languages", "duty_de_minimis"),
            ),
            "carriers": _Table(
                t.carriers, "carriers", ("carrier_name", "service_level", "tracked")
            ),
            "customers": _Table(
                t.customers, "customers", ("segment", "country_code", "first_seen_ts")
            ),
        }
        self.order_ids = history.ids["orders"]
        self.duty_rules = duty_rules_of(t.duty_rules)

    # -- lookups ----------------------------------------------------------------------------
    def knows(self, table: str, key: Any) -> bool:
        """Whether the history has a row of ``table`` with this key."""
        if table == "orders":
            return bool(self.order_ids.get_indexer([key])[0] >= 0)
        return key in self.tables[table].pos

    def query(self, name: str, codes: Any, t_ns: int) -> PriorAggregate:
        """The history's events of index ``name`` with these key codes known strictly before
        ``t_ns`` (``kernels.query_events``, as ``build_features`` queries them); an unseen
        key (code -1) has none."""
        index = self.events[name]
        if np.ndim(codes) == 0:  # one key: the scalar query
            code = int(codes)
            return query_one(index, code if code >= 0 else index.n_keys, t_ns, with_times=True)
        c = np.asarray(codes, dtype=np.int64)
        c = np.where(c >= 0, c, index.n_keys)
        return query_events(index, c, np.full(len(c), t_ns, np.int64), with_times=True)

    def query_windows(
        self,
        name: str,
        codes: Any,
        t_ns: int,
        windows: tuple[int, ...],
        sources: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[int, Any]:
        """``query`` over the lifetime (``LIFETIME``) and per recent window of ``w`` days
        (``[t - w, t)``, as ``Context.prior_windows``), split by ``sources`` when given."""
        now = self.query(name, codes, t_ns)
        aggs = {LIFETIME: now}
        for w in windows:
            aggs[w] = windowed(now, self.query(name, codes, t_ns - w * DAY_NS))
        if sources is None:
            return aggs
        return {w: split_columns(agg, sources) for w, agg in aggs.items()}

    # -- the features -----------------------------------------------------------------------
    # one pass over one order, the service's hot path (~1 ms): its steps share a dozen values
    def order_features(self, new: OnlineOrder) -> dict[str, Any]:
        """The feature-table row of ``new`` (every column of ``build_features``; numbers as
        1-element float arrays, strings as 1-element lists), for an order the contract accepts
        (``contract.check_new_order``, which refuses unknown keys and orders without lines); the
        ``ValueError`` raised for one it would refuse is a bug check, not a refusal."""
        cfg, k = self.config, self.k
        o = new.order
        t_ns = timestamp_ns(o["order_ts"])
        if not new.lines:
            raise ValueError("the order has no lines")
        q_ts = np.asarray([t_ns], dtype=np.int64)
        out: dict[str, Any] = {}
        new_rows = _new_rows(new)

        # -- static attributes of the order (families.order_attributes)
        out["channel"] = [_text(o.get("channel"))]
        out["payment_method"] = [_text(o.get("payment_method"))]
        dest = _text(o.get("destination_country"))
        country = self.tables["countries"].require(dest, new_rows["countries"])
        out["destination_region"] = [country["region"]]
        # the duties and the order's own numbers (what-if: the incoterm's part, see variants)
        self._incoterm_part(out, o, q_ts, dest, country, [_text(o.get("incoterm"))])

        customer = _text(o.get("customer_id"))
        # a new customer, with or without a row, has the attributes it was sent (cold start)
        customers = self.tables["customers"]
        buyer = customers.row(customer, new_rows["customers"]) or customers.missing_row()
        home = buyer["country_code"]
        out["customer_segment"] = [buyer["segment"]]
        out["ships_to_customer_country"] = flag(
            np.asarray([home == dest]), known=np.asarray([home is not None])
        )

        # -- items: lines per SKU, in the order build_features sorts them (history.order_items)
        items = self._items(new, new_rows["skus"])
        s_rank, qty, item_value, n_lines, max_price, attrs = items
        g = Groups(np.zeros(len(s_rank), dtype=np.int64), 1)
        dest_set = _languages(country["languages"])
        langs = attrs["languages"]
        main = basket_features(
            out,
            g,
            n_lines=n_lines,
            qty=qty,
            value=item_value,
            max_price=max_price,
            list_price=attrs["list_price"],
            weight=attrs["weight_g"],
            images=attrs["n_images"],
            size_chart=attrs["has_size_chart"],
            apparel=attrs["apparel"],
            category=_local_codes(attrs["category"]),
            product=_local_codes(attrs["product"]),
            size=_local_codes(attrs["size"]),
            language_match=np.asarray(
                [bool(x and dest_set and (x & dest_set)) for x in langs], dtype=bool
            ),
            language_known=np.asarray(
                [x is not None and dest_set is not None for x in langs], dtype=bool
            ),
        )
        out["main_category"] = [attrs["category"][int(main[0])]]
        out["main_brand"] = [attrs["brand"][int(main[0])]]

        # -- labels (returnrisk.labels.order_outcomes of an order with no case of its own, scored
        # as of max(history, order))
        mature = t_ns + cfg.label_window_days * DAY_NS <= max(self.as_of_ns, t_ns)
        out["mature"] = np.asarray([mature])
        out["label"] = np.asarray([0.0 if mature else np.nan])
        out["first_case_ts"] = pd.DatetimeIndex(
            np.asarray([NAT], dtype=np.int64).view("datetime64[ns]")
        ).tz_localize("UTC")

        # -- history: every aggregate is the history's events before t, then the same formulas
        # as build_features (customer_features, lane_features, item_features)
        def query(name: str, codes: Any) -> PriorAggregate:
            return self.query(name, codes, t_ns)

        total = self._totals(t_ns)  # the whole history before t (asked by several families)

        cust = self.vocab["customer"].code(customer)
        mature_prior = self._mature_prior(total)
        customer_features(
            out,
            k,
            q_ts,
            smoothed_rate(total("case"), total("orders"), cfg.default_case_rate, k),
            self.query_windows("customer_orders", cust, t_ns, CUSTOMER_ORDER_WINDOWS),
            self.query_windows("customer_cases", cust, t_ns, CUSTOMER_CASE_WINDOWS),
            query("customer_with_case", cust).count,
            np.asarray([buyer["first_seen_ts"]], dtype=np.int64),
            split_columns(query("customer_mature", cust), MATURE_SOURCES),
            mature_prior,
        )

        # the carrier's attributes and the lane (what-if: the carrier's part, see variants)
        self._carrier_part(out, t_ns, dest, [_text(o.get("carrier_id"))], new_rows, total)

        d_code = self.vocab["destination"].code(dest)
        cat_codes = np.asarray([self.vocab["category"].code(c) for c in attrs["category"]])
        prod_codes = [self.vocab["product"].code(x) for x in attrs["product"]]

        def paired(
            name: str, first: Sequence[int] | np.ndarray, second: Sequence[int] | np.ndarray
        ) -> list[int]:
            """Codes of key pairs (``Context.combine``): -1 when either key is unseen."""
            vocab = self.vocab[name]
            return [
                vocab.code(a * PACK + b) if a >= 0 and b >= 0 else -1
                for a, b in zip(first, second, strict=True)
            ]

        n_items = len(cat_codes)
        level_codes = {
            "category": cat_codes,
            "sku": [self.vocab["sku"].code(x) for x in attrs["sku_id"]],
            "product": prod_codes,
            "supplier": [self.vocab["supplier"].code(x) for x in attrs["supplier"]],
            "brand": [self.vocab["brand"].code(x) for x in attrs["brand_key"]],
            "category_destination": paired("category_destination", cat_codes, [d_code] * n_items),
            "customer_category": paired("customer_category", [cust] * n_items, cat_codes),
            "customer_product": paired("customer_product", [cust] * n_items, prod_codes),
        }
        history = {
            level: self.query_windows(
                level, codes, t_ns, ITEM_LEVELS[level].windows, ITEM_LEVELS[level].sources
            )
            for level, codes in level_codes.items()
        }
        best = item_features(
            out,
            k,
            cfg,
            g,
            item_value,
            qty,
            total("item_cases"),
            total("items"),
            history,
            np.full(n_items, mature_prior[0]),
            query("customer_sized_returns", cust).count,
        )
        out["top_sku_id"] = [attrs["sku_id"][int(best[0])]]
        out["top_category"] = [attrs["category"][int(best[0])]]

        out["order_id"] = [_text(o.get("order_id"))]
        out["order_ts"] = pd.DatetimeIndex(q_ts.view("datetime64[ns]")).tz_localize("UTC")
        out["customer_id"] = [customer]
        out["destination_country"] = [dest]
        return out

    # == what-if variants ========================================================================
    # The order changed (another carrier, another incoterm) differs from the order as it is only
    # in the columns that depend on its carrier or incoterm: the carrier's attributes and the
    # lane family (lane_features), the duties and the order's own numbers
    # (order_value_features). ``order_features`` builds those parts with ``_incoterm_part`` and
    # ``_carrier_part``; ``variants`` runs the same two for every variant at once and keeps the
    # rest of the base row. ``tests/test_features_online.py`` holds each variant equal, bit for
    # bit and every column, to ``order_features`` of the order changed.

    VARIANT_FIELDS = ("carrier_id", "incoterm")

    def variants(
        self, new: OnlineOrder, base: Mapping[str, Any], changes: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The rows of ``new`` with each of ``changes`` applied (``{"carrier_id": c}``,
        ``{"incoterm": i}`` or both; ``None``: missing, as in the order), as one mapping of
        column -> values like ``order_features``' (row i: ``changes[i]``): ``base``
        (``order_features(new)``) with the carrier's and the incoterm's parts built again for
        all of them at once."""
        bad = sorted({key for c in changes for key in c} - set(self.VARIANT_FIELDS))
        if bad:
            raise ValueError(f"a variant changes {' or '.join(self.VARIANT_FIELDS)}, not {bad}")
        n, o = len(changes), new.order
        if n == 0:
            return {name: v[:0] for name, v in base.items()}
        t_ns = timestamp_ns(o["order_ts"])
        new_rows = _new_rows(new)
        dest = _text(o.get("destination_country"))
        country = self.tables["countries"].require(dest, new_rows["countries"])
        part: dict[str, Any] = {}
        incoterms = [_text(c.get("incoterm", o.get("incoterm"))) for c in changes]
        self._incoterm_part(part, o, np.asarray([t_ns], dtype=np.int64), dest, country, incoterms)
        carriers = [_text(c.get("carrier_id", o.get("carrier_id"))) for c in changes]
        self._carrier_part(part, t_ns, dest, carriers, new_rows, self._totals(t_ns))
        return {name: part[name] if name in part else _repeat(v, n) for name, v in base.items()}

    def _incoterm_part(
        self,
        out: dict[str, Any],
        o: Mapping[str, Any],
        q_ts: np.ndarray,
        dest: str | None,
        country: Mapping[str, Any],
        incoterms: Sequence[str | None],
    ) -> None:
        """The columns that depend on the incoterm: the duties in force at the order's time and
        ``order_value_features``, one row per incoterm (None: the destination's default)."""
        n = len(incoterms)
        de_minimis, default_incs = duties_in_force(
            self.duty_rules,
            np.asarray([self.duty_rules.position.get(dest, -1) if dest is not None else -1]),
            q_ts,
            np.asarray([country["duty_de_minimis"]], dtype=np.float64),
            np.asarray([country["default_incoterm"]], dtype=object),
        )
        eff = [inc if inc is not None else default_incs[0] for inc in incoterms]
        out["effective_incoterm"] = eff
        when = _EPOCH + dt.timedelta(microseconds=int(q_ts[0]) // 1000)

        def each(value: Any, dtype: Any = np.float64) -> np.ndarray:
            return np.full(n, value, dtype=dtype)

        order_value_features(
            out,
            each(when.hour, np.int64),
            each(when.weekday(), np.int64),
            each(when.month, np.int64),
            each(when.day, np.int64),
            value=each(_float(o.get("order_value"))),
            discount=each(_float(o.get("discount_value"))),
            shipping_fee=each(_float(o.get("shipping_fee"))),
            promised_days=each(_float(o.get("promised_delivery_days"))),
            de_minimis=np.repeat(de_minimis, n),
            ddu=np.asarray([e == "DDU" for e in eff], dtype=bool),
            incoterm_known=np.asarray([e is not None for e in eff], dtype=bool),
        )

    def _carrier_part(
        self,
        out: dict[str, Any],
        t_ns: int,
        dest: str | None,
        carriers: Sequence[str | None],
        new_rows: Mapping[str, Mapping[Any, Mapping[str, Any]]],
        total: Callable[[str], np.ndarray],
    ) -> None:
        """The columns that depend on the carrier: ``carrier_id``, the service's attributes and
        ``lane_features`` (the lane's history; its destination and global priors are the same
        for every carrier), one row per carrier. ``total``: ``_totals(t_ns)``."""
        n = len(carriers)
        none = {"carrier_name": None, "service_level": None, "tracked": np.nan}
        table = self.tables["carriers"]
        ship_with = [
            none if c is None else table.require(c, new_rows["carriers"]) for c in carriers
        ]
        out["carrier_name"] = [s["carrier_name"] for s in ship_with]
        out["carrier_service_level"] = [s["service_level"] for s in ship_with]
        out["carrier_tracked"] = np.asarray([s["tracked"] for s in ship_with], dtype=np.float64)
        out["carrier_id"] = list(carriers)

        d_code = self.vocab["destination"].code(dest)
        c_codes = [self.vocab["carrier"].code(c) for c in carriers]
        lanes = self.vocab["lane"]
        lane_codes = [
            lanes.code(d_code * PACK + c) if d_code >= 0 and c >= 0 else -1 for c in c_codes
        ]
        rows = np.zeros(n, dtype=np.int64)

        def query(name: str, codes: Any) -> PriorAggregate:  # one row per carrier
            return self.query(name, rows + codes, t_ns)

        lane_features(
            out,
            self.k,
            self.config,
            self.query_windows(
                "lane", np.asarray(lane_codes, dtype=np.int64), t_ns, LANE_WINDOWS, LANE_SOURCES
            ),
            self.query_windows(
                "destination", rows + d_code, t_ns, DESTINATION_WINDOWS, DESTINATION_SOURCES
            ),
            np.repeat(total("orders"), n),
            {t: np.repeat(total(t), n) for t in _GLOBAL_TYPES},
            query("ships", 0),
            np.repeat(self._mature_prior(total), n),
        )

    def _mature_prior(self, total: Callable[[str], np.ndarray]) -> np.ndarray:
        """The global share of matured orders with a case before t (``Cases.mature_prior``)."""
        return smoothed_rate(
            total("mature_case"), total("mature"), self.config.default_case_rate, self.k
        )

    def _totals(self, t_ns: int) -> Callable[[str], np.ndarray]:
        """A key-less index's count before ``t_ns`` (the whole history's), queried once."""
        totals: dict[str, np.ndarray] = {}

        def total(name: str) -> np.ndarray:
            if name not in totals:  # asked by several families
                totals[name] = self.query(name, 0, t_ns).count
            return totals[name]

        return total

    # == end of the what-if variants ===============================================================

    def _items(
        self, new: OnlineOrder, new_skus: Mapping[str, Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Lines summed per SKU, sorted as ``history.order_items`` sorts them: by the SKU's row in
        the request's skus table (the history's rows in history order, then the new rows)."""
        n_hist = len(self.tables["skus"].pos)
        new_order: dict[Any, int] = {key: i for i, key in enumerate(new_skus)}
        sku_ids = [_text(ln.get("sku_id")) for ln in new.lines]
        skus = self.tables["skus"]
        # the contract (check_new_order) refuses unknown SKUs: a miss in ``require`` is a bug
        found = {s: skus.require(s, new_skus) for s in dict.fromkeys(sku_ids)}
        rank = [skus.pos.get(s, n_hist + new_order.get(s, 0)) for s in sku_ids]
        key = np.asarray(rank, dtype=np.int64)
        order = np.argsort(key, kind="stable")
        key = key[order]
        qty = np.asarray([_float(ln.get("quantity")) for ln in new.lines])[order]
        price = np.asarray([_float(ln.get("unit_price")) for ln in new.lines])[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ukey = key[starts]
        agg_qty = np.add.reduceat(qty, starts)
        agg_val = np.add.reduceat(qty * price, starts)
        agg_lines = np.diff(np.r_[starts, len(key)]).astype(np.float64)
        agg_max = np.fmax.reduceat(price, starts)

        rows = [  # a loop over the order's few SKUs, in item order
            found[sku] for sku in dict.fromkeys(sku_ids[i] for i in order)
        ]
        attrs: dict[str, Any] = {c: [r[c] for r in rows] for c in _SKU_COLUMNS}
        attrs["product"] = [  # build: product_id.fillna(sku_id)
            r["sku_id"] if r["product_id"] is None else r["product_id"] for r in rows
        ]
        attrs["supplier"] = [  # families.own_or_sku
            "\0" + r["sku_id"] if r["supplier_id"] is None else r["supplier_id"] for r in rows
        ]
        attrs["brand_key"] = [
            "\0" + r["sku_id"] if r["brand"] is None else r["brand"] for r in rows
        ]
        attrs["languages"] = [_languages(r["listing_languages"]) for r in rows]
        attrs["apparel"] = np.asarray(
            [
                (r["category"] is not None and r["category"].lower() in self._apparel)
                or r["size"] is not None
                for r in rows
            ],
            dtype=bool,
        )
        for c in ("has_size_chart", "n_images", "weight_g", "list_price"):
            attrs[c] = np.asarray(attrs[c], dtype=np.float64)
        return ukey, agg_qty, agg_val, agg_lines, agg_max, attrs


def _new_rows(new: OnlineOrder) -> dict[str, dict[Any, Mapping[str, Any]]]:
    """The request's static rows by table and key."""
    return {
        name: {r[SCHEMAS[name].key]: r for r in rows}
        for name, rows in (
            ("skus", new.skus),
            ("customers", new.customers),
            ("countries", new.countries),
            ("carriers", new.carriers),
        )
    }


def _repeat(values: Any, n: int) -> Any:
    """One row's values (``order_features``': a list, an array or a time index) n times."""
    if isinstance(values, list):
        return values * n
    return values.repeat(n)


def features_frame(row: Mapping[str, Any]) -> pd.DataFrame:
    """``order_features`` as a one-row frame with the columns and dtypes of ``build_features``."""
    names = list(HEAD_COLUMNS) + list(FEATURE_SPECS) + list(CONTEXT_COLUMNS)
    cols: dict[str, Any] = {}
    for name in names:
        v = row[name]
        if name == "mature":
            cols[name] = np.asarray(v, dtype=bool)
        elif name in ("order_ts", "first_case_ts"):
            cols[name] = pd.DatetimeIndex(v).tz_convert("UTC").array
        elif name in _STR_HEAD or name in CATEGORICAL_FEATURES or name in STRING_CONTEXT:
            cols[name] = pd.array(v, dtype="str")
        else:
            cols[name] = np.asarray(v, dtype=np.float64)
    return pd.DataFrame(cols)
