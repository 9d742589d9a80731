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
    assert table in text and column in text and str(problem.n_rows) in text


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
    assert "orders.order_id" in result.output and "unique" in result.output
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
    assert len(tables.orders) == 0 and len(tables.after_sales_cases) == 0


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


@pytest.mark.parametrize("table, column, value, rule", _BAD_VALUES)
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
