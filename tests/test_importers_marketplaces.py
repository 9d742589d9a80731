"""Shopify, Amazon and tracking importers: one test per mapping rule on tiny hand-built frames,
then the committed fixtures (tests/fixtures/, written by make_fixtures.py) end to end: nothing
lost, no personal data in any output file, valid directory, features and a tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from returnrisk.cli import app
from returnrisk.contract import coerce_tables, load_tables
from returnrisk.importers import (
    AmazonConfig,
    ImporterError,
    ShopifyConfig,
    TrackingConfig,
    amazon_tables,
    customer_keys,
    import_amazon,
    import_shopify,
    import_tracking,
    read_amazon,
    read_shopify,
    read_tracking,
    reason_case_types,
    shopify_tables,
    tracking_updates,
)
from returnrisk.importers.common import (
    personal_columns,
    resolve_salt,
    service_levels,
    tracked_flags,
)
from returnrisk.importers.shopify import OPTIONAL as SHOPIFY_OPTIONAL
from returnrisk.importers.shopify import REQUIRED as SHOPIFY_REQUIRED

FIXTURES = Path(__file__).parent / "fixtures"
SALT = "test-salt-not-secret"
SHOPIFY_FILES = (
    FIXTURES / "shopify" / "orders_export_1.csv",
    FIXTURES / "shopify" / "orders_export_2.csv",
)
AMAZON = FIXTURES / "amazon"
TRACKING = FIXTURES / "tracking" / "aftership_events.csv"

# ---------------------------------------------------------------------------------------------
# Shopify: tiny frames


def _order(name: str, *lines: dict, **fields: str) -> list[dict]:
    """An order as the export writes it: order fields on the first row only."""
    head = {
        "Email": "a@example.com",
        "Financial Status": "paid",
        "Currency": "EUR",
        "Subtotal": "100.00",
        "Shipping": "5.00",
        "Discount Amount": "0.00",
        "Shipping Method": "Standard Shipping",
        "Created at": "2024-03-01 10:00:00 +0100",
        "Shipping Country": "DE",
        "Refunded Amount": "0.00",
        "Fulfillment Status": "fulfilled",
        "Fulfilled at": "2024-03-02 10:00:00 +0100",
        "Payment Method": "Shopify Payments",
        **fields,
    }
    rows = []
    for i, line in enumerate(lines or ({},)):
        row = {"Name": name, **(head if i == 0 else {})}
        row.update(
            {
                "Lineitem quantity": "1",
                "Lineitem name": "Shirt - Blue / M",
                "Lineitem price": "100.00",
                "Lineitem sku": "SH-B-M",
                "Vendor": "Loom",
                **line,
            }
        )
        rows.append(row)
    return rows


def _shop(*orders: list[dict], file_index: int = 0) -> pd.DataFrame:
    rows = [r for o in orders for r in o]
    df = pd.DataFrame(rows, columns=[*SHOPIFY_REQUIRED, *SHOPIFY_OPTIONAL]).astype("str")
    df = df.where(pd.DataFrame(rows, columns=df.columns).notna())
    return df.assign(source_file="x.csv", source_row=np.arange(len(df)), file_index=file_index)


def _shopify(*orders: list[dict], **kw):
    return shopify_tables(_shop(*orders), salt=SALT, **kw)


def test_shopify_order_fields_on_the_first_row_reach_every_line() -> None:
    raw = _shop(_order("#1", {}, {"Lineitem sku": "SH-B-L", "Lineitem price": "40.00"}))
    assert raw["Email"].isna().tolist() == [False, True]  # as the export writes it
    result = shopify_tables(raw, salt=SALT)
    orders = result.tables["orders"].set_index("order_id")
    assert orders.loc["#1", "order_value"] == 100.0  # Subtotal: after discounts, before shipping
    assert orders.loc["#1", "shipping_fee"] == 5.0
    assert orders.loc["#1", "destination_country"] == "DE"
    assert orders.loc["#1", "channel"] == "shopify"
    assert orders.loc["#1", "payment_method"] == "shopify payments"
    assert orders.loc["#1", "order_ts"] == pd.Timestamp("2024-03-01 09:00", tz="UTC")  # +0100
    lines = result.tables["order_lines"]
    assert lines["sku_id"].tolist() == ["SH-B-M", "SH-B-L"]
    assert result.refused["shopify_orders"].empty
    coerce_tables(result.tables)


def test_shopify_later_file_wins_for_an_order_in_both() -> None:
    early = _shop(_order("#1"), _order("#2"), file_index=0)
    late = _shop(
        _order("#2", **{"Financial Status": "partially_refunded", "Refunded Amount": "30.00"}),
        file_index=1,
    )
    result = shopify_tables(pd.concat([early, late], ignore_index=True), salt=SALT)
    assert sorted(result.tables["orders"]["order_id"]) == ["#1", "#2"]
    refused = result.refused["shopify_orders"]
    assert refused["reason"].tolist() == ["order_in_a_later_file"]
    cases = result.tables["after_sales_cases"]
    assert cases["order_id"].tolist() == ["#2"]
    assert cases["amount"].tolist() == [30.0]


def test_shopify_line_without_sku_is_keyed_by_its_name() -> None:
    result = _shopify(_order("#1", {"Lineitem sku": None, "Lineitem name": "Handmade Mug"}))
    assert result.tables["order_lines"]["sku_id"].tolist() == ["name:Handmade Mug"]
    skus = result.tables["skus"].set_index("sku_id")
    assert skus.loc["name:Handmade Mug", "product_id"] == "title:Handmade Mug"


def test_shopify_skus_vendor_is_brand_compare_at_is_list_price() -> None:
    result = _shopify(
        _order("#1", {"Lineitem compare at price": "120.00"}, {"Lineitem sku": "X"}),
    )
    skus = result.tables["skus"].set_index("sku_id")
    assert skus.loc["SH-B-M", "list_price"] == 120.0  # compare-at price
    assert skus.loc["X", "list_price"] == 100.0  # no compare-at: the price paid
    assert skus.loc["SH-B-M", "brand"] == "Loom"
    assert skus.loc["SH-B-M", "product_id"] == "title:Shirt"  # variants grouped by title


def test_shopify_refusal_rules() -> None:
    result = _shopify(
        _order("#1", {}, {"Lineitem requires shipping": "false", "Lineitem sku": "GIFT"}),
        _order("#2", Email=None),
        _order("#3", Currency="USD"),
        _order("#4", **{"Created at": "yesterday"}),
        _order("#5", **{"Shipping Country": None}),
        _order("#6", {"Lineitem quantity": "0"}),
        _order("#7", Subtotal="lots"),
        _order("#8", **{"Shipping Country": "Atlantis"}),
    )
    ref = result.refused["shopify_orders"].set_index("Name")["reason"].to_dict()
    assert ref == {
        "#1": "line_item_not_shipped",
        "#2": "missing_email",
        "#3": "currency_not_reporting_currency",
        "#4": "unparseable_created_at",
        "#5": "missing_shipping_country",
        "#6": "non_positive_lineitem_quantity",
        "#7": "unparseable_subtotal",
        "#8": "country_not_mappable",
    }
    assert result.tables["orders"]["order_id"].tolist() == ["#1"]
    assert result.figures["reporting currency"] == "EUR"  # the most frequent one


def test_shopify_currency_option_refuses_the_other_currencies() -> None:
    result = _shopify(_order("#1"), _order("#2", Currency="USD"), currency="usd")
    assert result.tables["orders"]["order_id"].tolist() == ["#2"]
    with pytest.raises(ImporterError, match="--currency XYZ"):
        _shopify(_order("#1"), currency="XYZ")


def test_shopify_cases_from_cancellations_and_refunds() -> None:
    result = _shopify(
        _order(
            "#1",
            **{
                "Cancelled at": "2024-03-01 12:00:00 +0100",
                "Fulfilled at": None,
                "Fulfillment Status": "unfulfilled",
                "Financial Status": "refunded",
                "Refunded Amount": "105.00",
            },
        ),  # fmt: skip
        _order("#2", **{"Financial Status": "refunded", "Refunded Amount": "105.00"}),
        _order("#3", **{"Financial Status": "partially_refunded", "Refunded Amount": "20.00"}),
        _order(
            "#4",
            **{
                "Financial Status": "refunded",
                "Refunded Amount": "100.00",
                "Fulfilled at": None,
                "Fulfillment Status": "unfulfilled",
            },
        ),  # fmt: skip
        _order("#5"),
        refund_lag_days=10,
    )
    cases = result.tables["after_sales_cases"].set_index("order_id")
    assert sorted(cases.index) == ["#1", "#2", "#3", "#4"]
    assert cases.loc["#1", "case_type"] == "refund"  # cancelled: its real time
    assert cases.loc["#1", "opened_ts"] == pd.Timestamp("2024-03-01 11:00", tz="UTC")
    assert not cases.loc["#1", "opened_ts_assumed"]
    assert cases.loc["#2", "case_type"] == "return"  # refunded after fulfilment
    fulfilled = pd.Timestamp("2024-03-02 09:00", tz="UTC")
    assert cases.loc["#2", "opened_ts"] == fulfilled + pd.Timedelta(days=10)  # assumption
    assert cases.loc["#3", "amount"] == 20.0
    assert cases.loc["#3", "case_type"] == "return"
    assert cases.loc["#4", "case_type"] == "refund"  # never fulfilled
    assert cases.loc["#4", "opened_ts"] == pd.Timestamp("2024-03-11 09:00", tz="UTC")
    ships = result.tables["shipments"].set_index("order_id")
    assert ships.loc["#2", "shipped_ts"] == fulfilled
    assert "#4" not in ships.index


def test_shopify_duties_make_the_order_ddp() -> None:
    result = _shopify(_order("#1", Duties="12.40"), _order("#2"), _order("#3", Duties="0.00"))
    orders = result.tables["orders"].set_index("order_id")
    assert orders.loc["#1", "incoterm"] == "DDP"
    assert orders.loc["#1", "duties"] == 12.4
    assert pd.isna(orders.loc["#2", "incoterm"])
    assert pd.isna(orders.loc["#3", "incoterm"])


@pytest.mark.parametrize(
    ("method", "level", "tracked"),
    [
        ("DHL Express Worldwide", "express", True),
        ("International Priority", "express", pd.NA),
        ("Next Day Delivery", "express", pd.NA),
        ("Economy (untracked)", "economy", False),
        ("Royal Mail Tracked 48", "standard", True),
        ("Standard Shipping", "standard", pd.NA),
        ("Livraison", "standard", pd.NA),
    ],
)
def test_shipping_method_names_to_service_level(method: str, level: str, tracked) -> None:
    names = pd.Series([method])
    assert service_levels(names).tolist() == [level]
    got = tracked_flags(names).iloc[0]
    assert (pd.isna(got) and pd.isna(tracked)) or got == tracked


def test_shopify_carriers_table_from_shipping_methods() -> None:
    result = _shopify(_order("#1", **{"Shipping Method": "DHL Express Worldwide"}), _order("#2"))
    carriers = result.tables["carriers"].set_index("carrier_id")
    assert carriers.loc["dhl_express_worldwide", "service_level"] == "express"
    assert carriers.loc["standard_shipping", "service_level"] == "standard"
    orders = result.tables["orders"].set_index("order_id")
    assert orders.loc["#1", "carrier_id"] == "dhl_express_worldwide"


def test_shopify_country_names_are_mapped_too() -> None:
    result = _shopify(_order("#1", **{"Shipping Country": "Germany"}), _order("#2"))
    assert set(result.tables["orders"]["destination_country"]) == {"DE"}


def test_shopify_does_not_mutate_its_input_and_is_deterministic() -> None:
    raw = _shop(_order("#1"), _order("#2", **{"Financial Status": "refunded"}))
    before = raw.copy()
    a, b = shopify_tables(raw, salt=SALT), shopify_tables(raw, salt=SALT)
    pd.testing.assert_frame_equal(raw, before)
    for name, df in a.tables.items():
        pd.testing.assert_frame_equal(df, b.tables[name])


# ---------------------------------------------------------------------------------------------
# Privacy


def test_customer_key_is_a_salted_hash_of_the_normalised_email() -> None:
    emails = pd.Series(["A@Example.com ", "a@example.com", "b@example.com", None])
    keys = customer_keys(emails, SALT)
    assert keys.iloc[0] == keys.iloc[1] != keys.iloc[2]
    assert pd.isna(keys.iloc[3])
    assert keys.iloc[0].startswith("cust_")
    assert len(keys.iloc[0]) == 25
    assert "example" not in keys.iloc[0]
    assert customer_keys(emails, "another-salt-9").iloc[0] != keys.iloc[0]
    assert customer_keys(emails, SALT).equals(keys)  # stable


def test_salt_comes_from_option_or_environment_and_is_required(monkeypatch) -> None:
    monkeypatch.delenv("RETURNRISK_SALT", raising=False)
    with pytest.raises(ImporterError, match="no salt for the customer key: give --salt or set"):
        resolve_salt(None, "shopify")
    with pytest.raises(ImporterError, match="at least 8"):
        resolve_salt("short", "shopify")
    monkeypatch.setenv("RETURNRISK_SALT", "from-the-environment")
    assert resolve_salt(None, "shopify") == "from-the-environment"
    assert resolve_salt("from-the-option", "shopify") == "from-the-option"


def test_personal_columns_are_recognised() -> None:
    cols = ["Name", "Email", "Billing Name", "Shipping Street", "Shipping Zip", "Shipping Phone",
            "Notes", "Lineitem name", "Shipping Country", "Billing Province Name", "ship-city",
            "ship-postal-code", "buyer-name", "buyer-email", "customer-comments", "product-name",
            "Customer name", "Employee", "Billing Company", "Shipping Method"]  # fmt: skip
    assert personal_columns(cols) == [
        "Email", "Billing Name", "Shipping Street", "Shipping Zip", "Shipping Phone", "Notes",
        "ship-city", "ship-postal-code", "buyer-name", "buyer-email", "customer-comments",
        "Customer name", "Employee", "Billing Company",
    ]  # fmt: skip


def test_cli_without_salt_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RETURNRISK_SALT", raising=False)
    res = CliRunner().invoke(
        app, ["import", "shopify", str(SHOPIFY_FILES[0]), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 1
    assert "no salt" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def _personal_values(files: list[Path], sep: str) -> set[str]:
    values: set[str] = set()
    for f in files:
        df = pd.read_csv(f, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        for col in personal_columns(df.columns):
            values |= {v for v in df[col] if v}
    # every single name part too (a name split into columns would still leak)
    names = {v for v in values if "@" not in v and not v.startswith("+")}
    values |= {part for v in names for part in v.split() if len(part) > 4}
    return values


def _all_output_text(folder: Path) -> str:
    parts = []
    for f in sorted(folder.rglob("*")):
        if f.suffix == ".parquet":
            df = pd.read_parquet(f)
            parts.append(" ".join(map(str, df.columns)) + "\n" + df.to_csv(index=False))
        elif f.is_file():
            parts.append(f.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixtures imported once: shopify (+ tracking) and amazon directories."""
    root = tmp_path_factory.mktemp("imported")
    import_shopify(ShopifyConfig(files=SHOPIFY_FILES, out=root / "shop", salt=SALT))
    import_tracking(TrackingConfig(file=TRACKING, into=root / "shop"))
    import_amazon(
        AmazonConfig(
            orders=(AMAZON / "all_orders.txt",),
            fba_returns=AMAZON / "fba_returns.txt",
            mfn_returns=AMAZON / "mfn_returns.txt",
            out=root / "amz",
            salt=SALT,
        )
    )
    return {"shop": root / "shop", "amz": root / "amz"}


def test_no_personal_data_in_any_output_file(imported: dict[str, Path]) -> None:
    shop_pii = _personal_values([*SHOPIFY_FILES, TRACKING], ",")
    amz_pii = _personal_values(
        [AMAZON / "all_orders.txt", AMAZON / "fba_returns.txt", AMAZON / "mfn_returns.txt"], "\t"
    )
    assert any("@example.com" in v for v in shop_pii)
    assert any("+44" in v for v in amz_pii)
    assert len(shop_pii) > 100
    assert len(amz_pii) > 50
    for name, pii in (("shop", shop_pii), ("amz", amz_pii)):
        text = _all_output_text(imported[name])
        leaked = sorted(v for v in pii if v in text)
        assert not leaked, f"{name}: personal data in the output: {leaked[:5]}"
        assert SALT not in text  # the salt is never written down
    assert (imported["shop"] / "refused" / "shopify_orders_refused.parquet").is_file()


# ---------------------------------------------------------------------------------------------
# Amazon: tiny frames

ORDER_COLUMNS = (
    "amazon-order-id", "purchase-date", "last-updated-date", "order-status",
    "fulfillment-channel", "sales-channel", "ship-service-level", "sku", "quantity", "currency",
    "item-price", "shipping-price", "item-promotion-discount", "ship-promotion-discount",
    "ship-country", "product-name", "asin", "item-status", "is-business-order", "buyer-email",
)  # fmt: skip


def _az_row(oid: str, **kw: str) -> dict:
    row = dict(zip(ORDER_COLUMNS, (
        oid, "2024-03-01T10:00:00+00:00", "2024-03-03T10:00:00+00:00", "Shipped", "Amazon",
        "Amazon.de", "Standard", "SKU-1", "2", "EUR", "40.00", "0.00", "", "", "DE", "Shirt",
        "B0001", "Shipped", "false", "buyer1@marketplace.example.net",
    ), strict=True))  # fmt: skip
    row.update(kw)
    return row


def _az(*rows: dict, fba: list[dict] | None = None, mfn: list[dict] | None = None, **kw):
    orders = pd.DataFrame(list(rows), columns=ORDER_COLUMNS)
    orders = orders.assign(source_file="o.txt", source_row=np.arange(len(orders)), file_index=0)
    f = None if fba is None else pd.DataFrame(fba).assign(source_row=range(len(fba)))
    m = None if mfn is None else pd.DataFrame(mfn).assign(source_row=range(len(mfn)))
    if f is not None and "license-plate-number" not in f.columns:
        f["license-plate-number"] = pd.Series(np.nan, index=f.index, dtype="str")
    if m is not None:
        for col in ("Amazon RMA ID", "Refunded Amount", "A-to-Z Claim", "SafeT claim id"):
            if col not in m.columns:
                m[col] = pd.Series(np.nan, index=m.index, dtype="str")
    return amazon_tables(orders, f, m, salt=SALT, **kw)


@pytest.mark.parametrize(
    ("code", "case_type"),
    [
        ("APPAREL_TOO_SMALL", "return"),
        ("APPAREL_TOO_LARGE", "return"),
        ("APPAREL_STYLE", "return"),
        ("UNWANTED_ITEM", "return"),
        ("ORDERED_WRONG_ITEM", "return"),
        ("DAMAGED_BY_CARRIER", "damaged"),
        ("DAMAGED_BY_FC", "damaged"),
        ("NOT_AS_DESCRIBED", "not_as_described"),
        ("DEFECTIVE", "not_as_described"),
        ("QUALITY_UNACCEPTABLE", "not_as_described"),
        ("MISSING_PARTS", "not_as_described"),
        ("WRONG_ITEM", "wrong_item"),
        ("UNDELIVERABLE_REFUSED", "not_received"),
        ("UNDELIVERABLE_UNKNOWN", "not_received"),
        ("CR-DEFECTIVE", "not_as_described"),
        ("AMZ-PG-APP-TOO-SMALL", "return"),
        ("  damaged_by_carrier ", "damaged"),
        ("SWITCHEROO", "other"),
        ("SOMETHING_NEW", "other"),
    ],
)
def test_amazon_reason_code_mapping(code: str, case_type: str) -> None:
    assert reason_case_types(pd.Series([code])).tolist() == [case_type]


def test_amazon_orders_lines_prices_and_cancelled_orders() -> None:
    result = _az(
        _az_row("A1", **{"item-promotion-discount": "5.00", "shipping-price": "4.99"}),
        _az_row("A1", sku="SKU-2", quantity="1", **{"item-price": "10.00"}),
        _az_row(
            "C1",
            **{
                "order-status": "Cancelled",
                "item-status": "Cancelled",
                "quantity": "0",
                "item-price": "",
                "currency": "",
            },
        ),  # fmt: skip
    )
    orders = result.tables["orders"].set_index("order_id")
    assert orders.loc["A1", "order_value"] == pytest.approx(45.0)  # 40 + 10 - 5 promotion
    assert orders.loc["A1", "shipping_fee"] == pytest.approx(4.99)
    assert orders.loc["A1", "channel"] == "amazon"
    assert orders.loc["C1", "order_status"] == "cancelled"  # kept, with its status
    lines = result.tables["order_lines"]
    assert lines["order_id"].tolist() == ["A1", "A1"]
    assert lines["unit_price"].tolist() == [20.0, 10.0]  # item-price is for the whole quantity
    cases = result.tables["after_sales_cases"].set_index("order_id")
    assert cases.loc["C1", "case_type"] == "refund"
    assert cases.loc["C1", "opened_ts"] == pd.Timestamp("2024-03-03 10:00", tz="UTC")
    assert result.figures["cancelled item rows (no line)"] == 1
    assert len(lines) + result.figures["cancelled item rows (no line)"] == 3
    carriers = result.tables["carriers"].set_index("carrier_id")
    assert carriers.loc["amazon_afn_standard", "service_level"] == "standard"
    coerce_tables(result.tables)


def test_amazon_fba_returns_open_cases_at_the_return_date() -> None:
    fba = [
        {"return-date": "2024-03-20T08:00:00+00:00", "order-id": "A1", "sku": "SKU-1",
         "quantity": "1", "reason": "APPAREL_TOO_SMALL"},
        {"return-date": "25-Mar-2024", "order-id": "A1", "sku": "SKU-1", "quantity": "1",
         "reason": "NEW_CODE"},
        {"return-date": "2024-02-01T08:00:00+00:00", "order-id": "A1", "sku": "SKU-1",
         "quantity": "1", "reason": "DEFECTIVE"},
        {"return-date": "2024-03-20T08:00:00+00:00", "order-id": "ZZ", "sku": "SKU-1",
         "quantity": "1", "reason": "DEFECTIVE"},
        {"return-date": "2024-03-20T08:00:00+00:00", "order-id": "G1", "sku": "SKU-1",
         "quantity": "1", "reason": "DEFECTIVE"},
    ]  # fmt: skip
    result = _az(_az_row("A1"), _az_row("G1", currency="GBP"), _az_row("A2"), fba=fba)
    cases = result.tables["after_sales_cases"]
    fba_cases = cases[cases["source"] == "fba_returns"].set_index("case_id")
    assert fba_cases["case_type"].to_dict() == {"fba:A1:1": "return", "fba:A1:2": "other"}
    assert fba_cases.loc["fba:A1:1", "opened_ts"] == pd.Timestamp("2024-03-20 08:00", tz="UTC")
    assert fba_cases.loc["fba:A1:2", "opened_ts"] == pd.Timestamp("2024-03-25", tz="UTC")
    assert result.figures["reason codes unknown (-> other)"] == 1
    refused = result.refused["amazon_fba_returns"]["reason"].tolist()
    assert refused == [
        "return_date_before_purchase_date",
        "order_not_in_orders_report",
        "order_refused_see_orders_reasons",
    ]
    assert len(fba_cases) + len(refused) == len(fba)


def test_amazon_mfn_returns_a_to_z_and_safet_claims_are_cases() -> None:
    mfn = [
        {"Order ID": "A1", "Return request date": "20-Mar-2024", "Return Reason": "CR-DEFECTIVE",
         "Merchant SKU": "SKU-1", "Amazon RMA ID": "R1", "Refunded Amount": "40.00",
         "A-to-Z Claim": "Y", "SafeT claim id": ""},
        {"Order ID": "A2", "Return request date": "21-Mar-2024", "Return Reason": "CR-WRONG_ITEM",
         "Merchant SKU": "SKU-1", "Amazon RMA ID": "R2", "Refunded Amount": "",
         "A-to-Z Claim": "N", "SafeT claim id": "ST-1"},
    ]  # fmt: skip
    result = _az(_az_row("A1"), _az_row("A2"), mfn=mfn)
    cases = result.tables["after_sales_cases"].set_index("case_id")
    assert cases["case_type"].to_dict() == {
        "mfn:A1:R1": "not_as_described",
        "mfn:A2:R2": "wrong_item",
        "atoz:A1": "not_as_described",
        "safet:ST-1": "other",
    }
    assert cases.loc["mfn:A1:R1", "amount"] == 40.0
    assert cases.loc["atoz:A1", "source"] == "a_to_z_claim"
    coerce_tables(result.tables)


def test_amazon_without_buyer_column_each_order_is_its_own_customer() -> None:
    rows = [_az_row("A1"), _az_row("A2")]
    for r in rows:
        r["buyer-email"] = None
    result = _az(*rows)
    customers = result.tables["customers"]["customer_id"]
    assert len(customers) == 2
    assert customers.str.startswith("order_").all()
    assert result.figures["customer key from"] == "order id (no buyer column)"


# ---------------------------------------------------------------------------------------------
# Tracking: tiny frames


def _dir_tables(case_types: tuple[str, ...] = ()) -> tuple[pd.DataFrame, ...]:
    orders = pd.DataFrame(
        {
            "order_id": [f"#{i}" for i in range(1, 8)],
            "order_ts": pd.Timestamp("2024-03-01", tz="UTC"),
        }
    )
    shipments = pd.DataFrame(
        {
            "order_id": ["#1"],
            "shipped_ts": [pd.Timestamp("2024-03-02 12:00", tz="UTC")],
            "delivered_ts": pd.Series([pd.NaT], dtype="datetime64[ns, UTC]"),
        }
    )
    cases = pd.DataFrame(
        {
            "case_id": [f"old{i}" for i in range(len(case_types))],
            "order_id": ["#3"] * len(case_types),
            "opened_ts": pd.Timestamp("2024-03-20", tz="UTC"),
            "case_type": list(case_types),
            "sku_id": None,
            "amount": np.nan,
        }
    )
    return orders, shipments, cases


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["order_id", "tag", "subtag", "checkpoint_time"])
    for col in ("message", "shipped_at", "delivered_at", "updated_at"):
        df[col] = pd.Series(np.nan, index=df.index, dtype="str")
    return df.assign(source_file="t.csv", source_row=np.arange(len(df)))


EVENTS = [
    ("#1", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
    ("#1", "Delivered", "Delivered_001", "2024-03-05T08:00:00Z"),
    ("#2", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
    ("#2", "Exception", "Exception_013", "2024-03-09T08:00:00Z"),  # lost
    ("#3", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
    ("#3", "Exception", "Exception_006", "2024-03-04T08:00:00Z"),  # held for payment
    ("#3", "Exception", "Exception_003", "2024-03-06T08:00:00Z"),  # refused
    ("#4", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
    ("#4", "Exception", "Exception_003", "2024-03-06T08:00:00Z"),  # refused, no duties
    ("#5", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
    ("#5", "Exception", "Exception_012", "2024-03-03T08:00:00Z"),  # damaged
    ("#6", "InfoReceived", "InfoReceived_001", "2024-03-02T08:00:00Z"),
    ("#6", "Expired", "Expired_001", "2024-04-02T08:00:00Z"),
    ("#9", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),  # not in the directory
    ("#7", "Beamed", "", "2024-03-02T08:00:00Z"),
    ("#7", "InTransit", "", "2024-02-01T08:00:00Z"),  # before the order
]


def test_tracking_fills_shipments() -> None:
    orders, shipments, cases = _dir_tables()
    result = tracking_updates(_events(EVENTS), orders, shipments, cases)
    ships = result.tables["shipments"].set_index("order_id")
    # the recorded ship time is kept when earlier; the carrier's first scan otherwise
    assert ships.loc["#1", "shipped_ts"] == pd.Timestamp("2024-03-02 08:00", tz="UTC")
    assert ships.loc["#1", "delivered_ts"] == pd.Timestamp("2024-03-05 08:00", tz="UTC")
    assert pd.isna(ships.loc["#2", "delivered_ts"])
    assert "#6" not in ships.index  # only InfoReceived and Expired: never scanned by a carrier
    assert sorted(result.refused["tracking"]["reason"]) == [
        "event_before_order",
        "order_not_in_directory",
        "unknown_tag",
    ]


def test_tracking_cases_mapping() -> None:
    orders, shipments, cases = _dir_tables()
    result = tracking_updates(_events(EVENTS), orders, shipments, cases)
    got = result.tables["after_sales_cases"].set_index("order_id")["case_type"].to_dict()
    assert got == {
        "#2": "not_received",  # lost
        "#3": "duty_dispute",  # refused after being held for duties
        "#4": "not_received",  # refused, never held for duties
        "#5": "damaged",
        "#6": "not_received",  # expired
    }
    opened = result.tables["after_sales_cases"].set_index("order_id")["opened_ts"]
    assert opened["#3"] == pd.Timestamp("2024-03-06 08:00", tz="UTC")  # the refusal's time


def test_tracking_duty_hold_can_be_read_from_the_message() -> None:
    orders, shipments, cases = _dir_tables()
    ev = _events([("#4", "Exception", "Exception_004", "2024-03-04T08:00:00Z"),
                  ("#4", "Exception", "Exception_003", "2024-03-06T08:00:00Z")])  # fmt: skip
    ev["message"] = ["Held at customs: import duties unpaid", "Refused by recipient"]
    result = tracking_updates(ev, orders, shipments, cases)
    assert result.tables["after_sales_cases"]["case_type"].tolist() == ["duty_dispute"]


def test_tracking_never_duplicates_a_case_the_order_has() -> None:
    orders, shipments, cases = _dir_tables(("duty_dispute",))
    result = tracking_updates(_events(EVENTS), orders, shipments, cases)
    out = result.tables["after_sales_cases"]
    assert (out["order_id"] == "#3").sum() == 1
    assert "old0" in set(out["case_id"])
    assert result.figures["cases the orders already had"] == 1
    again = tracking_updates(_events(EVENTS), orders, result.tables["shipments"], out)
    pd.testing.assert_frame_equal(again.tables["after_sales_cases"], out)  # idempotent


def test_tracking_per_shipment_rows(tmp_path: Path) -> None:
    path = tmp_path / "shipments.csv"
    pd.DataFrame(
        {
            "Order number": ["#1", "#2"],
            "Status": ["Delivered", "Exception"],
            "Sub-status": ["Delivered_001", "Exception_012"],
            "Shipped at": ["2024-03-02T10:00:00Z", "2024-03-02T10:00:00Z"],
            "Delivered at": ["2024-03-06T10:00:00Z", ""],
            "Last updated at": ["2024-03-06T10:00:00Z", "2024-03-04T10:00:00Z"],
            "Email": ["x@example.com", "y@example.com"],
        }
    ).to_csv(path, index=False)
    orders, shipments, cases = _dir_tables()
    result = tracking_updates(read_tracking(path), orders, shipments, cases)
    ships = result.tables["shipments"].set_index("order_id")
    assert ships.loc["#1", "delivered_ts"] == pd.Timestamp("2024-03-06 10:00", tz="UTC")
    assert ships.loc["#2", "shipped_ts"] == pd.Timestamp("2024-03-02 10:00", tz="UTC")
    new = result.tables["after_sales_cases"].set_index("order_id")
    assert new.loc["#2", "case_type"] == "damaged"
    assert new.loc["#2", "opened_ts"] == pd.Timestamp("2024-03-04 10:00", tz="UTC")


# ---------------------------------------------------------------------------------------------
# The committed fixtures


def test_fixtures_are_what_the_generator_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.shopify(tmp_path)
    gen.amazon(tmp_path)
    gen.tracking(tmp_path)
    for f in sorted(tmp_path.rglob("*.*")):
        committed = FIXTURES / f.relative_to(tmp_path)
        assert f.read_bytes() == committed.read_bytes(), f"{committed} differs from the generator"


def test_fixtures_have_the_awkward_parts() -> None:
    first = SHOPIFY_FILES[0].read_bytes()
    assert first.startswith(b"\xef\xbb\xbf")  # a UTF-8 BOM
    assert b'"Scarf, Wool - Grey"' in first  # a quoted comma
    raw = read_shopify(list(SHOPIFY_FILES))
    assert raw.columns[0] == "Name"  # the BOM is not part of the column name
    assert raw["Email"].isna().sum() > 50  # order fields on the first row only
    names = raw.groupby("file_index")["Name"].apply(set)
    assert names[0] & names[1]  # overlapping exports
    assert {"partially_refunded", "refunded"} <= set(raw["Financial Status"].dropna())
    assert raw["Cancelled at"].notna().any()
    assert raw["Lineitem sku"].isna().any()
    assert (raw["Currency"].dropna() != "EUR").any()


def test_shopify_fixture_nothing_lost(imported: dict[str, Path]) -> None:
    n_in = len(read_shopify(list(SHOPIFY_FILES)))
    tables = load_tables(imported["shop"])
    refused = pd.read_parquet(imported["shop"] / "refused" / "shopify_orders_refused.parquet")
    assert len(tables.order_lines) + len(refused) == n_in
    assert refused["reason"].notna().all()
    counts = refused["reason"].value_counts()
    assert counts["order_in_a_later_file"] > 0
    assert counts["currency_not_reporting_currency"] > 0
    orders = tables.orders.set_index("order_id")
    assert orders.loc["#1100", "financial_status"] == "partially_refunded"  # the later file
    types = set(tables.after_sales_cases["case_type"])
    assert {"refund", "return", "not_received", "duty_dispute", "damaged"} <= types


def test_amazon_fixture_nothing_lost(imported: dict[str, Path]) -> None:
    orders_raw, fba, mfn = read_amazon(
        [AMAZON / "all_orders.txt"], AMAZON / "fba_returns.txt", AMAZON / "mfn_returns.txt"
    )
    tables = load_tables(imported["amz"])
    ref = {
        stem: pd.read_parquet(imported["amz"] / "refused" / f"amazon_{stem}_refused.parquet")
        for stem in ("orders", "fba_returns", "mfn_returns")
    }
    cancelled_items = (orders_raw["quantity"] == "0").sum()
    assert cancelled_items > 0
    assert len(tables.order_lines) + cancelled_items + len(ref["orders"]) == len(orders_raw)
    src = tables.after_sales_cases["source"]
    assert (src == "fba_returns").sum() + len(ref["fba_returns"]) == len(fba)
    assert (src == "mfn_returns").sum() + len(ref["mfn_returns"]) == len(mfn)
    assert {"a_to_z_claim", "safet_claim", "all_orders"} <= set(src)


def test_cli_imports_print_the_summary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RETURNRISK_SALT", SALT)
    runner = CliRunner()
    shop = tmp_path / "shop"
    args = ["import", "shopify", *map(str, SHOPIFY_FILES), "--out", str(shop), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for word in ("orders", "customers", "skus", "case rate", "order_in_a_later_file"):
        assert word in res.output
    res = runner.invoke(app, ["import", "tracking", str(TRACKING), "--into", str(shop), "-q"])
    assert res.exit_code == 0, res.output
    assert "cases added: duty_dispute" in res.output
    assert runner.invoke(app, ["validate", str(shop), "--quiet"]).exit_code == 0
    amz = tmp_path / "amz"
    orders, fba = str(AMAZON / "all_orders.txt"), str(AMAZON / "fba_returns.txt")
    args = ["import", "amazon", "--orders", orders, "--fba-returns", fba, "--out", str(amz), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "reason codes unknown (-> other)" in res.output
    assert runner.invoke(app, ["validate", str(amz), "--quiet"]).exit_code == 0
    bad = runner.invoke(app, ["import", "tracking", str(TRACKING), "--into", str(tmp_path / "no")])
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output


def test_shop_country_must_be_a_code(tmp_path: Path) -> None:
    cfg = ShopifyConfig(files=SHOPIFY_FILES, out=tmp_path / "o", salt=SALT, shop_country="Germany")
    with pytest.raises(ImporterError, match="--shop-country 'Germany': use an ISO alpha-2"):
        import_shopify(cfg)
    cfg = ShopifyConfig(files=SHOPIFY_FILES[:1], out=tmp_path / "o", salt=SALT, shop_country="de")
    countries = import_shopify(cfg).tables["countries"].set_index("country_code")
    assert bool(countries.loc["DE", "is_domestic"])
    assert pd.isna(countries.loc["DE", "duty_de_minimis"])


def test_wrong_delimiter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("Name;Email;Subtotal\n#1;a@example.com;10\n", encoding="utf-8")
    with pytest.raises(ImporterError, match="one column; its header holds ';'"):
        read_shopify([path])


def _new_orders(tables, folder: Path) -> Path:
    """Five of the directory's orders again, placed after the export: orders to screen."""
    new = tables.orders.tail(5).copy()
    ids = dict(zip(new["order_id"], "new" + new["order_id"], strict=True))
    lines = tables.order_lines[tables.order_lines["order_id"].isin(ids)].copy()
    new["order_id"], lines["order_id"] = new["order_id"].map(ids), lines["order_id"].map(ids)
    new["order_ts"] = tables.as_of() + pd.Timedelta(hours=1)
    folder.mkdir()
    new.to_parquet(folder / "orders.parquet", index=False)
    lines.to_parquet(folder / "order_lines.parquet", index=False)
    return folder


@pytest.mark.slow
def test_fixtures_validate_build_features_train_and_score(
    imported: dict[str, Path], tmp_path: Path, tracking_uri: str
) -> None:
    from returnrisk.features import build_features
    from returnrisk.progress import StepLog
    from returnrisk.train.pipeline import TrainConfig, train

    runner = CliRunner()
    for name, folder in imported.items():
        assert runner.invoke(app, ["validate", str(folder), "--quiet"]).exit_code == 0
        tables = load_tables(folder)
        frame = build_features(tables)
        assert len(frame) == len(tables.orders)
        assert frame["mature"].sum() >= 100
        cfg = TrainConfig(
            data=folder,
            n_estimators=20,
            early_stopping_rounds=5,
            baselines=False,
            figures=False,
            shap_sample=50,
            num_threads=1,
            tracking_uri=tracking_uri,
        )
        result = train(cfg, StepLog(True))
        assert 0.0 <= result.metrics["auc"] <= 1.0, name
        new = _new_orders(tables, tmp_path / f"new_{name}")
        out = tmp_path / f"scored_{name}.csv"
        model = f"models:/return-risk/{result.version}"
        args = ["score", str(folder), "--orders", str(new), "--out", str(out), "--model", model]
        res = runner.invoke(app, [*args, "--quiet"])
        assert res.exit_code == 0, res.output
        scored = pd.read_csv(out)
        assert len(scored) == 5, name
        assert (scored["status"] == "scored").all(), name


# ---------------------------------------------------------------------------------------------
# times outside the contract's 2000..now: refused rows of the export, never "an importer bug"

NOW = pd.Timestamp("2024-03-10 00:00", tz="UTC")


def test_shopify_times_outside_2000_to_now_are_refused_and_a_refund_is_never_in_the_future() -> (
    None
):
    """A future or pre-2000 date in the export refuses its order (it broke the whole import
    as an importer bug before); a refund's assumed opening time (fulfilment + lag) is capped at
    the import's clock, so a recent refund imports (it was in the future before)."""
    from returnrisk.contract import coerce_tables

    result = _shopify(
        _order("#1"),
        _order("#2", **{"Created at": "2024-03-12 10:00:00 +0000", "Fulfilled at": None}),
        _order("#3", **{"Created at": "1999-12-31 10:00:00 +0000", "Fulfilled at": None}),
        _order("#4", **{"Fulfilled at": "2024-03-11 10:00:00 +0000"}),
        _order("#5", **{"Financial Status": "refunded", "Refunded Amount": "105.00"}),
        refund_lag_days=14,
        now=NOW,
    )
    ref = result.refused["shopify_orders"].set_index("Name")["reason"].to_dict()
    assert ref == {
        "#2": "created_at_outside_2000_to_now",
        "#3": "created_at_outside_2000_to_now",
        "#4": "fulfilled_at_outside_2000_to_now",
    }
    cases = result.tables["after_sales_cases"].set_index("order_id")
    assert cases.loc["#5", "opened_ts"] == NOW  # fulfilled 03-02 + 14 days, capped
    coerce_tables(result.tables, now=NOW)  # the contract accepts what was kept


def test_amazon_dates_outside_2000_to_now_are_refused_rows() -> None:
    fba = [
        {"order-id": "A1", "sku": "SKU-1", "return-date": "2024-03-20T00:00:00+00:00",
         "reason": "DEFECTIVE"},
        {"order-id": "A1", "sku": "SKU-1", "return-date": "2024-03-05T00:00:00+00:00",
         "reason": "DEFECTIVE"},
    ]  # fmt: skip
    result = _az(
        _az_row("A1"),
        _az_row("A2", **{"purchase-date": "2024-04-01T10:00:00+00:00"}),
        _az_row("A3", **{"last-updated-date": "2031-01-01T10:00:00+00:00"}),
        fba=fba,
        now=NOW,
    )
    ref = result.refused["amazon_orders"].set_index("amazon-order-id")["reason"].to_dict()
    assert ref == {
        "A2": "purchase_date_outside_2000_to_now",
        "A3": "last_updated_date_outside_2000_to_now",
    }
    assert result.refused["amazon_fba_returns"]["reason"].tolist() == [
        "return_date_outside_2000_to_now"
    ]
    assert result.tables["after_sales_cases"]["order_id"].tolist() == ["A1"]


def test_tracking_events_outside_2000_to_now_are_refused_rows() -> None:
    orders, shipments, cases = _dir_tables()
    events = _events(
        [
            ("#1", "InTransit", "InTransit_001", "2024-03-02T08:00:00Z"),
            ("#2", "Exception", "Exception_013", "2024-03-19T08:00:00Z"),  # after the clock
        ]
    )
    result = tracking_updates(events, orders, shipments, cases, now=NOW)
    refused = result.refused["tracking"]
    assert refused["reason"].tolist() == ["event_time_outside_2000_to_now"]
    assert "#2" not in set(result.tables["after_sales_cases"]["order_id"])


def test_cli_import_of_an_export_with_a_future_date_refuses_that_order(
    tmp_path: Path, monkeypatch
) -> None:
    """Before, one future 'Created at' failed the whole import as 'importer bug'."""
    monkeypatch.setenv("RETURNRISK_SALT", SALT)
    raw = pd.read_csv(SHOPIFY_FILES[1], dtype="str", keep_default_na=False)
    first = raw.index[raw["Created at"] != ""][0]
    raw.loc[first, "Created at"] = "2200-01-01 10:00:00 +0000"
    export = tmp_path / "orders_export.csv"
    raw.to_csv(export, index=False)
    shop = tmp_path / "shop"
    res = CliRunner().invoke(app, ["import", "shopify", str(export), "--out", str(shop), "-q"])
    assert res.exit_code == 0, res.output
    assert "created_at_outside_2000_to_now" in res.output
    refused = pd.read_parquet(shop / "refused" / "shopify_orders_refused.parquet")
    assert set(refused.loc[refused["Name"] == raw.loc[first, "Name"], "reason"]) == {
        "created_at_outside_2000_to_now"
    }


def test_the_reference_duty_rules_are_a_valid_contract_table() -> None:
    """Every rule's country is in the reference countries, no two overlap, each names a source."""
    from returnrisk.contract import coerce_tables
    from returnrisk.importers.common import build_countries, build_duty_rules, reference_countries
    from returnrisk.reference import load_duty_rules

    rules = load_duty_rules()
    assert rules["source"].notna().all()
    assert rules["rule_id"].is_unique
    frames = tiny_frames_for_rules()
    countries = build_countries(rules["country_code"], reference_countries(), currency="EUR")
    frames["countries"] = countries
    frames["duty_rules"] = build_duty_rules(countries, rules, currency="EUR")
    assert len(frames["duty_rules"]) == len(rules)  # none owes no duty: all kept
    coerce_tables(frames)  # FK, ranges, no overlaps


def tiny_frames_for_rules() -> dict[str, pd.DataFrame]:
    from returnrisk.contract import empty_table

    names = ("orders", "order_lines", "skus", "carriers", "customers", "after_sales_cases")
    return {name: empty_table(name) for name in names}


def test_shopify_import_carries_the_duty_rules_and_the_features_use_them() -> None:
    """A TR order of 2024-03 sees the EUR 150 limit in force then (the reference countries
    table says 30, the value after August 2024); a US order of 2025-06 sees no de minimis (suspended
    2025-05-02) although the countries table says USD 800. In the shop's currency (USD)."""
    from returnrisk.contract import coerce_tables
    from returnrisk.features import build_features
    from returnrisk.importers.common import PER_EUR, reference_countries
    from returnrisk.reference import load_duty_rules

    result = _shopify(
        _order("#1", **{"Shipping Country": "TR", "Currency": "USD"}),
        _order(
            "#2",
            **{
                "Shipping Country": "US",
                "Currency": "USD",
                "Created at": "2025-06-01 10:00:00 +0000",
                "Fulfilled at": "2025-06-02 10:00:00 +0000",
            },
        ),
        reference=reference_countries(),
        duty_rules=load_duty_rules(),
        now=pd.Timestamp("2025-07-01", tz="UTC"),
    )
    rules = result.tables["duty_rules"]
    assert set(rules["country_code"]) == {"TR", "US"}
    before = rules.set_index("rule_id").loc["TR-before-2024-08", "duty_de_minimis"]
    assert before == round(150.0 * PER_EUR["USD"], 2)
    feats = build_features(
        coerce_tables(result.tables, now=pd.Timestamp("2025-07-01", tz="UTC"))
    ).set_index("order_id")
    assert feats.loc["#1", "duty_de_minimis"] == before
    countries = result.tables["countries"].set_index("country_code")
    assert countries.loc["US", "duty_de_minimis"] > 0
    assert feats.loc["#2", "duty_de_minimis"] == 0.0
