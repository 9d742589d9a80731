"""Tracking events from a carrier aggregator export (AfterShip-style tags and subtags).

``read_tracking`` reads the export; ``tracking_updates`` is the pure transformation against the
tables already in a data directory; ``import_tracking`` reads, transforms and writes the
``shipments`` and ``after_sales_cases`` tables back. Tags and subtags are AfterShip's
(tracking API 2025-04, "Delivery statuses" and "Delivery sub-statuses"). The export is one row
per checkpoint event (a time column) or one row per shipment (shipped / delivered columns).
Rules and the mapping table: docs/importers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from returnrisk.importers.common import (
    ImporterError,
    ImportResult,
    blank,
    canonical_columns,
    clock,
    first_reason,
    norm_name,
    null_str,
    outside_contract_time,
    parse_utc,
    read_table_file,
    without_personal,
)
from returnrisk.progress import QUIET, StepLog

COLUMNS = {  # canonical -> accepted spellings (case, spaces and "_" ignored)
    "order_id": ("order_id", "Order ID", "Order number", "order_number"),
    "tag": ("tag", "Status", "Delivery status"),
}
EVENT_TIME = ("checkpoint_time", "Checkpoint time", "Event time", "event_time")
OPTIONAL = {
    "subtag": ("subtag", "Sub-status", "Subtag code"),
    "message": ("message", "Checkpoint message", "Subtag message"),
    "shipped_at": ("shipment_pickup_date", "Pickup date", "Shipped at", "shipped_at"),
    "delivered_at": ("shipment_delivery_date", "Delivered at", "Delivery date", "delivered_at"),
    "updated_at": ("updated_at", "Last updated at", "Last updated"),
}
TAGS = (
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "Delivered",
    "AvailableForPickup",
    "Exception",
    "Expired",
)
CARRIER_SCANS = ("InTransit", "OutForDelivery", "AttemptFail", "Delivered", "AvailableForPickup")
# Subtags (AfterShip) that open a case, -> case_type. Exception_003 (refused by the recipient)
# is a duty_dispute when the shipment was held for duties (Exception_006, "held for payment",
# or a message naming duties / import taxes), else not_received.
REFUSED = "Exception_003"
HELD_FOR_DUTIES = "Exception_006"
DUTY_MESSAGE = r"dut(?:y|ies)|import (?:tax|fee|charge|vat)|customs (?:fee|charge|payment)"
SUBTAG_CASE_TYPES = {
    "Exception_010": "not_received",  # returning to sender
    "Exception_011": "not_received",  # returned to sender
    "Exception_012": "damaged",  # shipment damaged
    "Exception_013": "not_received",  # shipment lost
}
EXPIRED = "Expired"  # no tracking information for 30 days: never delivered -> not_received
SOURCE = "tracking"


def read_tracking(path: Path) -> pd.DataFrame:
    """The export as text with canonical column names (``checkpoint_time`` when per event)."""
    df = read_table_file(Path(path), encoding="utf-8-sig")
    spec = dict(COLUMNS)
    by_norm = {norm_name(c) for c in df.columns}
    per_event = any(norm_name(s) in by_norm for s in EVENT_TIME)
    if per_event:
        spec["checkpoint_time"] = EVENT_TIME
    else:
        spec["shipped_at"] = OPTIONAL["shipped_at"]
    cols = canonical_columns(df, spec, str(path))
    opt = {k: v for k, v in OPTIONAL.items() if k not in spec}
    for canon, spellings in opt.items():
        hit = next(
            (c for c in df.columns if norm_name(c) in {norm_name(s) for s in spellings}), None
        )
        if hit is not None:
            cols[canon] = hit
    df = df.rename(columns={v: k for k, v in cols.items()})
    for canon in (*OPTIONAL, "checkpoint_time"):
        if canon not in df.columns:
            df[canon] = null_str(df.index)
    return df.assign(source_file=Path(path).name, source_row=np.arange(len(df), dtype="int64"))


def tracking_updates(
    raw: pd.DataFrame,
    orders: pd.DataFrame,
    shipments: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    log: StepLog = QUIET,
    now: pd.Timestamp | None = None,
) -> ImportResult:
    """New ``shipments`` and ``after_sales_cases`` tables: the old rows plus what events show.
    ``now``: the import's clock (``clock``); a row with a time outside 2000..now is refused.

    Shipments: ``shipped_ts`` = the earlier of the recorded one and the first carrier scan;
    ``delivered_ts`` = the first Delivered event (kept when already recorded). Cases: one per
    order and type, never one the order already has (any source), ids ``tracking:ORDER:TYPE``.
    """
    now = clock(now)
    with log.step("tracking: refusal rules"):
        oid = raw["order_id"].astype("str").str.strip().where(~blank(raw["order_id"]))
        tag_key = (
            raw["tag"].astype("str").str.strip().str.lower().str.replace(r"[\s_]", "", regex=True)
        )
        tag = tag_key.map({t.lower(): t for t in TAGS})
        subtag = raw["subtag"].astype("str").str.strip()
        per_event = raw["checkpoint_time"].notna().any()
        event_ts = parse_utc(raw["checkpoint_time"])
        shipped_at = parse_utc(raw["shipped_at"])
        delivered_at = parse_utc(raw["delivered_at"])
        updated_at = parse_utc(raw["updated_at"])
        when = event_ts if per_event else updated_at.fillna(delivered_at).fillna(shipped_at)
        order_ts = oid.map(orders.set_index("order_id")["order_ts"])
        reason = null_str(raw.index)
        rules: list[tuple[str, pd.Series]] = [
            ("missing_order_id", oid.isna()),
            ("order_not_in_directory", oid.notna() & order_ts.isna()),
            ("unknown_tag", tag.isna()),
            ("unparseable_event_time", per_event & event_ts.isna()),
            ("unparseable_shipped_at", ~blank(raw["shipped_at"]) & shipped_at.isna()),
            ("unparseable_delivered_at", ~blank(raw["delivered_at"]) & delivered_at.isna()),
            ("event_time_outside_2000_to_now", outside_contract_time(when, now)),
            ("shipped_at_outside_2000_to_now", outside_contract_time(shipped_at, now)),
            ("delivered_at_outside_2000_to_now", outside_contract_time(delivered_at, now)),
            ("event_before_order", (when < order_ts) | (shipped_at < order_ts)),
            ("delivered_before_shipped", delivered_at < shipped_at),
        ]
        for name, mask in rules:
            reason = first_reason(reason, mask, name)
        keep = reason.isna()

    with log.step("tracking: shipments"):
        ev = pd.DataFrame(
            {
                "order_id": oid,
                "tag": tag,
                "subtag": subtag,
                "message": raw["message"].astype("str"),
                "when": when,
                "scan": (event_ts.where(tag.isin(CARRIER_SCANS)) if per_event else shipped_at),
                "delivered": (event_ts.where(tag == "Delivered") if per_event else delivered_at),
            }
        )[keep]
        found = ev.groupby("order_id").agg(scan=("scan", "min"), delivered=("delivered", "min"))
        found["scan"] = found["scan"].fillna(found["delivered"])  # delivered implies shipped
        old = shipments.set_index("order_id")[["shipped_ts", "delivered_ts"]]
        both = old.join(found, how="outer")
        shipped = both[["shipped_ts", "scan"]].min(axis=1)
        delivered = both["delivered_ts"].fillna(both["delivered"])
        new_ship = pd.DataFrame(
            {
                "order_id": both.index.astype("str"),
                "shipped_ts": shipped.astype("datetime64[ns, UTC]").to_numpy(),
                "delivered_ts": delivered.astype("datetime64[ns, UTC]").to_numpy(),
            }
        )
        new_ship = new_ship[new_ship["shipped_ts"].notna()].reset_index(drop=True)
        extra = [c for c in shipments.columns if c not in new_ship.columns]
        if extra:
            new_ship = new_ship.merge(shipments[["order_id", *extra]], on="order_id", how="left")
        n_filled_delivered = int(
            (
                old["delivered_ts"].isna() & old.index.isin(found.index[found["delivered"].notna()])
            ).sum()
        )

    with log.step("tracking: cases from exceptions"):
        delivered_orders = set(
            ev.loc[ev["delivered"].notna() | (ev["tag"] == "Delivered"), "order_id"]
        )
        held = ev["subtag"].eq(HELD_FOR_DUTIES) | ev["message"].str.contains(
            DUTY_MESSAGE, case=False, regex=True, na=False
        )
        held_orders = set(ev.loc[held, "order_id"])
        ctype = ev["subtag"].map(SUBTAG_CASE_TYPES)
        refused_by_buyer = ev["subtag"] == REFUSED
        ctype = ctype.mask(
            refused_by_buyer,
            np.where(ev["order_id"].isin(held_orders), "duty_dispute", "not_received"),
        )
        ctype = ctype.mask((ev["tag"] == EXPIRED) & ctype.isna(), "not_received")
        # a parcel that was delivered was not lost (returns to sender after a refusal excepted)
        lost_but_delivered = (
            (ctype == "not_received") & ~refused_by_buyer & ev["order_id"].isin(delivered_orders)
        )
        ctype = ctype.mask(lost_but_delivered)
        hits = ev.assign(case_type=ctype).dropna(subset=["case_type", "when"])
        hits = hits.sort_values(["order_id", "when"], kind="stable").drop_duplicates(
            ["order_id", "case_type"]
        )
        have = set(cases["order_id"].astype("str") + "\x1f" + cases["case_type"].astype("str"))
        dup = (hits["order_id"] + "\x1f" + hits["case_type"]).isin(have)
        new = hits[~dup]
        new_cases = pd.DataFrame(
            {
                "case_id": "tracking:" + new["order_id"] + ":" + new["case_type"],
                "order_id": new["order_id"],
                "opened_ts": new["when"].astype("datetime64[ns, UTC]"),
                "case_type": new["case_type"],
                "sku_id": null_str(new.index),
                "amount": np.nan,
            }
        )
        all_cases = pd.concat([cases, new_cases], ignore_index=True)

    refused = without_personal(raw.loc[~keep]).assign(reason=reason[~keep])
    figures: dict[str, float | int | str] = {
        "input rows": len(raw),
        "rows used": int(keep.sum()),
        "refused rows": int((~keep).sum()),
        "format": "one row per event" if per_event else "one row per shipment",
        "orders with tracking": int(found.index.nunique()),
        "shipments before": len(shipments),
        "shipments after": len(new_ship),
        "delivered_ts filled": n_filled_delivered,
        "cases the orders already had": int(dup.sum()),
        **{
            f"cases added: {t}": int(n)
            for t, n in new_cases["case_type"].value_counts().sort_index().items()
        },
    }
    tables = {"shipments": new_ship, "after_sales_cases": all_cases}
    return ImportResult(tables, {SOURCE: refused}, {SOURCE: len(raw)}, figures)


@dataclass(frozen=True)
class TrackingConfig:
    file: Path
    into: Path


def import_tracking(cfg: TrackingConfig, *, log: StepLog = QUIET) -> ImportResult:
    """Read the export and the directory, add shipments and cases, write both tables back."""
    from returnrisk.contract import ContractError, coerce_tables, load_tables, write_tables

    into = Path(cfg.into)
    now = clock()
    try:
        tables = load_tables(into, log=log, now=now)
    except ContractError as err:
        raise ImporterError(
            f"tracking: --into {into}: not a valid data directory:\n{err.report()}"
        ) from None
    with log.step(f"reading {cfg.file}"):
        raw = read_tracking(cfg.file)
    result = tracking_updates(
        raw, tables.orders, tables.shipments, tables.after_sales_cases, log=log, now=now
    )
    with log.step(f"checking the contract and writing {into}"):
        merged = coerce_tables(
            {**tables.as_dict(), **result.tables}, source=f"tracking into {into}", now=now
        )
        for name in result.tables:
            fmt = (
                "csv"
                if (into / f"{name}.csv").is_file() and not (into / f"{name}.parquet").is_file()
                else "parquet"
            )
            write_tables({name: getattr(merged, name)}, into, fmt=fmt)
        (into / "refused").mkdir(parents=True, exist_ok=True)
        result.refused[SOURCE].to_parquet(
            into / "refused" / f"{SOURCE}_refused.parquet", index=False
        )
    return result
