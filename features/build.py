"""``build_features``: one row per order with its label, maturity and every feature.

One code path for training (each order at its own ``order_ts``) and scoring (new orders concatenated
into the tables, ``order_ids=new_ids``, ``as_of=now``). This module is the driver: it sorts the
orders, makes the ``history.Context``, runs the feature families (``families``), the label
(``returnrisk.labels.order_outcomes``) and assembles the table. Every history feature goes
through the point-in-time join of ``kernels`` (via ``Context.prior``): an order placed at t sees
orders placed before t, cases opened before t and shipments delivered before t, all of them also
no later than ``as_of``.

Scoring a few new orders against a large history: ``prepare_history`` runs the same code once on
the history and keeps its events indexed; ``build_features(new_rows, history=h)`` then adds the
new rows' events to them (see ``history``).

Everything is vectorised: per-order aggregates of the order's items use ``np.*.reduceat`` over
items sorted by order; there is no Python loop over orders, customers or SKUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.arrays import NAT, lookup, to_utc, ts_int
from returnrisk.contract import SCHEMAS, Tables
from returnrisk.labels import order_outcomes
from returnrisk.progress import QUIET, StepLog

from .families import basket, customer_history, item_history, lane_history, order_attributes
from .history import (
    KEYED_TABLES,
    Context,
    History,
    Recorder,
    known_cases,
    order_items,
    request_tables,
)
from .kernels import output_order
from .specs import (
    CATEGORICAL_FEATURES,
    CONTEXT_COLUMNS,
    FEATURE_SPECS,
    HEAD_COLUMNS,
    STRING_CONTEXT,
    FeatureConfig,
)


def prepare_history(
    tables: Tables | Mapping[str, pd.DataFrame],
    *,
    as_of: pd.Timestamp | str | None = None,
    config: FeatureConfig = FeatureConfig(),
    log: StepLog = QUIET,
) -> History:
    """Index the history once for scoring new orders with ``build_features(..., history=h)``.

    ``as_of`` defaults to ``tables.as_of()``; new orders can then be scored as of any time not
    before it."""
    if isinstance(tables, Mapping):
        from returnrisk.contract import coerce_tables

        tables = coerce_tables(tables)
    rec = Recorder()
    as_of_ts = to_utc(as_of) if as_of is not None else to_utc(tables.as_of())
    _build(tables, order_ids=[], as_of=as_of_ts, config=config, log=log, recorder=rec)
    latest = tables.as_of() if len(tables.orders) else as_of_ts
    ids = {name: pd.Index(getattr(tables, name)[SCHEMAS[name].key]) for name in KEYED_TABLES}
    for index in (*ids.values(), *rec.vocab.values()):  # build the hash tables now, once
        index.get_indexer(index[:1])
    return History(
        tables=tables,
        as_of=as_of_ts,
        complete=bool(as_of_ts >= to_utc(latest)),
        config=config,
        vocab=rec.vocab,
        events=rec.events,
        ids=ids,
    )


# ---------------------------------------------------------------------------------------------
# entry point


def build_features(
    tables: Tables | Mapping[str, pd.DataFrame],
    *,
    order_ids: Sequence[str] | None = None,
    as_of: pd.Timestamp | str | None = None,
    config: FeatureConfig = FeatureConfig(),
    history: History | None = None,
    log: StepLog = QUIET,
) -> pd.DataFrame:
    """One row per order (all, or those in ``order_ids``) sorted by (order_ts, order_id).

    Columns: order_id, order_ts, customer_id, destination_country, carrier_id, mature, label,
    every feature of ``FEATURE_SPECS`` (numeric float64, categorical "str"), then context columns
    for reason codes (carrier_name, duty_de_minimis, top_sku_id, top_category, ...).
    ``tables`` is a ``returnrisk.contract.Tables`` (a mapping of frames is coerced first); it is
    never modified.

    With ``history`` (``prepare_history`` of the history tables), ``tables`` holds only the new
    rows (typed like the history's: ``orders``, ``order_lines``, optionally new ``skus``,
    ``customers``, ``countries``, ``carriers`` rows) and the result is exactly that of the
    history merged with them, at a cost independent of the history's size. ``as_of`` (default:
    the latest of the history's and the new rows' times) must not be before ``history.as_of``.
    """
    if history is None:
        if isinstance(tables, Mapping):
            from returnrisk.contract import coerce_tables

            tables = coerce_tables(tables)
        as_of_ts = to_utc(as_of) if as_of is not None else to_utc(tables.as_of())
        return _build(tables, order_ids=order_ids, as_of=as_of_ts, config=config, log=log)
    if config != history.config:
        raise ValueError("config differs from the one the history was prepared with")
    request = request_tables(history, tables)
    if as_of is None:
        as_of_ts = history.as_of
        if len(request.orders):
            as_of_ts = max(as_of_ts, to_utc(request.as_of()))
    else:
        as_of_ts = to_utc(as_of)
    if as_of_ts < history.as_of or (not history.complete and as_of_ts != history.as_of):
        raise ValueError(
            f"as_of {as_of_ts} is before the prepared history's as_of {history.as_of}: "
            "call build_features on the merged tables instead"
        )
    clash = history.ids["orders"].get_indexer(request.orders["order_id"]) >= 0
    if clash.any():
        dup = request.orders.loc[clash, "order_id"]
        raise ValueError(
            f"orders: order_id must be unique; {len(dup)} duplicates (e.g. {', '.join(dup[:5])})"
        )
    return _build(
        request, order_ids=order_ids, as_of=as_of_ts, config=config, log=log, history=history
    )


def _build(
    tables: Tables,
    *,
    order_ids: Sequence[str] | None,
    as_of: pd.Timestamp,
    config: FeatureConfig,
    log: StepLog,
    history: History | None = None,
    recorder: Recorder | None = None,
) -> pd.DataFrame:
    as_of_ts = as_of
    orders = tables.orders
    if orders["order_id"].duplicated().any():
        dup = orders.loc[orders["order_id"].duplicated(), "order_id"]
        raise ValueError(
            f"orders: order_id must be unique; {len(dup)} duplicates (e.g. {', '.join(dup[:5])})"
        )
    # work on the orders in output order (order_ts, order_id): every per-order array computed
    # below is then already in its final row order (a sorted copy; the input is not touched)
    o_ts = ts_int(orders["order_ts"])
    perm = output_order(orders["order_id"], o_ts)
    if perm is not None:
        orders = orders.take(perm).reset_index(drop=True)
        o_ts = o_ts[perm]
    if order_ids is None:
        q_idx = np.arange(len(orders))
    else:
        wanted = pd.Series(list(order_ids), dtype="str")
        found = lookup(wanted, orders["order_id"])
        if (found < 0).any():
            bad = wanted[found < 0]
            raise ValueError(
                f"order_ids: {len(bad)} ids not in orders (e.g. {', '.join(bad.head(5))})"
            )
        q_idx = np.unique(found)
    as_of_ns = int(as_of_ts.as_unit("ns").value)
    q_orders = orders if len(q_idx) == len(orders) else orders.iloc[q_idx]
    ctx = Context(
        tables=tables,
        orders=orders,
        q_orders=q_orders,
        o_ts=o_ts,
        o_known=(o_ts != NAT) & (o_ts <= as_of_ns),
        q_idx=q_idx,
        q_ts=o_ts[q_idx],
        q_customer=lookup(q_orders["customer_id"], tables.customers["customer_id"]),
        q_country=lookup(q_orders["destination_country"], tables.countries["country_code"]),
        as_of_ns=as_of_ns,
        cfg=config,
        orders_before=np.zeros(len(q_idx), np.int64),
        history=history,
        recorder=recorder,
    )
    known_ts = o_ts[o_ts <= as_of_ns]
    ctx = replace(ctx, orders_before=ctx.count_before("orders", known_ts, o_ts[q_idx]))
    log.info(f"features for {len(q_idx):,d} of {len(orders):,d} orders as of {as_of_ts}")
    out: dict[str, Any] = {}
    with log.step("order, destination, carrier and customer attributes"):
        order_attributes(ctx, out)
    with log.step("basket, listing and size features"):
        items = order_items(ctx)
        basket(ctx, items, out)
    with log.step("labels and customer history"):
        cases = known_cases(ctx)
        _labels(ctx, out)
        customer_history(ctx, cases, out)
    with log.step("lane and destination history"):
        lane_history(ctx, cases, out)
    with log.step("SKU, product and category history"):
        item_history(ctx, items, cases, out)
    with log.step("assembling the table"):
        return _assemble(ctx, out)


def _labels(ctx: Context, out: dict[str, Any]) -> None:
    """``mature``, ``label`` and ``first_case_ts`` of the queried orders (``order_outcomes``)."""
    outcomes = order_outcomes(
        ctx.q_orders,
        ctx.tables.after_sales_cases,
        as_of=pd.Timestamp(ctx.as_of_ns, tz="UTC"),
        label_window_days=ctx.cfg.label_window_days,
    )
    out["mature"] = outcomes["mature"].to_numpy()
    out["label"] = outcomes["label"].to_numpy()
    out["first_case_ts"] = outcomes["first_case_ts"].array


# ---------------------------------------------------------------------------------------------
# output


def _assemble(ctx: Context, out: dict[str, Any]) -> pd.DataFrame:
    """The output frame; rows are already in (order_ts, order_id) order."""
    q = ctx.q_orders
    head = {
        "order_id": q["order_id"].astype("str").array,
        "order_ts": q["order_ts"].array,
        "customer_id": q["customer_id"].astype("str").array,
        "destination_country": q["destination_country"].astype("str").array,
        "carrier_id": q["carrier_id"].astype("str").array,
    }
    names = list(HEAD_COLUMNS) + list(FEATURE_SPECS) + list(CONTEXT_COLUMNS)
    unknown = set(out) - set(names)
    if unknown:  # every column must be declared in specs.py
        raise RuntimeError(f"undeclared feature-table columns: {sorted(unknown)}")
    cols: dict[str, Any] = {}
    seen: set[int] = set()
    for name in names:
        v = head[name] if name in head else out[name]
        if name == "mature":
            cols[name] = np.array(v, dtype=bool)
        elif name in ("order_ts", "first_case_ts"):
            cols[name] = pd.DatetimeIndex(v).tz_convert("UTC").array.copy()
        elif name in head or name in CATEGORICAL_FEATURES or name in STRING_CONTEXT:
            cols[name] = pd.array(v, dtype="str").copy()  # never share an array with the input
        else:
            a = np.asarray(v, dtype=np.float64)
            if a.base is not None or not a.flags.writeable or id(a) in seen:
                a = a.copy()  # a view (maybe of an input column) or used twice: own it
            seen.add(id(a))
            cols[name] = a
    # one block per column, no consolidation copy: every array here is owned by this frame
    return pd.DataFrame(cols, copy=False)


def write_features(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the feature table as Parquet or CSV (chosen by the file extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"feature table file must end in .parquet or .csv, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
