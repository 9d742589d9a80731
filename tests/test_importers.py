"""Importers: every rule on tiny hand-made exports; both real exports (slow, ../shared/data)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import coerce_tables, load_tables
from returnrisk.importers import (
    ImporterError,
    OnlineRetailConfig,
    SuperstoreConfig,
    country_codes,
    import_online_retail,
    import_superstore,
    online_retail_tables,
    read_online_retail,
    superstore_tables,
)

# ---------------------------------------------------------------------------------------------
# Online Retail: tiny exports

UK = "United Kingdom"

OR2_COLUMNS = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]
OR1_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


def _or_rows(rows: list[tuple], columns: list[str] = OR2_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _or_result(rows: list[tuple], tmp_path: Path, **kw):
    path = tmp_path / "or.csv"
    _or_rows(rows).to_csv(path, index=False)
    raw = read_online_retail([path])
    return raw, online_retail_tables(raw, **kw)


def _reason(result, invoice: str, code: str) -> str:
    ref = result.refused["online_retail"]
    hit = ref[(ref["Invoice"] == invoice) & (ref["StockCode"] == code)]
    assert len(hit) == 1, f"expected one refused row for {invoice}/{code}, got {len(hit)}"
    return hit["reason"].iloc[0]


def _accounted(result) -> int:
    tables = result.tables
    return (
        len(tables["order_lines"])
        + len(tables["after_sales_cases"])
        + sum(len(df) for df in result.refused.values())
    )


BASIC = [
    ("489434", "85048", "LIGHT GARLAND", 12, "2009-12-01 07:45:00", 6.95, 13085.0, UK),
    ("489434", "22041", "RECORD FRAME", 48, "2009-12-01 07:45:00", 2.1, 13085.0, UK),
    ("489435", "85048", "LIGHT GARLAND", 6, "2009-12-03 10:00:00", 6.95, 13085.0, UK),
    ("489436", "85048", "LIGHT GARLAND", 2, "2009-12-04 10:00:00", 6.95, 12345.0, "EIRE"),
    # cancellation: most recent earlier order of 13085 with 85048 is 489435 (not 489434)
    ("C489500", "85048", "LIGHT GARLAND", -2, "2009-12-10 09:00:00", 6.95, 13085.0, UK),
    # cancellation of a code the customer never bought: no earlier order
    ("C489501", "22041", "RECORD FRAME", -1, "2009-12-10 09:00:00", 2.1, 12345.0, "EIRE"),
    # same-day cancellation -> refund
    ("C489502", "85048", "LIGHT GARLAND", -1, "2009-12-04 15:00:00", 6.95, 12345.0, "EIRE"),
]  # fmt: skip


def test_online_retail_orders_lines_and_cancellation_matching(tmp_path: Path) -> None:
    raw, result = _or_result(BASIC, tmp_path)
    t = result.tables
    assert sorted(t["orders"]["order_id"]) == ["489434", "489435", "489436"]
    assert len(t["order_lines"]) == 4
    orders = t["orders"].set_index("order_id")
    assert orders.loc["489434", "order_value"] == pytest.approx(12 * 6.95 + 48 * 2.1)
    assert orders.loc["489434", "customer_id"] == "13085"  # float id rendered as an integer
    assert orders.loc["489436", "destination_country"] == "IE"
    assert set(orders["carrier_id"]) == {"unknown"}
    assert set(orders["channel"]) == {"own_site"}

    cases = t["after_sales_cases"].set_index("case_id")
    assert set(cases.index) == {"C489500:1", "C489502:1"}
    assert cases.loc["C489500:1", "order_id"] == "489435"  # most recent earlier, not the first
    assert cases.loc["C489500:1", "case_type"] == "return"
    assert cases.loc["C489500:1", "amount"] == pytest.approx(2 * 6.95)
    assert cases.loc["C489500:1", "sku_id"] == "85048"
    assert cases.loc["C489502:1", "order_id"] == "489436"
    assert cases.loc["C489502:1", "case_type"] == "refund"  # within 24 h of the order
    assert _reason(result, "C489501", "22041") == "cancellation_without_earlier_order"
    assert _accounted(result) == len(raw) == len(BASIC)
    coerce_tables(t)  # the contract holds


def test_cancellation_never_matches_a_later_order_or_another_customer(tmp_path: Path) -> None:
    rows = [
        ("C1", "85048", "X", -1, "2010-01-01 09:00:00", 1.0, 1.0, "France"),
        ("2", "85048", "X", 1, "2010-01-02 09:00:00", 1.0, 1.0, "France"),  # later
        ("3", "85048", "X", 1, "2009-12-01 09:00:00", 1.0, 2.0, "France"),  # other customer
    ]
    _, result = _or_result(rows, tmp_path)
    assert result.tables["after_sales_cases"].empty
    assert _reason(result, "C1", "85048") == "cancellation_without_earlier_order"


def test_online_retail_refusal_rules(tmp_path: Path) -> None:
    ts = "2010-03-01 10:00:00"
    rows = [
        ("100", "85123A", "WHITE HANGING HEART", 6, ts, 2.55, 17850.0, UK),
        ("100", "15056BL", "UMBRELLA", 1, ts, 5.95, 17850.0, UK),
        ("100", "DCGS0058", "MISO PRETTY GUM", 1, ts, 0.83, 17850.0, UK),
        ("100", "POST", "POSTAGE", 1, ts, 18.0, 17850.0, UK),
        ("100", "M", "Manual", 1, ts, 3.0, 17850.0, UK),
        ("100", "BANK CHARGES", "Bank Charges", 1, ts, 15.0, 17850.0, UK),
        ("100", "gift_0001_20", "Gift Voucher", 1, ts, 17.0, 17850.0, UK),
        ("100", "TEST001", "This is a test product.", 1, ts, 4.5, 17850.0, UK),
        ("100", "AMAZONFEE", "AMAZON FEE", 1, ts, 6000.0, 17850.0, UK),
        ("100", "C2", "CARRIAGE", 1, ts, 50.0, 17850.0, UK),
        ("100", "22041", "RECORD FRAME", 1, ts, 0.0, 17850.0, UK),
        ("100", "22042", "RECORD FRAME", -3, ts, 2.1, 17850.0, UK),
        ("101", "22041", "RECORD FRAME", 1, ts, 2.1, None, UK),
        ("102", "22041", "RECORD FRAME", 1, ts, 2.1, 12000.0, "Unspecified"),
        ("103", "22041", "RECORD FRAME", 1, ts, 2.1, 12001.0, "Channel Islands"),
        ("104", "22041", "RECORD FRAME", 1, "not a date", 2.1, 12002.0, "France"),
        ("A105", "B", "Adjust bad debt", 1, ts, -100.0, None, UK),
        ("C106", "22041", "RECORD FRAME", 2, ts, 2.1, 17850.0, UK),
        ("107", "22041", "RECORD FRAME", 1, ts, 2.1, 12003.0, "RSA"),
    ]
    raw, result = _or_result(rows, tmp_path)
    expected = {
        ("100", "POST"): "postage_line_summed_into_shipping_fee",
        ("100", "C2"): "postage_line_summed_into_shipping_fee",
        ("100", "M"): "non_product_stock_code",
        ("100", "BANK CHARGES"): "non_product_stock_code",
        ("100", "GIFT_0001_20"): "non_product_stock_code",
        ("100", "TEST001"): "non_product_stock_code",
        ("100", "AMAZONFEE"): "non_product_stock_code",
        ("100", "22041"): "non_positive_price",
        ("100", "22042"): "negative_quantity_on_sales_invoice",
        ("101", "22041"): "missing_customer_id",
        ("102", "22041"): "country_not_mappable",
        ("103", "22041"): "country_not_mappable",
        ("104", "22041"): "unparseable_invoice_date",
        ("A105", "B"): "not_a_sales_or_cancellation_invoice",
        ("C106", "22041"): "positive_quantity_on_cancellation",
    }
    ref = result.refused["online_retail"]
    got = {
        (i, c.upper()): r
        for i, c, r in zip(ref["Invoice"], ref["StockCode"], ref["reason"], strict=True)
    }
    assert got == expected
    lines = result.tables["order_lines"]
    assert sorted(lines.loc[lines["order_id"] == "100", "sku_id"]) == [
        "15056BL",
        "85123A",
        "DCGS0058",
    ]
    orders = result.tables["orders"].set_index("order_id")
    assert orders.loc["100", "shipping_fee"] == pytest.approx(68.0)  # POST + CARRIAGE
    assert orders.loc["107", "shipping_fee"] == 0.0
    assert orders.loc["107", "destination_country"] == "ZA"
    assert _accounted(result) == len(raw)
    assert set(ref.columns) >= {"reason", "source_file", "source_row", *OR2_COLUMNS}
    assert "missing_customer_id" in result.report()


def test_both_column_spellings_and_overlapping_files_are_deduplicated(tmp_path: Path) -> None:
    old = _or_rows(
        [
            ("536365", "85123A", "HEART", 6, "12/1/2010 8:26", 2.55, "17850", UK),
            ("536366", "22633", "HAND WARMER", 6, "12/1/2010 8:28", 1.85, "17850", UK),
        ],
        OR1_COLUMNS,
    )  # fmt: skip
    new = _or_rows(
        [
            ("536365", "85123A", "HEART", 6, "2010-12-01 08:26:00", 2.55, 17850.0, UK),
            ("536400", "22633", "HAND WARMER", 2, "2010-12-02 09:00:00", 1.85, 17850.0, UK),
        ]
    )  # fmt: skip
    new.to_parquet(tmp_path / "ii.parquet", index=False)
    old.to_csv(tmp_path / "i.csv", index=False)
    raw = read_online_retail([tmp_path / "ii.parquet", tmp_path / "i.csv"])
    assert list(raw.columns[:8]) == OR2_COLUMNS
    result = online_retail_tables(raw)
    orders = result.tables["orders"].set_index("order_id")
    assert sorted(orders.index) == ["536365", "536366", "536400"]
    lines = result.tables["order_lines"]
    assert (lines["order_id"] == "536365").sum() == 1  # the overlapping invoice, once
    ref = result.refused["online_retail"]
    assert ref["reason"].tolist() == ["duplicate_invoice_in_earlier_file"]
    assert ref["source_file"].tolist() == ["i.csv"]
    # the CSV's month-first time and the Parquet's ISO time are the same instant
    assert orders.loc["536366", "order_ts"] == pd.Timestamp("2010-12-01 08:28", tz="UTC")
    assert set(result.tables["customers"]["customer_id"]) == {"17850"}
    assert _accounted(result) == len(raw) == 4


def test_uk_shop_time_is_converted_to_utc() -> None:
    raw = _or_rows(
        [
            ("1", "22041", "FRAME", 1, "2010-06-01 12:00:00", 2.0, 1.0, "France"),
            ("2", "22041", "FRAME", 1, "2010-01-15 12:00:00", 2.0, 1.0, "France"),
        ]
    ).assign(source_file="x", source_row=[0, 1], file_index=0)
    orders = online_retail_tables(raw).tables["orders"].set_index("order_id")
    assert orders.loc["1", "order_ts"] == pd.Timestamp("2010-06-01 11:00", tz="UTC")  # BST
    assert orders.loc["2", "order_ts"] == pd.Timestamp("2010-01-15 12:00", tz="UTC")  # GMT


def test_online_retail_reference_tables_and_purity(tmp_path: Path) -> None:
    raw, result = _or_result(BASIC, tmp_path)
    before = raw.copy()
    again = online_retail_tables(raw)
    pd.testing.assert_frame_equal(raw, before)  # input not mutated
    for name, df in result.tables.items():
        pd.testing.assert_frame_equal(df, again.tables[name])  # deterministic
    t = coerce_tables(result.tables)
    countries = t.countries.set_index("country_code")
    assert {"GB", "IE"} <= set(countries.index)
    assert bool(countries.loc["GB", "is_domestic"])
    assert pd.isna(countries.loc["GB", "duty_de_minimis"])  # domestic: no import duty
    assert bool(countries.loc["IE", "no_import_duty"])  # EU customs union in 2009-2011
    carriers = t.carriers
    assert carriers["carrier_id"].tolist() == ["unknown"]
    assert carriers["service_level"].tolist() == ["standard"]
    skus = t.skus.set_index("sku_id")
    assert skus.loc["85048", "list_price"] == pytest.approx(6.95)
    assert skus.loc["85048", "category"] == "lighting_candles"
    customers = t.customers.set_index("customer_id")
    assert customers.loc["13085", "first_seen_ts"] == t.orders["order_ts"].min()


def test_online_retail_reads_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(ImporterError, match="file not found"):
        read_online_retail([tmp_path / "missing.parquet"])
    bad = tmp_path / "bad.csv"
    _or_rows(BASIC).drop(columns=["Price"]).to_csv(bad, index=False)
    with pytest.raises(
        ImporterError, match=r"bad\.csv: column\(s\) missing: 'Price' or 'UnitPrice'"
    ):
        read_online_retail([bad])


def test_country_names_map_to_iso_codes() -> None:
    names = pd.Series(["EIRE", "RSA", "USA", " united kingdom ", "Korea", "European Community"])
    codes = country_codes(names)
    assert codes.iloc[:5].tolist() == ["IE", "ZA", "US", "GB", "KR"]
    assert pd.isna(codes.iloc[5])


def test_country_names_are_reference_data() -> None:
    from returnrisk.importers.common import NOT_A_COUNTRY
    from returnrisk.reference import load_country_names

    names = load_country_names()
    assert names["eire"] == "IE"
    assert names["cote d'ivoire"] == "CI"
    assert all(k == k.strip().lower() for k in names)
    assert all(len(v) == 2 and v.isupper() for v in names.values())
    assert not NOT_A_COUNTRY & set(names)  # ambiguous names are refused, never mapped
    names["eire"] = "XX"
    assert load_country_names()["eire"] == "IE"  # a new dict each call


def test_cli_online_retail_writes_a_valid_directory(tmp_path: Path) -> None:
    src = tmp_path / "or.csv"
    _or_rows(BASIC).to_csv(src, index=False)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["import", "online-retail", str(src), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "case rate" in res.output
    assert "cancellation_without_earlier_order" in res.output
    assert (out / "refused" / "online_retail_refused.parquet").is_file()
    assert runner.invoke(app, ["validate", str(out), "--quiet"]).exit_code == 0
    args = ["import", "online-retail", str(tmp_path / "no.csv"), "--out", str(out)]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 1
    assert "error:" in missing.output
    assert "Traceback" not in missing.output


# ---------------------------------------------------------------------------------------------
# Global Superstore: tiny exports

SS_COLUMNS = [
    "Row ID", "Order ID", "Order Date", "Ship Date", "Ship Mode", "Customer ID", "Customer Name",
    "Segment", "City", "State", "Country", "Postal Code", "Market", "Region", "Product ID",
    "Category", "Sub-Category", "Product Name", "Sales", "Quantity", "Discount", "Profit",
    "Shipping Cost", "Order Priority",
]  # fmt: skip


def _ss_line(
    oid: str,
    market: str,
    country: str,
    *,
    cust: str = "AB-1",
    day: str = "01-02-2012",
    ship: str = "05-02-2012",
    mode: str = "Standard Class",
    segment: str = "Consumer",
    pid: str = "OFF-PA-1",
    name: str = "Paper",
    sales: float = 90.0,
    qty: int = 3,
    discount: float = 0.1,
    ship_cost: float = 5.0,
) -> dict:
    values = [
        0, oid, day, ship, mode, cust, "A B", segment, "City", "State", country, None, market,
        "Region", pid, "Office Supplies", "Paper", name, sales, qty, discount, 1.0, ship_cost,
        "Medium",
    ]  # fmt: skip
    return dict(zip(SS_COLUMNS, values, strict=True))


def _ss(lines: list[dict], returns: list[tuple[str, str]], **kw):
    raw = pd.DataFrame(lines).astype("str")
    raw["Row ID"] = [str(i + 1) for i in range(len(raw))]
    ret = pd.DataFrame(
        [("Yes", o, m) for o, m in returns], columns=["Returned", "Order ID", "Market"]
    )
    return raw, ret, superstore_tables(raw, ret, **kw)


def test_superstore_returns_join_on_order_id_and_market() -> None:
    lines = [
        _ss_line("ES-2012-1", "EU", "Germany"),
        _ss_line("ES-2012-1", "EU", "Germany", pid="TEC-PH-2", sales=200.0, qty=1, discount=0.0),
        _ss_line("ES-2012-1", "LATAM", "Mexico", cust="CD-2"),  # same Order ID, other market
        _ss_line(
            "US-2012-9", "US", "United States", cust="EF-3", mode="Same Day", segment="Corporate"
        ),
    ]
    raw, ret, result = _ss(lines, [("ES-2012-1", "EU"), ("XX-1", "EU")], return_lag_days=10)
    t = result.tables
    assert sorted(t["orders"]["order_id"]) == ["EU:ES-2012-1", "LATAM:ES-2012-1", "US:US-2012-9"]
    cases = t["after_sales_cases"]
    assert cases["order_id"].tolist() == ["EU:ES-2012-1"]  # not the LATAM order
    assert cases["case_type"].tolist() == ["return"]
    assert cases["opened_ts"].iloc[0] == pd.Timestamp("2012-02-15", tz="UTC")  # ship + 10 d
    orders = t["orders"].set_index("order_id")
    assert orders.loc["EU:ES-2012-1", "order_value"] == pytest.approx(290.0)
    assert orders.loc["EU:ES-2012-1", "shipping_fee"] == pytest.approx(10.0)
    assert orders.loc["EU:ES-2012-1", "discount_value"] == pytest.approx(10.0)  # 90 / 0.9 - 90
    assert orders.loc["EU:ES-2012-1", "destination_country"] == "DE"
    assert orders.loc["US:US-2012-9", "carrier_id"] == "same_day"
    lines_out = t["order_lines"]
    assert lines_out["unit_price"].iloc[0] == pytest.approx(30.0)  # Sales / Quantity
    carriers = t["carriers"].set_index("carrier_id")["service_level"].to_dict()
    assert carriers == {
        "same_day": "express",
        "first_class": "express",
        "second_class": "standard",
        "standard_class": "economy",
    }
    segments = t["customers"].set_index("customer_id")["segment"]
    assert segments.to_dict() == {"AB-1": "b2c", "CD-2": "b2c", "EF-3": "b2b"}
    ships = t["shipments"].set_index("order_id")
    assert ships.loc["US:US-2012-9", "shipped_ts"] == pd.Timestamp("2012-02-05", tz="UTC")
    refused_ret = result.refused["superstore_returns"]
    assert refused_ret["reason"].tolist() == ["no_order_with_this_order_id_and_market"]
    assert len(cases) + len(refused_ret) == len(ret)
    assert len(t["order_lines"]) + len(result.refused["superstore_orders"]) == len(raw)
    coerce_tables(t)


def test_superstore_markets_without_returns_are_kept_only_on_request() -> None:
    lines = [_ss_line("A-1", "EU", "France"), _ss_line("B-1", "EMEA", "Turkey")]
    _, _, default = _ss(lines, [])
    assert default.tables["orders"]["order_id"].tolist() == ["EU:A-1"]
    assert default.refused["superstore_orders"]["reason"].tolist() == ["market_records_no_returns"]
    _, _, everything = _ss(lines, [], all_markets=True)
    assert sorted(everything.tables["orders"]["order_id"]) == ["EMEA:B-1", "EU:A-1"]
    assert everything.refused["superstore_orders"].empty


def test_superstore_order_id_reused_within_a_market() -> None:
    lines = [
        _ss_line("AG-1", "EU", "Spain", cust="P-1", day="26-12-2012", ship="30-12-2012"),
        _ss_line("AG-1", "EU", "Spain", cust="M-2", day="09-11-2012", ship="13-11-2012"),
        _ss_line("AG-2", "EU", "Spain", cust="P-1", day="01-03-2012", ship="02-03-2012"),
        _ss_line("AG-2", "EU", "Spain", cust="M-2", day="05-03-2012", ship="06-03-2012"),
    ]
    raw, ret, result = _ss(lines, [("AG-2", "EU")])
    # AG-1 (never returned): two distinct orders; AG-2 returned but ambiguous: refused
    assert sorted(result.tables["orders"]["order_id"]) == [
        "EU:AG-1:M-2:2012-11-09",
        "EU:AG-1:P-1:2012-12-26",
    ]
    reasons = result.refused["superstore_orders"]["reason"].tolist()
    assert reasons == ["returned_order_id_reused_within_market"] * 2
    assert result.refused["superstore_returns"]["reason"].tolist() == [
        "order_refused_see_line_reasons"
    ]
    assert result.tables["after_sales_cases"].empty


def test_superstore_refusal_rules_and_skus() -> None:
    lines = [
        _ss_line("A-1", "EU", "Atlantis"),
        _ss_line("A-2", "EU", "France", mode="Teleport"),
        _ss_line("A-3", "EU", "France", day="31-02-2012"),
        _ss_line("A-4", "EU", "France", ship="01-01-2012"),
        _ss_line("A-5", "EU", "France", name="Paper, Blue"),
        _ss_line("A-6", "EU", "France", name="Paper, Red"),
        _ss_line("A-7", "EU", "France", name="Paper, Red"),
    ]
    _, _, result = _ss(lines, [])
    reasons = result.refused["superstore_orders"].set_index("Order ID")["reason"].to_dict()
    assert reasons == {
        "A-1": "country_not_mappable",
        "A-2": "unknown_ship_mode",
        "A-3": "unparseable_order_date",
        "A-4": "ship_date_before_order_date",
    }
    skus = result.tables["skus"].set_index("sku_id")
    assert skus.loc["OFF-PA-1", "n_product_names"] == 2
    assert skus.loc["OFF-PA-1", "product_name"] == "Paper, Red"  # the most frequent name
    assert skus.loc["OFF-PA-1", "category"] == "Office Supplies/Paper"
    assert skus.loc["OFF-PA-1", "list_price"] == pytest.approx(100.0 / 3)  # before discount


def test_superstore_cli_reads_zipped_latin1_csv(tmp_path: Path) -> None:
    lines = pd.DataFrame([_ss_line("A-2", "EU", "France", name="Café")])
    csv_bytes = lines.to_csv(index=False).encode("latin-1")
    with zipfile.ZipFile(tmp_path / "gs.csv.zip", "w") as zf:
        zf.writestr("gs.csv", csv_bytes)
    pd.DataFrame([("Yes", "A-2", "EU")], columns=["Returned", "Order ID", "Market"]).to_csv(
        tmp_path / "Returns.csv", index=False
    )
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["import", "superstore", str(tmp_path / "gs.csv.zip"), str(tmp_path / "Returns.csv")]
    res = runner.invoke(app, [*args, "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    tables = load_tables(out)
    assert tables.after_sales_cases["order_id"].tolist() == ["EU:A-2"]
    assert tables.skus["product_name"].tolist() == ["Café"]
    returns = str(tmp_path / "Returns.csv")
    bad = runner.invoke(app, ["import", "superstore", returns, returns, "--out", str(out)])
    assert bad.exit_code == 1
    assert "column(s) missing" in bad.output


# ---------------------------------------------------------------------------------------------
# Real exports (slow; skipped when ../shared/data is absent)


@pytest.mark.slow
def test_real_online_retail(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "online_retail" / "online_retail_II_2009_2010.parquet"
    start = time.perf_counter()
    result = import_online_retail(OnlineRetailConfig(files=(src,), out=tmp_path / "or"))
    seconds = time.perf_counter() - start
    tables = load_tables(tmp_path / "or")
    n_in = len(pd.read_parquet(src))
    refused = pd.read_parquet(tmp_path / "or" / "refused" / "online_retail_refused.parquet")
    # nothing lost: every input row is a line, a case, or refused with a reason
    assert len(tables.order_lines) + len(tables.after_sales_cases) + len(refused) == n_in
    assert refused["reason"].notna().all()
    assert 15_000 < len(tables.orders) < 25_000
    assert 3_000 < len(tables.customers) < 6_000
    assert 30 <= tables.orders["destination_country"].nunique() <= 40
    rate = result.figures["case rate (90 d, mature orders)"]
    assert 0.05 < rate < 0.35
    counts = refused["reason"].value_counts()
    assert counts["missing_customer_id"] > 100_000
    assert counts["non_product_stock_code"] > 0
    assert counts["cancellation_without_earlier_order"] > 0
    assert counts.get("duplicate_invoice_in_earlier_file", 0) == 0
    assert seconds < 60
    # the same file twice: the second copy is refused whole, nothing else changes
    twice = online_retail_tables(read_online_retail([src, src]))
    assert len(twice.tables["orders"]) == len(tables.orders)
    dup = twice.refused["online_retail"]["reason"].eq("duplicate_invoice_in_earlier_file").sum()
    assert dup == n_in


@pytest.mark.slow
def test_real_superstore(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "global_superstore"
    orders_csv, returns_csv = folder / "Global_Superstore2.csv.zip", folder / "Returns.csv"
    n_lines = len(pd.read_csv(orders_csv, encoding="latin-1"))
    n_returns = len(pd.read_csv(returns_csv))
    for all_markets in (False, True):
        out = tmp_path / f"ss_{all_markets}"
        result = import_superstore(
            SuperstoreConfig(orders_csv, returns_csv, out, all_markets=all_markets)
        )
        tables = load_tables(out)
        ref_lines = pd.read_parquet(out / "refused" / "superstore_orders_refused.parquet")
        ref_returns = pd.read_parquet(out / "refused" / "superstore_returns_refused.parquet")
        assert len(tables.order_lines) + len(ref_lines) == n_lines
        assert len(tables.after_sales_cases) + len(ref_returns) == n_returns
        assert len(tables.shipments) == len(tables.orders)
        markets = set(tables.orders["market"])
        if all_markets:
            assert len(markets) == 7
            assert tables.orders["destination_country"].nunique() == 147
        else:
            assert markets == {"APAC", "EU", "LATAM", "US"}
        assert 0.02 < result.figures["case rate (90 d, mature orders)"] < 0.10
        assert len(tables.after_sales_cases) > 1_000


def test_online_retail_with_nothing_to_refuse_writes_no_refused_rows(tmp_path: Path) -> None:
    # regression (issue 10): an empty refused frame took the index of the reason Series and
    # came out as one all-empty row per input row ("refused rows 3").
    rows = BASIC[:3]
    raw, result = _or_result(rows, tmp_path)
    refused = result.refused["online_retail"]
    assert refused.empty
    assert "reason" in refused.columns
    assert result.figures["refused rows"] == 0
    assert _accounted(result) == len(raw) == 3
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["import", "online-retail", str(tmp_path / "or.csv"),
                                   "--out", str(out), "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert pd.read_parquet(out / "refused" / "online_retail_refused.parquet").empty


# ---------------------------------------------------------------------------------------------
# times outside the contract's 2000..now: refused rows of the export, never "an importer bug"


def test_online_retail_rows_dated_outside_2000_to_now_are_refused(tmp_path: Path) -> None:
    now = pd.Timestamp("2009-12-08 00:00", tz="UTC")
    rows = [
        *BASIC[:4],
        ("489437", "85048", "LIGHT GARLAND", 1, "2009-12-09 10:00:00", 6.95, 13085.0, UK),
        ("489438", "85048", "LIGHT GARLAND", 1, "1999-12-09 10:00:00", 6.95, 13085.0, UK),
    ]
    _, result = _or_result(rows, tmp_path, now=now)
    assert _reason(result, "489437", "85048") == "invoice_date_outside_2000_to_now"
    assert _reason(result, "489438", "85048") == "invoice_date_outside_2000_to_now"
    assert sorted(result.tables["orders"]["order_id"]) == ["489434", "489435", "489436"]
    assert _accounted(result) == len(rows)


def test_superstore_dates_outside_2000_to_now_are_refused_and_a_return_never_opens_later() -> None:
    """The assumed opening of a return (ship + lag) is capped at the import's clock: a recent
    return imports (it was a future case, so the whole import failed, before)."""
    from returnrisk.contract import coerce_tables

    now = pd.Timestamp("2012-02-10", tz="UTC")
    lines = [
        _ss_line("ES-2012-1", "EU", "Germany"),  # shipped 02-05, returned: opens 02-10 (capped)
        _ss_line("ES-2012-2", "EU", "Germany", day="11-02-2012", ship="12-02-2012"),
        _ss_line("ES-2012-3", "EU", "Germany", day="01-02-1999", ship="05-02-1999"),
    ]
    _, _, result = _ss(lines, [("ES-2012-1", "EU")], return_lag_days=10, now=now)
    refused = result.refused["superstore_orders"].set_index("Order ID")["reason"].to_dict()
    assert refused == {
        "ES-2012-2": "order_date_outside_2000_to_now",
        "ES-2012-3": "order_date_outside_2000_to_now",
    }
    cases = result.tables["after_sales_cases"]
    assert cases["opened_ts"].tolist() == [now]
    coerce_tables(result.tables, now=now)
