"""The online store gives exactly ``build_features``' row for an order placed after the history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from returnrisk.contract import SCHEMAS, check_frames, load_tables, read_frames
from returnrisk.features import build_features, prepare_history
from returnrisk.features.online import OnlineFeatures, OnlineOrder, features_frame


@pytest.fixture(scope="module")
def history(synth_world: Path):
    return prepare_history(load_tables(synth_world))


@pytest.fixture(scope="module")
def store(history) -> OnlineFeatures:
    return OnlineFeatures(history)


@pytest.fixture(scope="module")
def new(synth_world: Path) -> dict[str, pd.DataFrame]:
    frames, problems = read_frames(
        synth_world / "new", ("orders", "order_lines", "skus", "customers"), required=()
    )
    assert not problems
    typed, problems = check_frames(frames)
    # keys of the history are not in the new tables: only foreign-key problems are expected
    assert all(p.rule.startswith("foreign key") for p in problems), problems
    return typed


class _World:
    """The fixtures a hypothesis test needs, with a short repr (hypothesis prints arguments)."""

    def __init__(self, store, history, new):
        self.store, self.history, self.new = store, history, new

    def __repr__(self) -> str:
        return "<world>"


@pytest.fixture(scope="module")
def world(store, history, new) -> _World:
    return _World(store, history, new)


def _records(df: pd.DataFrame) -> list[dict]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def _offline(history, order: OnlineOrder) -> pd.DataFrame:
    """build_features on the same rows (typed by the contract), as the batch path runs it."""
    frames = {"orders": [dict(order.order)], "order_lines": list(order.lines)}
    for name in ("skus", "customers", "countries", "carriers"):
        if getattr(order, name):
            frames[name] = list(getattr(order, name))
    # absent nullable columns are missing values (as the scorer fills them)
    frames = {
        name: pd.DataFrame(rows, columns=SCHEMAS[name].column_names)
        for name, rows in frames.items()
    }
    typed, problems = check_frames(frames)
    assert all(p.rule.startswith("foreign key") for p in problems), problems
    return build_features(typed, order_ids=[order.order["order_id"]], history=history)


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    for c in got.columns:
        a, b = got[c], expected[c]
        assert a.dtype == b.dtype, (c, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=c)  # exact
        else:
            assert (
                a.astype(object).where(a.notna(), None).tolist()
                == b.astype(object).where(b.notna(), None).tolist()
            ), c


def _order(store, new, i: int, ts: pd.Timestamp) -> OnlineOrder:
    o = _records(new["orders"])[i]
    o["order_ts"] = ts
    lines = [
        {k: r[k] for k in ("order_id", "sku_id", "quantity", "unit_price")}
        for r in _records(new["order_lines"].loc[new["order_lines"]["order_id"] == o["order_id"]])
    ]
    skus = {r["sku_id"]: r for r in _records(new.get("skus", pd.DataFrame(columns=["sku_id"])))}
    custs = {
        r["customer_id"]: r
        for r in _records(new.get("customers", pd.DataFrame(columns=["customer_id"])))
    }
    need = dict.fromkeys(ln["sku_id"] for ln in lines if not store.knows("skus", ln["sku_id"]))
    customers = []
    if not store.knows("customers", o["customer_id"]):
        customers = [custs.get(o["customer_id"], {"customer_id": o["customer_id"]})]
    return OnlineOrder(o, lines, skus=[skus[s] for s in need], customers=customers)


def test_every_new_order_equals_build_features(store, history, new) -> None:
    """The new orders at their own times (the day's orders, placed before the export's last
    event) and after the export, and 60 of the history's orders placed again (as new ids)."""
    after = history.as_of + pd.Timedelta(minutes=5)
    h = history.tables
    again = h.orders.tail(60).assign(order_id=lambda d: "AGAIN-" + d["order_id"])
    lines = h.order_lines.loc[h.order_lines["order_id"].isin(h.orders["order_id"].tail(60))]
    replayed = {"orders": again, "order_lines": lines.assign(order_id="AGAIN-" + lines["order_id"])}
    kinds = {"new_customer": 0, "multi_sku": 0, "before_export": 0}
    for source in (new, replayed):
        for i in range(len(source["orders"])):
            for ts in (source["orders"]["order_ts"].iloc[i], after + pd.Timedelta(seconds=i)):
                order = _order(store, source, i, ts)
                kinds["new_customer"] += bool(order.customers)
                kinds["multi_sku"] += len({ln["sku_id"] for ln in order.lines}) > 1
                kinds["before_export"] += ts <= history.as_of
                _assert_same(features_frame(store.order_features(order)), _offline(history, order))
    # cold starts, baskets, orders placed before the export's last event
    assert min(kinds.values()) > 0, kinds


_SKU = st.fixed_dictionaries(
    {
        "category": st.sampled_from(["apparel", "Shoes", "electronics", "toys-new", "home"]),
        "product_id": st.one_of(st.none(), st.sampled_from(["P-NEW", "P-OTHER"])),
        "brand": st.one_of(st.none(), st.just("brand-x")),
        "list_price": st.one_of(st.none(), st.floats(0, 500)),
        "weight_g": st.one_of(st.none(), st.floats(1, 5000)),
        "size": st.one_of(st.none(), st.sampled_from(["S", "M", "L"])),
        "n_images": st.one_of(st.none(), st.integers(0, 9)),
        "has_size_chart": st.one_of(st.none(), st.booleans()),
        "listing_languages": st.one_of(st.none(), st.sampled_from(["en", "de,fr", "zh"])),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    i=st.integers(0, 10_000),
    minutes=st.integers(-60 * 24 * 200, 60 * 24 * 400),  # before and after the export
    carrier=st.sampled_from(["keep", "none", "new"]),
    incoterm=st.sampled_from([None, "DDU", "DDP"]),
    blank=st.sets(st.sampled_from(["payment_method", "discount_value", "shipping_fee"])),
    new_skus=st.lists(_SKU, max_size=3),
    repeat_line=st.booleans(),
    customer=st.sampled_from(["keep", "new_bare", "new_row"]),
    new_country=st.booleans(),
)
def test_variations_equal_build_features(
    world,
    i,
    minutes,
    carrier,
    incoterm,
    blank,
    new_skus,
    repeat_line,
    customer,
    new_country,
) -> None:
    """Missing carrier / incoterm / fees, new carriers, countries, SKUs (known and new
    categories and products, sizes, languages) and customers, repeated lines."""
    store, history, new = world.store, world.history, world.new
    base = _order(store, new, i % len(new["orders"]), history.as_of + pd.Timedelta(minutes=minutes))
    o = dict(base.order)
    lines = [dict(ln) for ln in base.lines]
    skus, customers, countries, carriers = list(base.skus), list(base.customers), [], []
    o["incoterm"] = incoterm
    for col in blank:
        o[col] = None
    if carrier == "none":
        o["carrier_id"] = None
    elif carrier == "new":
        o["carrier_id"] = "K-NEW"
        carriers.append(
            {
                "carrier_id": "K-NEW",
                "carrier_name": "New Post",
                "service_level": "economy",
                "tracked": None,
            }
        )
    if new_country:
        o["destination_country"] = "QQ"
        countries.append(
            {
                "country_code": "QQ",
                "region": "Atlantis",
                "languages": "de,fr",
                "duty_de_minimis": 50.0,
                "default_incoterm": "DDU",
            }
        )
    for j, row in enumerate(new_skus):
        sku = f"SKU-NEW-{j}"
        skus.append({"sku_id": sku, "supplier_id": None, "color": None, **row})
        lines.append(
            {
                "order_id": o["order_id"],
                "sku_id": sku,
                "quantity": j + 1,
                "unit_price": 10.0 * (j + 1),
            }
        )
    if repeat_line:
        lines.append({**lines[0], "quantity": 2})
    if customer != "keep":
        o["customer_id"] = "C-NEW-ONLINE"
        customers = [
            {"customer_id": "C-NEW-ONLINE"}
            if customer == "new_bare"
            else {
                "customer_id": "C-NEW-ONLINE",
                "first_seen_ts": history.as_of,
                "country_code": "DE",
                "segment": "b2c",
            }
        ]
    order = OnlineOrder(o, lines, skus, customers, countries, carriers)
    _assert_same(features_frame(store.order_features(order)), _offline(history, order))
    # its what-if variants: each equals the changed order built afresh
    other = str(history.tables.carriers["carrier_id"].iloc[i % len(history.tables.carriers)])
    changes = [{"incoterm": "DDP"}, {"carrier_id": other}, {"carrier_id": None, "incoterm": None}]
    _assert_variants_afresh(store, order, changes)


def test_orders_that_cannot_be_scored_are_rejected(store, history, new) -> None:
    later = _order(store, new, 0, history.as_of + pd.Timedelta(hours=1))
    with pytest.raises(ValueError, match="no lines"):
        store.order_features(OnlineOrder(later.order, []))
    unknown = [{**later.lines[0], "sku_id": "NO-SUCH-SKU"}]
    with pytest.raises(ValueError, match="unknown sku_id"):
        store.order_features(OnlineOrder(later.order, unknown))


def test_the_store_needs_a_complete_history(synth_world: Path) -> None:
    tables = load_tables(synth_world)
    early = prepare_history(tables, as_of=tables.orders["order_ts"].median())
    with pytest.raises(ValueError, match="complete history"):
        OnlineFeatures(early)


def test_the_store_splits_totals_by_the_names_the_feature_code_records(history) -> None:
    from returnrisk.features.families import (
        DESTINATION_SOURCES,
        ITEM_LEVELS,
        LANE_SOURCES,
        MATURE_SOURCES,
    )

    def columns(sources: dict) -> set[str]:
        return {f"{s}\0n" for s in sources} | {
            f"{s}\0{v}" for s, vals in sources.items() for v in vals
        }

    assert set(history.events["lane"].cums) == columns(LANE_SOURCES)
    assert set(history.events["destination"].cums) == columns(DESTINATION_SOURCES)
    assert set(history.events["customer_mature"].cums) == columns(MATURE_SOURCES)
    for level, spec in ITEM_LEVELS.items():
        assert set(history.events[level].cums) == columns(spec.sources)


def test_duty_rules_in_force_agree_online_and_in_batch(synth_world: Path, new) -> None:
    """Two rules for the new orders' most frequent destination, changing at a new order's own
    time (inclusive start, exclusive end): the online store and build_features give the same
    rows on both sides of each change, and the rule shows in the features."""
    from returnrisk.contract import coerce_tables

    tables = load_tables(synth_world)
    dest = new["orders"]["destination_country"].mode().iloc[0]
    mine = new["orders"].loc[new["orders"]["destination_country"] == dest]
    t1 = mine["order_ts"].sort_values().iloc[len(mine) // 2]
    rules = pd.DataFrame(
        {
            "rule_id": ["r1", "r2"],
            "country_code": [dest, dest],
            "valid_from": [t1 - pd.Timedelta(days=400), t1],
            "valid_to": [t1, None],
            "duty_de_minimis": [1e6, 0.0],
            "default_incoterm": [None, "DDU"],
            "source": ["test", "test"],
        }
    )
    ruled = coerce_tables({**tables.as_dict(), "duty_rules": rules})
    history = prepare_history(ruled)
    store = OnlineFeatures(history)
    seen = set()
    for i in np.flatnonzero((new["orders"]["destination_country"] == dest).to_numpy()):
        ts = new["orders"]["order_ts"].iloc[i]
        order = _order(store, new, int(i), ts)
        got = features_frame(store.order_features(order))
        _assert_same(got, _offline(history, order))
        seen.add(float(got["duty_de_minimis"].iloc[0]))
    assert seen == {1e6, 0.0}  # both rules were in force for some of the orders


# ---------------------------------------------------------------------------------------------
# what-if variants (OnlineFeatures.variants): the order's row with its carrier's and incoterm's
# parts built again, for several changes at once


def _changed(order: OnlineOrder, change: dict) -> OnlineOrder:
    return OnlineOrder({**order.order, **change}, *(getattr(order, f) for f in _REST))


_REST = ("lines", "skus", "customers", "countries", "carriers")


def _rows(frame: pd.DataFrame, i: int) -> pd.DataFrame:
    return frame.iloc[[i]].reset_index(drop=True)


def _assert_variants_afresh(store, order: OnlineOrder, changes: list[dict]) -> pd.DataFrame:
    """``variants`` row i equals ``order_features`` of the order with ``changes[i]`` applied,
    bit for bit, every column; ``variants`` itself never builds a whole row."""
    base = store.order_features(order)

    def whole_row(*_args):  # the variants must not build one
        raise AssertionError("variants built a whole row")

    store.__dict__["order_features"] = whole_row
    try:
        got = features_frame(store.variants(order, base, changes))
    finally:
        del store.__dict__["order_features"]
    assert len(got) == len(changes)
    for i, change in enumerate(changes):
        _assert_same(_rows(got, i), features_frame(store.order_features(_changed(order, change))))
    return got


def test_variants_equal_the_order_changed_and_built_afresh(store, history, new) -> None:
    """Every new order (at its own time and after the export), changed to each incoterm and
    each carrier service of the history (lanes seen and never seen for its country), both at
    once, and to no carrier: each variant is the changed order's row built afresh."""
    carriers = history.tables.carriers["carrier_id"].astype("str").tolist()
    changes = [{"incoterm": "DDP"}, {"incoterm": "DDU"}, {"incoterm": None}]
    changes += [{"carrier_id": c} for c in carriers] + [{"carrier_id": None}]
    changes += [{"carrier_id": carriers[0], "incoterm": "DDP"}]
    after = history.as_of + pd.Timedelta(minutes=5)
    seen = {"cold_lane": 0, "ddp_already": 0, "lane_moves": 0, "duties_move": 0}
    for i in range(len(new["orders"])):
        for ts in (new["orders"]["order_ts"].iloc[i], after + pd.Timedelta(seconds=i)):
            order = _order(store, new, i, ts)
            got = _assert_variants_afresh(store, order, changes)
            own = store.order_features(order)
            seen["ddp_already"] += own["effective_incoterm"][0] == "DDP"
            lane = got["lane_prior_orders"].to_numpy()[3:-2]
            seen["cold_lane"] += bool((lane == 0).any())
            seen["lane_moves"] += len(np.unique(lane)) > 1
            duties = got["duties_due_on_arrival"].to_numpy()[:2]
            seen["duties_move"] += bool(duties[0] != duties[1])
    assert min(seen.values()) > 0, seen  # the parts that can change do, on some orders
    # and the afresh rows are build_features' (the batch path) for a changed order
    order = _order(store, new, 0, after)
    for change in (changes[0], changes[4]):
        changed = _changed(order, change)
        _assert_same(features_frame(store.order_features(changed)), _offline(history, changed))


def test_variants_of_unusual_orders(store, history, new) -> None:
    """A new carrier service (its row in the request: a lane never seen), a new country (no
    lane, no duty history), an order with no carrier or incoterm, no variant at all."""
    order = _order(store, new, 1, history.as_of + pd.Timedelta(hours=2))
    k_new = {"carrier_id": "K-NEW", "carrier_name": "New Post", "service_level": "economy"}
    qq = {
        "country_code": "QQ",
        "region": "Atlantis",
        "languages": "de,fr",
        "duty_de_minimis": 50.0,
        "default_incoterm": "DDU",
    }
    odd = OnlineOrder(
        {**order.order, "destination_country": "QQ", "carrier_id": None, "incoterm": None},
        order.lines,
        order.skus,
        order.customers,
        [qq],
        [k_new],
    )
    known = str(history.tables.carriers["carrier_id"].iloc[0])
    changes = [{"carrier_id": "K-NEW"}, {"carrier_id": known}, {"incoterm": "DDP"}, {}]
    got = _assert_variants_afresh(store, odd, changes)
    names = history.tables.carriers.set_index("carrier_id")["carrier_name"]
    assert got["carrier_name"].tolist()[:2] == ["New Post", names.loc[known]]
    assert got["effective_incoterm"].tolist() == ["DDU", "DDU", "DDP", "DDU"]
    assert (got["lane_prior_orders"] == 0).all()
    none = features_frame(store.variants(odd, store.order_features(odd), []))
    assert len(none) == 0
    assert list(none.columns) == list(got.columns)
    with pytest.raises(ValueError, match="order_value"):
        store.variants(odd, store.order_features(odd), [{"order_value": 1.0}])
