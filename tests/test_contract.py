"""The data contract: every rule on tiny hand-made frames, and the validate command."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import (
    SCHEMAS,
    TABLE_NAMES,
    ContractError,
    coerce_tables,
    contract_markdown,
    find_problems,
    load_tables,
    read_frames,
    write_tables,
)


def tiny_frames() -> dict[str, pd.DataFrame]:
    """A valid two-order directory, as a merchant would export it (strings for timestamps)."""
    return {
        "orders": pd.DataFrame(
            {
                "order_id": ["o1", "o2"],
                "customer_id": ["c1", "c2"],
                "order_ts": ["2024-01-01 10:00:00", "2024-01-02T11:30:00+01:00"],
                "channel": ["amazon", "own_site"],
                "destination_country": ["DE", "US"],
                "carrier_id": ["k1", None],
                "incoterm": ["DDU", None],
                "order_value": [120.0, 40.0],
                "shipping_fee": [5.0, None],
                "discount_value": [None, 2.0],
                "payment_method": ["card", None],
                "promised_delivery_days": [7, None],
            }
        ),
        "order_lines": pd.DataFrame(
            {
                "order_id": ["o1", "o1", "o2"],
                "sku_id": ["s1", "s2", "s1"],
                "quantity": [1, 2, 1],
                "unit_price": [60.0, 30.0, 40.0],
            }
        ),
        "skus": pd.DataFrame(
            {
                "sku_id": ["s1", "s2"],
                "product_id": ["p1", None],
                "category": ["apparel", "home"],
                "brand": [None, "acme"],
                "supplier_id": ["sup1", None],
                "list_price": [60.0, None],
                "weight_g": [300.0, None],
                "size": ["M", None],
                "color": [None, "red"],
                "n_images": [4, None],
                "has_size_chart": [True, None],
                "listing_languages": ["en,de", None],
            }
        ),
        "countries": pd.DataFrame(
            {
                "country_code": ["DE", "US"],
                "region": ["EU", "North America"],
                "languages": ["de", "en"],
                "duty_de_minimis": [150.0, 800.0],
                "default_incoterm": ["DDU", None],
            }
        ),
        "carriers": pd.DataFrame(
            {
                "carrier_id": ["k1"],
                "carrier_name": ["PostNL"],
                "service_level": ["economy"],
                "tracked": [False],
            }
        ),
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2"],
                "first_seen_ts": ["2023-05-01", None],
                "country_code": ["DE", None],
                "segment": ["b2c", None],
            }
        ),
        "after_sales_cases": pd.DataFrame(
            {
                "case_id": ["k1"],
                "order_id": ["o1"],
                "opened_ts": ["2024-01-20 09:00:00"],
                "case_type": ["return"],
                "sku_id": ["s1"],
                "amount": [60.0],
            }
        ),
        "shipments": pd.DataFrame(
            {
                "order_id": ["o1"],
                "shipped_ts": ["2024-01-02 08:00:00"],
                "delivered_ts": ["2024-01-09 08:00:00"],
            }
        ),
        "duty_rules": pd.DataFrame(
            {
                "rule_id": ["us-2025-08"],
                "country_code": ["US"],
                "valid_from": ["2025-08-29 04:01:00"],
                "valid_to": [None],
                "duty_de_minimis": [0.0],
                "default_incoterm": [None],
                "source": ["Executive Order 14324"],
            }
        ),
    }


def problems_of(frames: dict[str, pd.DataFrame]) -> list:
    with pytest.raises(ContractError) as info:
        coerce_tables(frames)
    return info.value.problems


def with_change(table: str, **columns: object) -> dict[str, pd.DataFrame]:
    frames = tiny_frames()
    frames[table] = frames[table].assign(**columns)
    return frames


def test_valid_tables_are_typed() -> None:
    tables = coerce_tables(tiny_frames())
    assert str(tables.orders["order_ts"].dtype) == "datetime64[ns, UTC]"
    assert tables.order_lines["quantity"].dtype == "int64"
    assert str(tables.orders["promised_delivery_days"].dtype) == "Int64"
    assert str(tables.skus["has_size_chart"].dtype) == "boolean"
    # naive timestamps are UTC; aware ones are converted
    assert tables.orders["order_ts"].iloc[0] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert tables.orders["order_ts"].iloc[1] == pd.Timestamp("2024-01-02 10:30", tz="UTC")
    assert tables.as_of() == pd.Timestamp("2024-01-20 09:00", tz="UTC")
    assert find_problems(tables) == []


def test_inputs_are_not_mutated() -> None:
    frames = tiny_frames()
    before = {n: f.copy() for n, f in frames.items()}
    coerce_tables(frames)
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, before[name])


def test_shipments_are_optional() -> None:
    frames = tiny_frames()
    del frames["shipments"]
    tables = coerce_tables(frames)
    assert list(tables.shipments.columns) == SCHEMAS["shipments"].column_names
    assert len(tables.shipments) == 0


@pytest.mark.parametrize(
    ("frames", "table", "column", "rule", "keys"),
    [
        (with_change("orders", order_id=["o1", "o1"]), "orders", "order_id", "unique", {"o1"}),
        (
            with_change("order_lines", quantity=[1, -2, 1]),
            "order_lines",
            "quantity",
            ">= 1",
            {"o1"},
        ),
        (with_change("orders", order_value=[-1.0, 3.0]), "orders", "order_value", ">= 0", {"o1"}),
        (
            with_change("orders", customer_id=["c1", "zz"]),
            "orders",
            "customer_id",
            "foreign",
            {"o2"},
        ),
        (
            with_change("order_lines", sku_id=["s1", "s9", "s1"]),
            "order_lines",
            "sku_id",
            "foreign",
            {"o1"},
        ),
        (
            with_change("orders", order_ts=["2024-01-01", "yesterday"]),
            "orders",
            "order_ts",
            "type",
            {"o2"},
        ),
        (
            with_change("orders", order_value=["12", "a lot"]),
            "orders",
            "order_value",
            "type",
            {"o2"},
        ),
        (with_change("orders", incoterm=["DAP", None]), "orders", "incoterm", "one of", {"o1"}),
        (
            with_change("orders", destination_country=["de", "US"]),
            "orders",
            "destination_country",
            "alpha-2",
            {"o1"},
        ),
        (with_change("orders", channel=[None, "ebay"]), "orders", "channel", "not null", {"o1"}),
        (
            with_change("carriers", service_level=["overnight"]),
            "carriers",
            "service_level",
            "one of",
            {"k1"},
        ),
        (
            with_change("after_sales_cases", case_type=["angry"]),
            "after_sales_cases",
            "case_type",
            "one of",
            {"k1"},
        ),
        (
            with_change("after_sales_cases", opened_ts=["2023-12-31"]),
            "after_sales_cases",
            "opened_ts",
            "not before the order",
            {"k1"},
        ),
        (
            with_change("shipments", delivered_ts=["2024-01-01 00:00:00"]),
            "shipments",
            "delivered_ts",
            "not before shipped_ts",
            {"o1"},
        ),
        (
            with_change("skus", listing_languages=["English", None]),
            "skus",
            "listing_languages",
            "639",
            {"s1"},
        ),
    ],
)
def test_each_rule_names_table_column_and_rows(frames, table, column, rule, keys) -> None:
    found = [p for p in problems_of(frames) if p.table == table and p.column == column]
    assert found, f"no problem reported for {table}.{column}"
    problem = found[0]
    assert rule in problem.rule
    assert set(problem.keys) == keys
    assert problem.n_rows == len(problem.keys)
    text = str(problem)
    assert table in text
    assert column in text
    assert str(problem.n_rows) in text


def test_missing_column_and_missing_table() -> None:
    frames = tiny_frames()
    frames["orders"] = frames["orders"].drop(columns=["order_value"])
    del frames["carriers"]
    problems = problems_of(frames)
    assert any(
        p.table == "orders" and p.column == "order_value" and "missing" in p.rule for p in problems
    )
    assert any(p.table == "carriers" and "missing" in p.rule for p in problems)


def test_unparseable_value_is_reported_once() -> None:
    problems = problems_of(with_change("orders", order_ts=["2024-01-01", "31/31/2024"]))
    mine = [p for p in problems if p.column == "order_ts"]
    assert [p.rule for p in mine] == ["wrong type: expected timestamp"]


def test_refused_rows_say_why() -> None:
    with pytest.raises(ContractError) as info:
        coerce_tables(with_change("order_lines", quantity=[1, -2, 1]))
    refused = info.value.refused["order_lines"]
    assert refused["order_id"].tolist() == ["o1", "o1"]
    assert refused["problem"].str.contains("quantity").all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_load_round_trip(tmp_path: Path, fmt: str) -> None:
    write_tables(coerce_tables(tiny_frames()), tmp_path, fmt=fmt)
    tables = load_tables(tmp_path)
    expected = coerce_tables(tiny_frames())
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(
            getattr(tables, name), getattr(expected, name), check_dtype=True
        )


def test_load_missing_file(tmp_path: Path) -> None:
    write_tables({k: v for k, v in tiny_frames().items() if k != "skus"}, tmp_path, fmt="csv")
    with pytest.raises(ContractError, match=r"skus: file missing"):
        load_tables(tmp_path)


runner = CliRunner()


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_tables(tiny_frames(), good, fmt="csv")
    result = runner.invoke(app, ["validate", str(good), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output

    write_tables(with_change("orders", order_id=["o1", "o1"]), bad, fmt="csv")
    result = runner.invoke(
        app, ["validate", str(bad), "--quiet", "--refused-out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "orders.order_id" in result.output
    assert "unique" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "r" / "orders.refused.csv").is_file()


def test_validate_missing_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "not a directory" in result.output


def test_contract_command_prints_every_table() -> None:
    result = runner.invoke(app, ["contract"])
    assert result.exit_code == 0
    for name in TABLE_NAMES:
        assert f"## {name}" in result.output
    assert contract_markdown() in result.output


def test_empty_history_is_valid() -> None:
    frames = tiny_frames()
    for name in ("orders", "order_lines", "after_sales_cases", "shipments"):
        frames[name] = frames[name].iloc[0:0]
    tables = coerce_tables(frames)
    assert len(tables.orders) == 0
    assert len(tables.after_sales_cases) == 0


def test_timestamp_outside_nanosecond_range_is_a_wrong_value() -> None:
    problems = problems_of(with_change("orders", order_ts=["2024-01-01", "2263-01-01"]))
    mine = [p for p in problems if p.column == "order_ts"]
    assert [(p.rule, p.keys) for p in mine] == [("wrong type: expected timestamp", ("o2",))]


# ---------------------------------------------------------------------------------------------
# row_problems: the service's screen of one row of typed values, never laxer than check_frames

_GOOD_ROWS = {
    "orders": {
        "order_id": "o1",
        "customer_id": "c1",
        "order_ts": pd.Timestamp("2024-01-01 10:00", tz="UTC"),
        "channel": "amazon",
        "destination_country": "DE",
        "carrier_id": None,
        "incoterm": "DDU",
        "order_value": 120.0,
        "shipping_fee": None,
        "discount_value": 0.0,
        "payment_method": None,
        "promised_delivery_days": 7,
    },
    "order_lines": {"order_id": "o1", "sku_id": "s1", "quantity": 2, "unit_price": 9.5},
    "skus": {
        "sku_id": "s1",
        "category": "apparel",
        "list_price": 10.0,
        "weight_g": 200.0,
        "n_images": 3,
        "has_size_chart": True,
        "listing_languages": "en,de",
    },
    "customers": {
        "customer_id": "c1",
        "first_seen_ts": None,
        "country_code": "DE",
        "segment": "b2c",
    },
    "countries": {
        "country_code": "DE",
        "region": "EU",
        "duty_de_minimis": 150.0,
        "default_incoterm": "DDP",
        "languages": "de",
    },
    "carriers": {
        "carrier_id": "k1",
        "carrier_name": "Post",
        "service_level": "economy",
        "tracked": None,
    },
}
_BAD_VALUES = [
    ("orders", "customer_id", None, "not null"),
    ("orders", "order_value", -1.0, ">= 0"),
    ("orders", "order_value", "12", "wrong type"),  # check_frames parses it: stricter here
    ("orders", "incoterm", "FOB", "one of"),
    ("orders", "destination_country", "de", "format"),
    ("orders", "promised_delivery_days", 0, "> 0"),
    ("orders", "order_ts", pd.Timestamp("2300-01-01", tz="UTC").to_pydatetime(), "wrong type"),
    ("order_lines", "quantity", 0, ">= 1"),
    ("order_lines", "quantity", True, "wrong type"),  # likewise (True is 1 to pandas)
    ("skus", "category", None, "not null"),
    ("skus", "listing_languages", "en;de", "format"),
    ("skus", "weight_g", 0.0, "> 0"),
    ("customers", "segment", "vip", "one of"),
    ("carriers", "service_level", "overnight", "one of"),
    ("countries", "duty_de_minimis", -5.0, ">= 0"),
    ("orders", "order_value", float("inf"), "finite"),
    ("orders", "shipping_fee", float("-inf"), "finite"),
    ("order_lines", "unit_price", float("inf"), "finite"),
    ("skus", "weight_g", float("inf"), "finite"),
    ("countries", "duty_de_minimis", float("inf"), "finite"),
    ("order_lines", "quantity", 2**60, "wrong type"),
    ("orders", "order_ts", pd.Timestamp("2100-01-01", tz="UTC").to_pydatetime(), "not in the"),
    ("customers", "first_seen_ts", pd.Timestamp("1700-01-01").to_pydatetime(), "not before"),
    ("orders", "order_id", "o\x001", "no control characters"),
    ("order_lines", "sku_id", "s1\n", "no control characters"),
    ("carriers", "carrier_id", "k\x1b1", "no control characters"),
]


def test_row_problems_accepts_good_rows() -> None:
    from returnrisk.contract import check_frames, row_problems

    for table, row in _GOOD_ROWS.items():
        assert row_problems(table, row) == [], table
        frame = pd.DataFrame([row], columns=SCHEMAS[table].column_names)
        assert check_frames({table: frame})[1] == [], table


@pytest.mark.parametrize(("table", "column", "value", "rule"), _BAD_VALUES)
def test_row_problems_flags_what_check_frames_refuses(table, column, value, rule) -> None:
    from returnrisk.contract import check_frames, row_problems

    row = {**_GOOD_ROWS[table], column: value}
    got = row_problems(table, row)
    assert any(p.startswith(f"{column}: {rule}") for p in got), got
    if isinstance(value, str | bool) and rule == "wrong type":
        return  # the screen may be stricter than the reference, never laxer
    frame = pd.DataFrame([row], columns=SCHEMAS[table].column_names)
    _, problems = check_frames({table: frame})
    assert any(p.column == column for p in problems), problems  # the reference agrees


# ---------------------------------------------------------------------------------------------
# check_new: the one authority for new orders against a history (batch, fast path, features)

_KNOWN = {  # the history's keys per table, as prepare_history builds them (History.ids)
    "orders": pd.Index(["h1"], dtype="str"),
    "skus": pd.Index(["s1"], dtype="str"),
    "customers": pd.Index(["c1"], dtype="str"),
    "countries": pd.Index(["DE"], dtype="str"),
    "carriers": pd.Index(["k1"], dtype="str"),
}
_LINE = _GOOD_ROWS["order_lines"]
_NEW_SKU = {**_GOOD_ROWS["skus"], "sku_id": "s9"}


def _unknown(table: str, column: str, target: str, value: str) -> str:
    return (
        f"{table}.{column}: unknown {column} {value!r} (not in {target}; "
        f"send its {target} row with the order)"
    )


# (name, order changes, lines, new static rows, the reasons check_new gives for o1)
_NEW_CASES = [
    ("clean", {}, [_LINE], {}, set()),
    ("new sku sent with its row", {}, [{**_LINE, "sku_id": "s9"}], {"skus": [_NEW_SKU]}, set()),
    ("new customer (cold start)", {"customer_id": "c9"}, [_LINE], {}, set()),
    (
        "history row wins over a sent one",
        {},
        [_LINE],
        {"skus": [{**_GOOD_ROWS["skus"], "list_price": -1.0}]},
        set(),
    ),
    (
        "unknown sku",
        {},
        [{**_LINE, "sku_id": "s7"}],
        {},
        {_unknown("order_lines", "sku_id", "skus", "s7")},
    ),
    (
        "unknown country",
        {"destination_country": "ZZ"},
        [_LINE],
        {},
        {_unknown("orders", "destination_country", "countries", "ZZ")},
    ),
    (
        "unknown carrier",
        {"carrier_id": "k9"},
        [_LINE],
        {},
        {_unknown("orders", "carrier_id", "carriers", "k9")},
    ),
    (
        "already in the history",
        {"order_id": "h1"},
        [_LINE],
        {},
        {"orders.order_id: already in the history"},
    ),
    ("no lines", {}, [], {}, {"order_lines: order has no lines"}),
    (
        "a broken new sku row refuses the order using it",
        {},
        [{**_LINE, "sku_id": "s9"}],
        {"skus": [{**_NEW_SKU, "list_price": -5.0}]},
        {"skus.list_price: >= 0 (sku_id s9)"},
    ),
    (
        "a new sku sent twice",
        {},
        [{**_LINE, "sku_id": "s9"}],
        {"skus": [_NEW_SKU, _NEW_SKU]},
        {"skus.sku_id: unique (duplicate key) (sku_id s9)"},
    ),
    (
        "several problems in one order",
        {"destination_country": "ZZ", "carrier_id": "k9"},
        [{**_LINE, "sku_id": "s7", "quantity": 0}, {**_LINE, "sku_id": "s8"}],
        {},
        {
            "order_lines.quantity: >= 1",
            _unknown("order_lines", "sku_id", "skus", "s7"),
            _unknown("order_lines", "sku_id", "skus", "s8"),
            _unknown("orders", "destination_country", "countries", "ZZ"),
            _unknown("orders", "carrier_id", "carriers", "k9"),
        },
    ),
]


def _new_frames(order: dict, lines: list[dict], static: dict[str, list[dict]]) -> dict:
    order_id = order.get("order_id", "o1")
    frames = {
        "orders": pd.DataFrame([order], columns=SCHEMAS["orders"].column_names),
        "order_lines": pd.DataFrame(
            [{**ln, "order_id": order_id} for ln in lines],
            columns=SCHEMAS["order_lines"].column_names,
        ),
    }
    for name, rows in static.items():
        frames[name] = pd.DataFrame(rows, columns=SCHEMAS[name].column_names)
    return frames


@pytest.mark.parametrize(
    ("changes", "lines", "static", "expect"),
    [c[1:] for c in _NEW_CASES],
    ids=[c[0] for c in _NEW_CASES],
)
def test_check_new_answers_each_rule_per_order(changes, lines, static, expect) -> None:
    from returnrisk.contract import check_new

    order = {**_GOOD_ROWS["orders"], **changes}
    frames = _new_frames(order, lines, static)
    new = check_new(frames, _KNOWN)
    assert set(new.problems["reason"]) == expect
    assert set(new.problems["order_id"]) == ({order["order_id"]} if expect else set())
    if expect:
        assert new.reasons[order["order_id"]] == "; ".join(new.problems["reason"])
    again = _new_frames(order, lines, static)
    assert all(frames[n].equals(again[n]) for n in frames)  # the input is not mutated


@pytest.mark.parametrize(
    ("changes", "lines", "static", "expect"),
    [c[1:] for c in _NEW_CASES],
    ids=[c[0] for c in _NEW_CASES],
)
def test_the_fast_path_form_gives_the_batch_reasons(changes, lines, static, expect) -> None:
    """``check_new_order`` (one order of Python values, the service's fast path) refuses for
    exactly the reasons ``check_new`` (the batch) gives, rule by rule."""
    from returnrisk.contract import check_new, check_new_order

    order = {**_GOOD_ROWS["orders"], **changes}
    batch = check_new(_new_frames(order, lines, static), _KNOWN)
    one = check_new_order(order, lines, static, _KNOWN)
    assert set(one) == set(batch.problems["reason"]) == expect
    assert len(one) == len(set(one))  # each reason once


def test_check_new_maps_problems_to_the_orders_they_concern() -> None:
    """Several orders: each gets its own reasons and keys; a broken static row refuses every
    order that uses it (its key named), and only those; new static rows are typed."""
    from returnrisk.contract import check_new

    base = _GOOD_ROWS["orders"]
    orders = pd.DataFrame(
        [
            {**base, "order_id": "o1"},
            {**base, "order_id": "o2", "destination_country": "ZZ", "customer_id": "c9"},
            {**base, "order_id": "o3"},
            {**base, "order_id": "o4", "order_value": -3.0},
            {**base, "order_id": "o5"},
        ],
        columns=SCHEMAS["orders"].column_names,
    )
    lines = pd.DataFrame(
        [
            {**_LINE, "order_id": "o1", "sku_id": "s7"},
            {**_LINE, "order_id": "o1", "sku_id": "s7"},
            {**_LINE, "order_id": "o2", "sku_id": "bad"},
            {**_LINE, "order_id": "o3", "sku_id": "bad"},
            {**_LINE, "order_id": "o4", "sku_id": "s1"},
            {**_LINE, "order_id": "o5", "sku_id": "s9"},
            {**_LINE, "order_id": "o6", "sku_id": "s1"},  # no such order
        ],
        columns=SCHEMAS["order_lines"].column_names,
    )
    skus = pd.DataFrame(
        [{**_NEW_SKU, "sku_id": "bad", "weight_g": 0.0}, _NEW_SKU],
        columns=SCHEMAS["skus"].column_names,
    )
    new = check_new({"orders": orders, "order_lines": lines, "skus": skus}, _KNOWN)
    reasons = new.reasons
    assert set(reasons.index) == {"o1", "o2", "o3", "o4", "o6"}
    assert reasons["o1"] == _unknown("order_lines", "sku_id", "skus", "s7")  # once, not twice
    mine = new.problems.loc[new.problems["order_id"] == "o2", "reason"].tolist()
    assert mine == [
        "skus.weight_g: > 0 (sku_id bad)",
        _unknown("orders", "destination_country", "countries", "ZZ"),
    ]
    assert reasons["o2"] == "; ".join(mine)
    assert reasons["o3"] == "skus.weight_g: > 0 (sku_id bad)"
    assert reasons["o4"] == "orders.order_value: >= 0"
    assert reasons["o6"] == "order_lines.order_id: foreign key: must exist in orders.order_id"
    assert new.order_ids.tolist() == ["o1", "o2", "o3", "o4", "o5"]
    assert new.frames["skus"]["sku_id"].tolist() == ["bad", "s9"]
    assert new.frames["customers"]["customer_id"].tolist() == ["c9"]  # cold start: no attributes
    assert new.frames["customers"]["segment"].isna().all()
    assert str(new.frames["orders"]["order_ts"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(("table", "column", "value", "rule"), _BAD_VALUES)
def test_the_fast_path_form_refuses_whatever_the_batch_refuses(table, column, value, rule) -> None:
    from returnrisk.contract import check_new, check_new_order

    order, lines, static = dict(_GOOD_ROWS["orders"]), [dict(_LINE)], {}
    if table == "orders":
        order[column] = value
    elif table == "order_lines":
        lines = [{**_LINE, column: value}]
    else:  # a new static row the order uses
        key = SCHEMAS[table].key
        row = {**_GOOD_ROWS[table], column: value}
        if column != key:
            row[key] = {"skus": "s9", "customers": "c9", "countries": "FR", "carriers": "k9"}[table]
        static = {table: [row]}
        if table == "skus":
            lines = [{**_LINE, "sku_id": row[key]}]
        else:
            used = {"customers": "customer_id", "countries": "destination_country"}
            order[used.get(table, "carrier_id")] = row[key]
    batch = check_new(_new_frames(order, lines, static), _KNOWN)
    one = check_new_order(order, lines, static, _KNOWN)
    assert one, (table, column, value)  # never laxer than the batch
    if not (isinstance(value, str | bool) and rule == "wrong type"):  # stricter there
        assert set(batch.problems["order_id"]) == {order["order_id"]}  # the batch agrees


# ---------------------------------------------------------------------------------------------
# a table as a directory of Parquet parts (a history too large for one file)


def _typed(tmp_path: Path) -> dict[str, pd.DataFrame]:
    write_tables(coerce_tables(tiny_frames()), tmp_path / "one", fmt="parquet")
    return load_tables(tmp_path / "one").as_dict()


def test_a_table_may_be_a_directory_of_parquet_parts(tmp_path: Path) -> None:
    """orders hive-partitioned by day (the partition column is an extra column), order_lines in
    two plain parts, a Spark-style _SUCCESS marker and a hidden file: the same tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = _typed(tmp_path)
    parts = tmp_path / "parts"
    write_tables(load_tables(tmp_path / "one"), parts, fmt="parquet")
    (parts / "orders.parquet").unlink()
    (parts / "order_lines.parquet").unlink()
    orders = frames["orders"].assign(order_day=frames["orders"]["order_ts"].dt.strftime("%Y-%m-%d"))
    pq.write_to_dataset(
        pa.Table.from_pandas(orders, preserve_index=False), parts / "orders", ["order_day"]
    )
    (parts / "orders" / "_SUCCESS").write_text("")
    lines = frames["order_lines"]
    (parts / "order_lines").mkdir()
    lines.iloc[:2].to_parquet(parts / "order_lines" / "part-0.parquet", index=False)
    lines.iloc[2:].to_parquet(parts / "order_lines" / "part-1.parquet", index=False)
    (parts / "order_lines" / ".part-1.parquet.crc").write_text("x")
    got = load_tables(parts)
    pd.testing.assert_frame_equal(
        got.orders[frames["orders"].columns].sort_values("order_id", ignore_index=True),
        frames["orders"].sort_values("order_id", ignore_index=True),
    )
    pd.testing.assert_frame_equal(got.order_lines, lines)
    assert set(got.orders["order_day"]) == {"2024-01-01", "2024-01-02"}


def test_a_table_both_as_a_file_and_as_parts_or_with_no_parts_is_refused(tmp_path: Path) -> None:
    write_tables(coerce_tables(tiny_frames()), tmp_path / "d", fmt="parquet")
    (tmp_path / "d" / "orders").mkdir()
    _, problems = read_frames(tmp_path / "d")
    assert [p.rule for p in problems] == ["both orders.parquet and a directory orders/: keep one"]
    (tmp_path / "d" / "orders.parquet").unlink()
    _, problems = read_frames(tmp_path / "d")
    assert len(problems) == 1
    assert "no Parquet parts (*.parquet) in the directory" in problems[0].rule


def test_an_output_inside_a_tables_parts_is_refused(tmp_path: Path) -> None:
    from returnrisk.paths import OutputPathError, check_output_path

    data = tmp_path / "d"
    (data / "orders").mkdir(parents=True)
    with pytest.raises(OutputPathError, match="directory of parts of the table 'orders'"):
        check_output_path(data / "orders" / "scores.parquet", [data])
