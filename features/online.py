"""The online store: ``build_features`` for one new order, in ~1.5 ms, without pandas.

Feast serves the same feature definitions from two stores: the offline store answers
point-in-time joins over tables (training, batch scoring), the online store answers one entity
at a time from what it keeps ready (the service). Here the offline path is ``build_features``
and ``OnlineFeatures`` is the online store of a prepared ``History``:

- the history's event indexes (customer orders, lane cases, SKU items, ...: sorted once, with
  running sums) are queried for the order's keys at the order's time with
  ``point_in_time.query_events``: the same as-of join ``build_features`` runs, so an order sees
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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.contract import SCHEMAS

from .build import (
    _NAT,
    _STR_CONTEXT,
    DAY_NS,
    DESTINATION_SOURCES,
    ITEM_SOURCES,
    LANE_SOURCES,
    History,
    _bool_num,
    _flag,
    _Groups,
    _num,
    basket_features,
    customer_features,
    item_features,
    lane_features,
    order_value_features,
)
from .point_in_time import PriorAggregate, query_events, smoothed_rate, split_columns, ts_int
from .specs import CATEGORICAL_FEATURES, CONTEXT_COLUMNS, FEATURE_SPECS, HEAD_COLUMNS

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STR_HEAD = ("order_id", "customer_id", "destination_country", "carrier_id")
_PACK = 2**32  # build._combine packs two codes as a * 2**32 + b


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


class _Rows:
    """A static table as key -> row position plus its columns as Python lists / numpy arrays."""

    def __init__(self, df: pd.DataFrame, key: str):
        self.pos = dict(zip(df[key].tolist(), range(len(df)), strict=True))
        self.df = df

    def text(self, col: str) -> list[str | None]:
        s = self.df[col]
        return s.astype(object).where(s.notna(), None).tolist()


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
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ns").value)


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
        apparel = {c.lower() for c in self.config.apparel_categories}

        skus = _Rows(t.skus, "sku_id")
        self.skus = skus
        self.sku_text = {
            c: skus.text(c) for c in ("sku_id", "category", "brand", "size", "product_id")
        }
        self.sku_langs = [
            None if v is None else frozenset(x.strip() for x in v.split(","))
            for v in skus.text("listing_languages")
        ]
        self.sku_num = {
            "has_size_chart": _bool_num(t.skus["has_size_chart"]),
            "n_images": _num(t.skus["n_images"]),
            "weight_g": _num(t.skus["weight_g"]),
            "list_price": _num(t.skus["list_price"]),
        }
        self.sku_apparel = [
            (c is not None and c.lower() in apparel) or s is not None
            for c, s in zip(self.sku_text["category"], self.sku_text["size"], strict=True)
        ]
        self._apparel = apparel

        self.countries = _Rows(t.countries, "country_code")
        self.country_text = {
            c: self.countries.text(c) for c in ("region", "default_incoterm", "languages")
        }
        self.country_de_min = _num(t.countries["duty_de_minimis"])
        self.carriers = _Rows(t.carriers, "carrier_id")
        self.carrier_text = {c: self.carriers.text(c) for c in ("carrier_name", "service_level")}
        self.carrier_tracked = _bool_num(t.carriers["tracked"])
        self.customers = _Rows(t.customers, "customer_id")
        self.customer_text = {c: self.customers.text(c) for c in ("segment", "country_code")}
        self.customer_seen = ts_int(t.customers["first_seen_ts"])
        self.order_ids = history.ids["orders"]

    # -- lookups ----------------------------------------------------------------------------
    def knows(self, table: str, key: Any) -> bool:
        """Whether the history has a row of ``table`` with this key."""
        if table == "orders":
            return bool(self.order_ids.get_indexer([key])[0] >= 0)
        rows = {
            "skus": self.skus,
            "customers": self.customers,
            "countries": self.countries,
            "carriers": self.carriers,
        }[table]
        return key in rows.pos

    def query(self, name: str, codes: Any, t_ns: int) -> PriorAggregate:
        """The history's events of index ``name`` with these key codes known strictly before
        ``t_ns`` (``point_in_time.query_events``, as ``build_features`` queries them); an unseen
        key (code -1) has none."""
        index = self.events[name]
        c = np.atleast_1d(np.asarray(codes, dtype=np.int64))
        c = np.where(c >= 0, c, index.n_keys)
        return query_events(index, c, np.full(len(c), t_ns, np.int64), with_times=True)

    # -- the features -----------------------------------------------------------------------
    def order_features(self, new: OnlineOrder) -> dict[str, Any]:
        """The feature-table row of ``new`` (every column of ``build_features``; numbers as
        1-element float arrays, strings as 1-element lists). Raises ``ValueError`` when the order
        does not qualify (unknown keys without rows, no lines)."""
        cfg, k = self.config, self.k
        o = new.order
        t_ns = timestamp_ns(o["order_ts"])
        if not new.lines:
            raise ValueError("the order has no lines")
        q_ts = np.asarray([t_ns], dtype=np.int64)
        out: dict[str, Any] = {}
        new_rows = {
            name: {r[SCHEMAS[name].key]: r for r in rows}
            for name, rows in (
                ("skus", new.skus),
                ("customers", new.customers),
                ("countries", new.countries),
                ("carriers", new.carriers),
            )
        }

        # -- static attributes of the order (build._order_static)
        when = _EPOCH + dt.timedelta(microseconds=t_ns // 1000)
        out["channel"] = [_text(o.get("channel"))]
        out["payment_method"] = [_text(o.get("payment_method"))]
        dest = _text(o.get("destination_country"))
        ci = self.countries.pos.get(dest, -1)
        if ci >= 0:
            region = self.country_text["region"][ci]
            de_min_v = self.country_de_min[ci]
            default_inc = self.country_text["default_incoterm"][ci]
            dest_langs = self.country_text["languages"][ci]
        elif dest in new_rows["countries"]:
            row = new_rows["countries"][dest]
            region, de_min_v = _text(row.get("region")), _float(row.get("duty_de_minimis"))
            default_inc = _text(row.get("default_incoterm"))
            dest_langs = _text(row.get("languages"))
        else:
            raise ValueError(f"unknown destination_country {dest!r}")
        out["destination_region"] = [region]
        inc = _text(o.get("incoterm"))
        eff = inc if inc is not None else default_inc
        out["effective_incoterm"] = [eff]

        def one(value: Any, dtype: Any = np.float64) -> np.ndarray:
            return np.asarray([value], dtype=dtype)

        order_value_features(
            out,
            one(when.hour, np.int64),
            one(when.weekday(), np.int64),
            one(when.month, np.int64),
            one(when.day, np.int64),
            value=one(_float(o.get("order_value"))),
            discount=one(_float(o.get("discount_value"))),
            shipping_fee=one(_float(o.get("shipping_fee"))),
            promised_days=one(_float(o.get("promised_delivery_days"))),
            de_minimis=one(de_min_v),
            ddu=one(eff == "DDU", bool),
            incoterm_known=one(eff is not None, bool),
        )

        carrier = _text(o.get("carrier_id"))
        ki = self.carriers.pos.get(carrier, -1) if carrier is not None else -1
        if ki >= 0:
            c_name = self.carrier_text["carrier_name"][ki]
            c_level = self.carrier_text["service_level"][ki]
            c_tracked = self.carrier_tracked[ki]
        elif carrier is not None and carrier in new_rows["carriers"]:
            row = new_rows["carriers"][carrier]
            c_name, c_level = _text(row.get("carrier_name")), _text(row.get("service_level"))
            tracked = row.get("tracked")
            c_tracked = np.nan if _missing(tracked) else float(bool(tracked))
        elif carrier is None:
            c_name = c_level = None
            c_tracked = np.nan
        else:
            raise ValueError(f"unknown carrier_id {carrier!r}")
        out["carrier_name"] = [c_name]
        out["carrier_service_level"] = [c_level]
        out["carrier_tracked"] = np.asarray([c_tracked], dtype=np.float64)

        customer = _text(o.get("customer_id"))
        ui = self.customers.pos.get(customer, -1)
        if ui >= 0:
            segment = self.customer_text["segment"][ui]
            home = self.customer_text["country_code"][ui]
            seen = int(self.customer_seen[ui])
        else:  # a new customer, with or without a row (cold start)
            row = new_rows["customers"].get(customer, {})
            segment, home = _text(row.get("segment")), _text(row.get("country_code"))
            first_seen = row.get("first_seen_ts")
            seen = _NAT if _missing(first_seen) else timestamp_ns(first_seen)
        out["customer_segment"] = [segment]
        out["ships_to_customer_country"] = _flag(
            np.asarray([home == dest]), known=np.asarray([home is not None])
        )

        # -- items: lines per SKU, in the order build_features sorts them (build._items)
        items = self._items(new, new_rows["skus"])
        s_rank, qty, item_value, n_lines, max_price, attrs = items
        g = _Groups(np.zeros(len(s_rank), dtype=np.int64), 1)
        dest_set = (
            None if dest_langs is None else frozenset(x.strip() for x in dest_langs.split(","))
        )
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

        # -- labels (build._labels): scored as of max(history, order), with no case of its own
        mature = t_ns + cfg.label_window_days * DAY_NS <= max(self.as_of_ns, t_ns)
        out["mature"] = np.asarray([mature])
        out["label"] = np.asarray([0.0 if mature else np.nan])
        out["first_case_ts"] = pd.DatetimeIndex(
            np.asarray([_NAT], dtype=np.int64).view("datetime64[ns]")
        ).tz_localize("UTC")

        # -- history: every aggregate is the history's events before t, then the same formulas
        # as build_features (customer_features, lane_features, item_features)
        def query(name: str, codes: Any) -> PriorAggregate:
            return self.query(name, codes, t_ns)

        def total(name: str) -> np.ndarray:  # a key-less index: the whole history before t
            return query(name, 0).count

        cust = self.vocab["customer"].code(customer)
        customer_features(
            out,
            k,
            q_ts,
            smoothed_rate(total("case"), total("orders"), cfg.default_case_rate, k),
            query("customer_orders", cust),
            query("customer_cases", cust),
            query("customer_with_case", cust).count,
            np.asarray([seen], dtype=np.int64),
        )

        d_code = self.vocab["destination"].code(dest)
        c_code = self.vocab["carrier"].code(carrier)
        lane_code = (
            self.vocab["lane"].code(d_code * _PACK + c_code) if d_code >= 0 and c_code >= 0 else -1
        )
        ships = query("ships", 0)
        lane_features(
            out,
            k,
            cfg,
            split_columns(query("lane", lane_code), LANE_SOURCES),
            split_columns(query("destination", d_code), DESTINATION_SOURCES),
            total("orders"),
            {t: total(t) for t in ("case", "not_received", "damaged", "duty_dispute")},
            ships,
        )

        cat_codes = np.asarray([self.vocab["category"].code(c) for c in attrs["category"]])
        cd_vocab = self.vocab["category_destination"]
        level_codes = {
            "category": cat_codes,
            "sku": [self.vocab["sku"].code(x) for x in attrs["sku_id"]],
            "product": [self.vocab["product"].code(x) for x in attrs["product"]],
            "category_destination": [
                cd_vocab.code(c * _PACK + d_code) if c >= 0 and d_code >= 0 else -1
                for c in cat_codes
            ],
        }
        history = {
            level: split_columns(query(level, codes), ITEM_SOURCES)
            for level, codes in level_codes.items()
        }
        best = item_features(
            out, k, cfg, g, item_value, qty, total("item_cases"), total("items"), history
        )
        out["top_sku_id"] = [attrs["sku_id"][int(best[0])]]
        out["top_category"] = [attrs["category"][int(best[0])]]

        out["order_id"] = [_text(o.get("order_id"))]
        out["order_ts"] = pd.DatetimeIndex(q_ts.view("datetime64[ns]")).tz_localize("UTC")
        out["customer_id"] = [customer]
        out["destination_country"] = [dest]
        out["carrier_id"] = [carrier]
        return out

    def _items(
        self, new: OnlineOrder, new_skus: Mapping[str, Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Lines summed per SKU, sorted as ``build._items`` sorts them: by the SKU's row in the
        request's skus table (the history's rows in history order, then the new rows)."""
        n_hist = len(self.skus.pos)
        new_order = {key: i for i, key in enumerate(new_skus)}
        sku_ids = [_text(ln.get("sku_id")) for ln in new.lines]
        rank = []
        for s in sku_ids:
            pos = self.skus.pos.get(s, -1)
            if pos < 0:
                if s not in new_order:
                    raise ValueError(f"unknown sku_id {s!r}")
                pos = n_hist + new_order[s]
            rank.append(pos)
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

        attrs: dict[str, Any] = {
            c: []
            for c in ("sku_id", "category", "brand", "size", "product", "languages", "apparel")
        }
        nums = {c: np.empty(len(ukey)) for c in self.sku_num}
        new_list = list(new_skus.values())
        for j, pos in enumerate(ukey.tolist()):  # a loop over the order's few SKUs
            if pos < n_hist:
                sku = self.sku_text["sku_id"][pos]
                cat, brand = self.sku_text["category"][pos], self.sku_text["brand"][pos]
                size, product = self.sku_text["size"][pos], self.sku_text["product_id"][pos]
                langs, apparel = self.sku_langs[pos], self.sku_apparel[pos]
                for c in nums:
                    nums[c][j] = self.sku_num[c][pos]
            else:
                row = new_list[pos - n_hist]
                sku = _text(row.get("sku_id"))
                cat, brand = _text(row.get("category")), _text(row.get("brand"))
                size, product = _text(row.get("size")), _text(row.get("product_id"))
                raw_langs = _text(row.get("listing_languages"))
                langs = (
                    None
                    if raw_langs is None
                    else frozenset(x.strip() for x in raw_langs.split(","))
                )
                apparel = (cat is not None and cat.lower() in self._apparel) or size is not None
                chart = row.get("has_size_chart")
                nums["has_size_chart"][j] = np.nan if _missing(chart) else float(bool(chart))
                for c in ("n_images", "weight_g", "list_price"):
                    nums[c][j] = _float(row.get(c))
            attrs["sku_id"].append(sku)
            attrs["category"].append(cat)
            attrs["brand"].append(brand)
            attrs["size"].append(size)
            attrs["product"].append(product if product is not None else sku)
            attrs["languages"].append(langs)
            attrs["apparel"].append(apparel)
        attrs["apparel"] = np.asarray(attrs["apparel"], dtype=bool)
        attrs.update(nums)
        return ukey, agg_qty, agg_val, agg_lines, agg_max, attrs


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
        elif name in _STR_HEAD or name in CATEGORICAL_FEATURES or name in _STR_CONTEXT:
            cols[name] = pd.array(v, dtype="str")
        else:
            cols[name] = np.asarray(v, dtype=np.float64)
    return pd.DataFrame(cols)
