"""returnrisk.features: point-in-time correctness, exact values, purity, cold start, speed shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from returnrisk.contract import CASE_TYPES, coerce_tables
from returnrisk.features import (
    CONTEXT_COLUMNS,
    FEATURE_SPECS,
    HEAD_COLUMNS,
    FeatureConfig,
    build_features,
)
from returnrisk.features.kernels import combine_codes, prior_aggregate, prior_aggregate_many
from returnrisk.features.specs import FAMILIES, describe_features
from returnrisk.reference import DUTY_RULE_COLUMNS

T0 = pd.Timestamp("2024-01-01", tz="UTC")
K = 20.0
CONTEXT = ["order_id", "order_ts", "customer_id", "destination_country", "carrier_id"]


# ---------------------------------------------------------------------------------------------
# a small random world (independent of returnrisk.synth, so failures point here)


def random_frames(n_orders: int = 600, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    countries = pd.DataFrame(
        {
            "country_code": ["DE", "FR", "US", "GB", "CH"],
            "region": ["EU", "EU", "NA", "UK", "EU"],
            "languages": ["de", "fr", "en", "en", None],
            "duty_de_minimis": [150.0, 150.0, 800.0, None, 0.0],
            "default_incoterm": ["DDP", "DDU", "DDU", None, "DDU"],
        }
    )
    carriers = pd.DataFrame(
        {
            "carrier_id": ["c1", "c2", "c3"],
            "carrier_name": ["PostA", "FastB", "CheapC"],
            "service_level": ["standard", "express", "economy"],
            "tracked": [True, True, None],
        }
    )
    n_sku = max(40, n_orders // 20)
    skus = pd.DataFrame(
        {
            "sku_id": [f"s{i}" for i in range(n_sku)],
            "product_id": [f"p{i // 3}" if i % 7 else None for i in range(n_sku)],
            "category": rng.choice(["apparel", "electronics", "home"], n_sku),
            "brand": rng.choice(["b1", "b2", None], n_sku),
            "supplier_id": None,
            "list_price": rng.uniform(5, 200, n_sku).round(2),
            "weight_g": rng.uniform(50, 3000, n_sku).round(0),
            "size": rng.choice(["S", "M", "L", None], n_sku),
            "color": None,
            "n_images": rng.integers(0, 8, n_sku),
            "has_size_chart": rng.choice([True, False], n_sku),
            "listing_languages": rng.choice(["en", "en,de", "fr", None], n_sku),
        }
    )
    n_cust = max(n_orders // 4, 5)
    customers = pd.DataFrame(
        {
            "customer_id": [f"u{i}" for i in range(n_cust)],
            "first_seen_ts": (T0 + pd.to_timedelta(rng.integers(0, 500, n_cust), unit="h")).where(
                rng.random(n_cust) < 0.67
            ),
            "country_code": rng.choice(["DE", "FR", "US", None], n_cust),
            "segment": rng.choice(["b2c", "b2b", None], n_cust),
        }
    )
    # hours on a coarse grid so that ties at the same timestamp are frequent
    hours = np.sort(rng.integers(0, 24 * 300, n_orders)).astype(float)
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i:05d}" for i in range(n_orders)],
            "customer_id": rng.choice(customers["customer_id"], n_orders),
            "order_ts": T0 + pd.to_timedelta(hours, unit="h"),
            "channel": rng.choice(["amazon", "ebay", "own_site"], n_orders),
            "destination_country": rng.choice(countries["country_code"], n_orders),
            "carrier_id": rng.choice(["c1", "c2", "c3", None], n_orders),
            "incoterm": rng.choice(["DDP", "DDU", None], n_orders),
            "order_value": rng.uniform(0, 400, n_orders).round(2),
            "shipping_fee": rng.choice([0.0, 4.9, None], n_orders),
            "discount_value": rng.choice([0.0, 5.0, None], n_orders),
            "payment_method": rng.choice(["card", "paypal", None], n_orders),
            "promised_delivery_days": pd.array(
                rng.choice([3, 7, 14, None], n_orders), dtype="Int64"
            ),
        }
    )
    n_lines = rng.integers(1, 4, n_orders)
    line_order = np.repeat(orders["order_id"].to_numpy(), n_lines)
    order_lines = pd.DataFrame(
        {
            "order_id": line_order,
            "sku_id": rng.choice(skus["sku_id"], len(line_order)),
            "quantity": rng.integers(1, 4, len(line_order)),
            "unit_price": rng.uniform(1, 150, len(line_order)).round(2),
        }
    )
    has_case = rng.random(n_orders) < 0.35
    case_orders = orders.loc[has_case]
    # some orders get two cases; delays in whole hours (0 = at the order's own time)
    co = pd.concat([case_orders, case_orders.sample(frac=0.3, random_state=seed)])
    delay = rng.integers(0, 24 * 60, len(co)).astype(float)
    delay[rng.random(len(co)) < 0.1] = 0.0
    sku_of_order = order_lines.drop_duplicates("order_id").set_index("order_id")["sku_id"]
    case_sku = np.where(
        rng.random(len(co)) < 0.5, sku_of_order.reindex(co["order_id"]).to_numpy(), None
    )
    cases = pd.DataFrame(
        {
            "case_id": [f"k{i}" for i in range(len(co))],
            "order_id": co["order_id"].to_numpy(),
            "opened_ts": co["order_ts"].reset_index(drop=True) + pd.to_timedelta(delay, unit="h"),
            "case_type": rng.choice(list(CASE_TYPES), len(co)),
            "sku_id": case_sku,
            "amount": rng.uniform(0, 50, len(co)).round(2),
        }
    )
    shipped = orders.sample(frac=0.8, random_state=seed + 1)
    ship_delay = rng.integers(0, 72, len(shipped))
    transit = rng.integers(24, 24 * 20, len(shipped)).astype(float)
    shipped_ts = shipped["order_ts"].reset_index(drop=True) + pd.to_timedelta(ship_delay, unit="h")
    delivered = shipped_ts + pd.to_timedelta(transit, unit="h")
    delivered[rng.random(len(shipped)) < 0.15] = pd.NaT
    shipments = pd.DataFrame(
        {
            "order_id": shipped["order_id"].to_numpy(),
            "shipped_ts": shipped_ts,
            "delivered_ts": delivered,
        }
    )
    return {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases,
        "shipments": shipments,
    }


@pytest.fixture(scope="module")
def world():
    return coerce_tables(random_frames(600, seed=3))


def test_smoke(world):
    f = build_features(world)
    assert len(f) == len(world.orders)
    assert list(f.columns[:7]) == CONTEXT + ["mature", "label"]
    assert list(f.columns) == [*HEAD_COLUMNS, *FEATURE_SPECS, *CONTEXT_COLUMNS]
    for name, spec in FEATURE_SPECS.items():
        assert spec.family in FAMILIES
        if spec.kind == "numeric":
            assert f[name].dtype == "float64", name
        else:
            assert f[name].dtype == "str", name


def _feature_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("mature", "label", "first_case_ts")]


# ---------------------------------------------------------------------------------------------
# the as-of primitive against a brute-force double loop


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prior_aggregate_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_e, n_q = 300, 200
    ek = rng.integers(0, 7, n_e)
    et = rng.integers(0, 30, n_e).astype(np.int64)
    qk = rng.integers(0, 9, n_q)  # keys 7, 8 have no events (cold start)
    qt = rng.integers(0, 30, n_q).astype(np.int64)
    v = rng.normal(size=n_e)
    agg = prior_aggregate(ek, et, qk, qt, {"v": v}, with_times=True)
    for i in range(n_q):  # brute force reference (test only)
        m = (ek == qk[i]) & (et < qt[i])
        assert agg.count[i] == m.sum()
        assert agg.sums["v"][i] == pytest.approx(v[m].sum(), abs=1e-9)
        if m.any():
            assert agg.first_ts[i] == et[m].min()
            assert agg.last_ts[i] == et[m].max()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("times", ["seconds", "nanoseconds over centuries"])
def test_one_query_at_a_time_equals_all_at_once(seed, times):
    """query_events has a scalar shortcut for a single query (``query_one``, the online
    store's): the same results, to the bit and dtype, in the index's unit mode and in its rank
    mode (times too spread to pack); no query gives empty arrays."""
    from returnrisk.features.kernels import index_events, query_events, query_one

    rng = np.random.default_rng(seed)
    ek = rng.integers(0, 7, 300)
    if times == "seconds":
        et = rng.integers(0, 30, 300).astype(np.int64) * 10**9
        qt = rng.integers(-5, 40, 100).astype(np.int64) * 10**9
    else:
        et = rng.integers(0, 2**61, 300).astype(np.int64)
        qt = np.concatenate([et[:50], rng.integers(-(2**60), 2**62, 50)]).astype(np.int64)
    qk = rng.integers(0, 9, 100)
    index = index_events(ek, et, {"v": rng.normal(size=300), "n": rng.integers(0, 3, 300)})
    assert (index.unit == 0) == (times != "seconds")
    every = query_events(index, qk, qt, with_times=True)
    for i in range(len(qk)):
        for one in (
            query_events(index, qk[i : i + 1], qt[i : i + 1], with_times=True),
            query_one(index, int(qk[i]), int(qt[i]), with_times=True),
        ):
            assert one.count[0] == every.count[i]
            assert one.count.dtype == every.count.dtype
            assert one.first_ts[0] == every.first_ts[i]
            assert one.last_ts[0] == every.last_ts[i]
            assert all(one.sums[k][0] == every.sums[k][i] for k in every.sums)
            assert all(one.sums[k].dtype == every.sums[k].dtype for k in every.sums)
    none = query_events(index, qk[:0], qt[:0], with_times=True)
    assert len(none.count) == len(none.first_ts) == len(none.sums["v"]) == 0


def test_combine_codes_distinguishes_tuples():
    a = np.array([0, 0, 1, 1, 0])
    b = np.array([0, 1, 0, 1, 0])
    c = combine_codes(a, b)
    assert len(set(c.tolist())) == 4
    assert c[0] == c[4]


# ---------------------------------------------------------------------------------------------
# a hand-built tiny directory with exact expected values


def _d(days: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days)


def tiny_frames() -> dict[str, pd.DataFrame]:
    countries = pd.DataFrame(
        {
            "country_code": ["DE", "US"],
            "region": ["EU", "NA"],
            "languages": ["de", "en"],
            "duty_de_minimis": [150.0, 800.0],
            "default_incoterm": ["DDP", "DDU"],
        }
    )
    carriers = pd.DataFrame(
        {
            "carrier_id": ["c1", "c2"],
            "carrier_name": ["PostA", "CheapB"],
            "service_level": ["standard", "economy"],
            "tracked": [True, False],
        }
    )
    skus = pd.DataFrame(
        {
            "sku_id": ["A", "B", "C"],
            "product_id": ["P", "P", None],
            "category": ["apparel", "apparel", "electronics"],
            "brand": ["br", "br", None],
            "supplier_id": None,
            "list_price": [100.0, 100.0, 40.0],
            "weight_g": [200.0, 250.0, 1000.0],
            "size": ["M", "L", None],
            "color": None,
            "n_images": [3, 1, 5],
            "has_size_chart": [True, False, None],
            "listing_languages": ["en", "de", "en,de"],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["u1", "u2"],
            "first_seen_ts": [_d(-10), None],
            "country_code": ["DE", None],
            "segment": ["b2c", None],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4", "o5"],
            "customer_id": ["u1", "u1", "u2", "u1", "u2"],
            "order_ts": [_d(0), _d(1), _d(1), _d(2), _d(5)],  # o2 and o3 tie
            "channel": ["amazon", "ebay", "amazon", "own_site", "ebay"],
            "destination_country": ["DE", "DE", "DE", "US", "DE"],
            "carrier_id": ["c1", "c1", "c1", "c2", "c1"],
            "incoterm": [None, None, None, "DDU", None],
            "order_value": [100.0, 100.0, 60.0, 900.0, 80.0],
            "shipping_fee": [4.0, None, 0.0, 10.0, 0.0],
            "discount_value": [0.0, 25.0, None, 0.0, 0.0],
            "payment_method": ["card", "card", None, "paypal", "card"],
            "promised_delivery_days": pd.array([2, 2, 5, 10, 3], dtype="Int64"),
        }
    )
    order_lines = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o2", "o3", "o4", "o5"],
            "sku_id": ["A", "A", "B", "C", "A", "A"],
            "quantity": [1, 1, 1, 2, 2, 1],
            "unit_price": [100.0, 50.0, 50.0, 30.0, 450.0, 80.0],
        }
    )
    cases = pd.DataFrame(
        {
            "case_id": ["k1", "k2", "k3"],
            "order_id": ["o1", "o2", "o1"],
            # k1 opens exactly at o2's / o3's order time: not known to them
            "opened_ts": [_d(1), _d(3), _d(4)],
            "case_type": ["not_received", "damaged", "return"],
            "sku_id": [None, "B", "A"],
            "amount": [10.0, 5.0, 100.0],
        }
    )
    shipments = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "shipped_ts": [_d(0.5), _d(1.5)],
            "delivered_ts": [_d(1.5), _d(5)],  # o2's delivery at exactly o5's time
        }
    )
    return {
        "orders": orders,
        "order_lines": order_lines,
        "skus": skus,
        "countries": countries,
        "carriers": carriers,
        "customers": customers,
        "after_sales_cases": cases,
        "shipments": shipments,
    }


@pytest.fixture(scope="module")
def tiny():
    f = build_features(coerce_tables(tiny_frames()))
    assert f["order_id"].tolist() == ["o1", "o2", "o3", "o4", "o5"]
    return f.set_index("order_id")


def _v(frame: pd.DataFrame, order: str, col: str) -> float:
    return frame.loc[order, col]


def test_tiny_customer_history(tiny):
    f = tiny
    assert f["customer_prior_orders"].tolist() == [0, 1, 0, 2, 1]
    # k1 (opened at d1) is not known to o2/o3 (order_ts == d1), known to o4 (d2)
    assert f["customer_prior_cases"].tolist() == [0, 0, 0, 1, 0]
    assert f["customer_prior_not_received"].tolist() == [0, 0, 0, 1, 0]
    assert f["customer_prior_returns"].tolist() == [0, 0, 0, 0, 0]  # k3 opens at d4 > d2
    # global prior at d2: 1 of 3 earlier orders has a known case; shrunk to 0.1 with k=20
    g = (1 + K * 0.1) / (3 + K)
    assert _v(f, "o4", "customer_case_rate") == pytest.approx((1 + K * g) / (2 + K))
    # cold start: the prior itself (no orders, no cases before d0)
    assert _v(f, "o1", "customer_case_rate") == pytest.approx(0.1)
    assert _v(f, "o4", "customer_days_since_last_case") == pytest.approx(1.0)
    assert np.isnan(_v(f, "o2", "customer_days_since_last_case"))
    assert _v(f, "o1", "customer_tenure_days") == pytest.approx(10.0)  # first_seen d-10
    assert _v(f, "o3", "customer_tenure_days") == 0.0  # unknown first_seen, no orders
    assert _v(f, "o5", "customer_tenure_days") == pytest.approx(4.0)  # first order o3 at d1
    assert _v(f, "o4", "customer_days_since_last_order") == pytest.approx(1.0)
    assert np.isnan(_v(f, "o1", "customer_days_since_last_order"))
    assert _v(f, "o1", "ships_to_customer_country") == 1.0
    assert _v(f, "o4", "ships_to_customer_country") == 0.0
    assert np.isnan(_v(f, "o3", "ships_to_customer_country"))


def test_tiny_lane_history(tiny):
    f = tiny
    # lane DE x c1: o1, o2, o3, o5; o2 and o3 tie at d1 and do not see each other
    assert f["lane_prior_orders"].tolist() == [0, 1, 1, 0, 3]
    assert f["lane_prior_not_received"].tolist() == [0, 0, 0, 0, 1]
    assert f["lane_prior_damaged"].tolist() == [0, 0, 0, 0, 1]
    g_type = (1 + K * 0.02) / (4 + K)  # at d5: 1 of 4 earlier orders not received / damaged
    assert _v(f, "o5", "lane_not_received_rate") == pytest.approx((1 + K * g_type) / (3 + K))
    assert _v(f, "o5", "lane_damaged_rate") == pytest.approx((1 + K * g_type) / (3 + K))
    g_any = (2 + K * 0.1) / (4 + K)  # o1 (k1 at d1), o2 (k2 at d3)
    assert _v(f, "o5", "lane_case_rate") == pytest.approx((2 + K * g_any) / (3 + K))
    # transit: only o1's shipment (1 day) was delivered before d5; o2's at exactly d5 is not
    g_transit = (1.0 + K * 7.0) / (1 + K)
    assert _v(f, "o5", "lane_transit_days") == pytest.approx((1.0 + K * g_transit) / (1 + K))
    # o4's lane (US x c2) is new: it gets exactly the global prior (o1 delivered at d1.5 < d2)
    assert _v(f, "o4", "lane_transit_days") == pytest.approx(g_transit)
    assert _v(f, "o2", "lane_transit_days") == pytest.approx(7.0)  # nothing delivered yet
    # o1 delivered after 1.5 days, promised 2: not late
    g_late = (0 + K * 0.02) / (1 + K)
    assert _v(f, "o5", "lane_late_rate") == pytest.approx((0 + K * g_late) / (1 + K))
    # duty disputes: none anywhere -> the shrunk global prior, never NaN
    assert _v(f, "o1", "destination_duty_dispute_rate") == pytest.approx(0.02)
    g_dd = K * 0.02 / (4 + K)  # 4 earlier orders anywhere, no dispute
    assert _v(f, "o5", "destination_duty_dispute_rate") == pytest.approx(K * g_dd / (3 + K))


def test_tiny_sku_history(tiny):
    f = tiny
    # o5 (d5) buys A; A was bought by o1, o2, o4 (units 1+1+2); (o1, A) has a case since d1
    # (k1 has no sku: attributed to o1's only SKU A; k3 about A is the same (order, SKU))
    assert _v(f, "o5", "sku_min_prior_orders") == 3
    assert _v(f, "o5", "sku_prior_units") == 4
    assert _v(f, "o5", "sku_prior_cases") == 1
    g_line = (2 + K * 0.1) / (5 + K)  # 5 earlier items, 2 with a case: (o1,A) d1, (o2,B) d3
    cat = (2 + K * g_line) / (4 + K)  # apparel items: o1A, o2A, o2B, o4A
    sku_a = (1 + K * cat) / (3 + K)
    assert _v(f, "o5", "sku_case_rate_max") == pytest.approx(sku_a)
    assert _v(f, "o5", "sku_case_rate_mean") == pytest.approx(sku_a)
    assert _v(f, "o5", "category_case_rate_mean") == pytest.approx(cat)
    # product P = {A, B}: items o1A, o2A, o2B, o4A; cases (o1,A), (o2,B)
    assert _v(f, "o5", "product_case_rate_max") == pytest.approx((2 + K * cat) / (4 + K))
    # o2 (d1): k1 opened at d1 is not known -> no cases anywhere; all rates are priors
    assert _v(f, "o2", "sku_prior_cases") == 0
    assert _v(f, "o2", "sku_prior_units") == 1  # A once (o1); B never
    assert _v(f, "o2", "sku_min_prior_orders") == 0
    g1 = (0 + K * 0.1) / (1 + K)  # global line rate at d1: 1 earlier item, no case
    cat1 = (0 + K * g1) / (1 + K)  # apparel: 1 earlier item (o1A), no case
    # B is new: its rate is its category's; A (1 order, no case) is shrunk below that
    assert _v(f, "o2", "sku_case_rate_max") == pytest.approx(cat1)
    assert _v(f, "o2", "top_sku_id") == "B"
    assert _v(f, "o4", "sku_prior_cases") == 1
    assert _v(f, "o5", "top_sku_id") == "A"
    assert _v(f, "o5", "top_sku_prior_orders") == 3
    assert _v(f, "o5", "top_sku_prior_cases") == 1
    assert _v(f, "o5", "top_category") == "apparel"


def test_tiny_static_features(tiny):
    f = tiny
    assert f["effective_incoterm"].tolist() == ["DDP", "DDP", "DDP", "DDU", "DDP"]
    assert f["duties_due_on_arrival"].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert _v(f, "o1", "value_to_de_minimis") == pytest.approx(100 / 150)
    assert _v(f, "o4", "duty_de_minimis") == 800.0
    assert f["listing_language_match"].tolist() == [0.0, 0.5, 1.0, 1.0, 0.0]
    assert f["size_bracketing"].tolist() == [0, 1, 0, 0, 0]
    assert f["multi_qty_apparel"].tolist() == [0, 0, 0, 1, 0]
    assert f["n_units"].tolist() == [1, 2, 2, 2, 1]
    assert f["n_distinct_skus"].tolist() == [1, 2, 1, 1, 1]
    assert _v(f, "o2", "sized_without_size_chart") == 0.5
    assert np.isnan(_v(f, "o3", "sized_without_size_chart"))
    assert _v(f, "o2", "discount_share") == pytest.approx(25 / 125)
    assert _v(f, "o3", "total_weight_g") == 2000.0
    assert _v(f, "o4", "max_unit_price") == 450.0
    assert _v(f, "o4", "price_to_list_ratio") == pytest.approx(4.5)
    assert _v(f, "o4", "carrier_service_level") == "economy"
    assert _v(f, "o4", "carrier_tracked") == 0.0
    assert _v(f, "o4", "carrier_name") == "CheapB"
    assert _v(f, "o3", "main_category") == "electronics"
    assert pd.isna(_v(f, "o3", "main_brand"))
    assert _v(f, "o1", "destination_region") == "EU"


def test_tiny_labels_and_maturity():
    tables = coerce_tables(tiny_frames())
    cfg = FeatureConfig(label_window_days=1)
    f = build_features(tables, as_of=_d(10), config=cfg).set_index("order_id")
    assert f["mature"].all()
    # o1: case exactly 1 day later (inside the window, boundary included); o2: 2 days later
    assert f["label"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    g = build_features(tables, as_of=_d(2.5), config=cfg).set_index("order_id")
    assert g["mature"].tolist() == [True, True, True, False, False]
    assert np.isnan(g.loc["o4", "label"])
    assert np.isnan(g.loc["o5", "label"])
    # default window (90 days): nothing is mature at the export time
    h = build_features(tables)
    assert not h["mature"].any()
    assert h["label"].isna().all()


# ---------------------------------------------------------------------------------------------
# no leakage: cut the data at T, rebuild, compare


def cut_frames(frames: dict[str, pd.DataFrame], t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """What the merchant would have exported at time t."""
    o = frames["orders"]
    orders = o.loc[pd.to_datetime(o["order_ts"], utc=True) <= t]
    keep = set(orders["order_id"])
    lines = frames["order_lines"].loc[frames["order_lines"]["order_id"].isin(keep)]
    c = frames["after_sales_cases"]
    cases = c.loc[pd.to_datetime(c["opened_ts"], utc=True) <= t]
    s = frames["shipments"]
    s = s.loc[pd.to_datetime(s["shipped_ts"], utc=True) <= t].copy()
    late = pd.to_datetime(s["delivered_ts"], utc=True) > t
    s.loc[late, "delivered_ts"] = pd.NaT
    return {
        **frames,
        "orders": orders,
        "order_lines": lines,
        "after_sales_cases": cases,
        "shipments": s,
    }


@pytest.mark.parametrize("quantile", [0.3, 0.7])
def test_no_leakage_cut_at_t(quantile):
    frames = random_frames(500, seed=11)
    full = build_features(coerce_tables(frames))
    t = full["order_ts"].quantile(quantile, interpolation="nearest")  # an actual order time
    cut = build_features(coerce_tables(cut_frames(frames, t)), as_of=t)
    before = full.loc[full["order_ts"] <= t].reset_index(drop=True)
    assert len(before) == len(cut) > 50
    assert (before["order_ts"] == t).sum() >= 1
    cols = _feature_cols(full)
    pd.testing.assert_frame_equal(before[cols], cut[cols], check_exact=True)
    # history actually moved (the test can fail): later orders see more than earlier ones
    assert full["customer_prior_cases"].max() > 0
    assert full["lane_prior_orders"].is_monotonic_increasing is False
    if quantile > 0.5:  # recent windows and matured orders vary before T: they are compared
        for c in (
            "customer_case_rate_mature",
            "lane_case_rate_mature",
            "product_case_rate_mature_max",
            "customer_orders_30d",
            "lane_case_rate_30d",
            "lane_transit_days_30d",
            "product_case_rate_90d_max",
            "customer_prior_sized_returns",
        ):
            assert before[c].nunique() > 1, c


def test_no_leakage_tiny_cut_between_tie_and_case():
    frames = tiny_frames()
    full = build_features(coerce_tables(frames))
    t = _d(1)  # o2 / o3 time, also k1's opening time
    cut = build_features(coerce_tables(cut_frames(frames, t)), as_of=t)
    before = full.loc[full["order_ts"] <= t].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        before[_feature_cols(full)], cut[_feature_cols(full)], check_exact=True
    )


# ---------------------------------------------------------------------------------------------
# purity, cold start, order_ids path, determinism


def test_inputs_not_mutated(world):
    before = {n: df.copy(deep=True) for n, df in world.as_dict().items()}
    build_features(world)
    build_features(world, order_ids=world.orders["order_id"].iloc[::7].tolist())
    for name, df in world.as_dict().items():
        pd.testing.assert_frame_equal(df, before[name], obj=name)
    # nor does editing the output in place reach back into the input
    out = build_features(world)
    out.loc[0, "channel"] = "edited"
    out.loc[0, "order_ts"] = pd.Timestamp("2000-01-01", tz="UTC")
    out.loc[0, "order_value"] = -1.0
    out["customer_id"] = "x"
    out.loc[0, "order_id"] = "edited"
    for name, df in world.as_dict().items():
        pd.testing.assert_frame_equal(df, before[name], obj=name)


def test_cold_start_single_order():
    frames = tiny_frames()
    frames["orders"] = frames["orders"].iloc[[3]]  # o4 alone: new customer, SKU, lane
    frames["order_lines"] = frames["order_lines"].loc[frames["order_lines"]["order_id"] == "o4"]
    frames["after_sales_cases"] = frames["after_sales_cases"].iloc[0:0]
    del frames["shipments"]
    f = build_features(coerce_tables(frames))
    assert len(f) == 1
    row = f.iloc[0]
    for col in (
        "customer_prior_orders",
        "customer_prior_cases",
        "lane_prior_orders",
        "sku_prior_units",
        "sku_prior_cases",
        "sku_min_prior_orders",
    ):
        assert row[col] == 0, col
    assert row["customer_case_rate"] == pytest.approx(0.1)
    assert row["sku_case_rate_max"] == pytest.approx(0.1)
    assert row["lane_not_received_rate"] == pytest.approx(0.02)
    assert row["lane_transit_days"] == pytest.approx(7.0)
    rates = [c for c in f.columns if c.endswith("_rate") or "_rate_" in c]
    assert f[rates].notna().all().all()


def test_order_ids_path_equals_full_build(world):
    full = build_features(world)
    ids = world.orders["order_id"].sample(60, random_state=1).tolist()
    part = build_features(world, order_ids=ids)
    expected = full.loc[full["order_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected, check_exact=True)


def test_unknown_order_ids_raise(world):
    with pytest.raises(ValueError, match="not in orders"):
        build_features(world, order_ids=["nope-1", world.orders["order_id"].iloc[0]])


def test_deterministic(world):
    a = build_features(world)
    b = build_features(world)
    pd.testing.assert_frame_equal(a, b)


def test_every_family_has_features_and_descriptions():
    families = {spec.family for spec in FEATURE_SPECS.values()}
    assert families == set(FAMILIES)
    assert all(spec.description and "\n" not in spec.description for spec in FEATURE_SPECS.values())
    assert describe_features().count("\n") == len(FEATURE_SPECS) + 1


def test_every_feature_that_reads_the_history_is_a_declared_history_feature():
    """HISTORY_FEATURES (what the monitor keeps out of drift alerts) holds every feature whose
    value moves with the history: the last orders built with and without everything before
    them (earlier orders, every case and shipment) differ only in declared history features."""
    from returnrisk.features.specs import HISTORY_FEATURES

    frames = random_frames(600, seed=5)
    full = build_features(coerce_tables(frames)).set_index("order_id")
    last = full.index[-60:]
    orders, lines = frames["orders"], frames["order_lines"]
    alone = {
        **frames,
        "orders": orders.loc[orders["order_id"].isin(last)],
        "order_lines": lines.loc[lines["order_id"].isin(last)],
        "after_sales_cases": frames["after_sales_cases"].iloc[0:0],
        "shipments": frames["shipments"].iloc[0:0],
    }
    cut = build_features(coerce_tables(alone)).set_index("order_id").loc[last]
    ref = full.loc[last]
    moved = {
        c
        for c in FEATURE_SPECS
        if not ref[c].equals(cut[c])
        and not (ref[c].isna() & cut[c].isna() | (ref[c] == cut[c])).all()
    }
    assert moved - set(HISTORY_FEATURES) == set()
    assert len(moved) > 30  # the test can fail: most history features did move


def test_prior_aggregate_rank_path_with_nanosecond_times():
    """Many keys and ns timestamps over years force the dense-rank packing; same answers."""
    rng = np.random.default_rng(5)
    n_e, n_q = 400, 300
    ek = rng.integers(0, 3, n_e) * 400_000_000  # huge key codes
    base = np.int64(1_600_000_000) * 10**9
    et = base + rng.integers(0, 10, n_e) * 10**17 // 10 + rng.integers(0, 3, n_e)
    qk = rng.choice(np.unique(ek), n_q)
    qt = np.concatenate([et[:100], base + rng.integers(0, 10**17, n_q - 100)])
    agg = prior_aggregate(ek, et, qk, qt, {"one": np.ones(n_e, np.int64)}, with_times=True)
    for i in range(n_q):
        m = (ek == qk[i]) & (et < qt[i])
        assert agg.count[i] == m.sum() == agg.sums["one"][i]
        if m.any():
            assert agg.last_ts[i] == et[m].max()


def test_mapping_input_is_coerced():
    f = build_features(tiny_frames())
    assert f["order_id"].tolist() == ["o1", "o2", "o3", "o4", "o5"]


def test_empty_history_and_order_without_lines():
    from returnrisk.contract import empty_table

    tables = coerce_tables(tiny_frames())
    empty = tables.replace(
        **{n: empty_table(n) for n in ("orders", "order_lines", "after_sales_cases", "shipments")}
    )
    f = build_features(empty, as_of=_d(3))
    assert len(f) == 0
    assert set(FEATURE_SPECS) <= set(f.columns)
    no_lines = tables.replace(order_lines=tables.order_lines.iloc[:-1])  # o5 loses its line
    g = build_features(no_lines).set_index("order_id")
    assert g.loc["o5", "n_lines"] == 0
    assert g.loc["o5", "n_units"] == 0
    assert np.isnan(g.loc["o5", "sku_case_rate_max"])
    assert pd.isna(g.loc["o5", "top_sku_id"])
    assert g.loc["o5", "customer_prior_orders"] == 1  # order-level history is unaffected


def test_row_order_of_the_input_does_not_matter():
    frames = random_frames(300, seed=21)
    base = build_features(coerce_tables(frames))
    shuffled = {
        name: df.sample(frac=1.0, random_state=4).reset_index(drop=True)
        for name, df in frames.items()
    }
    again = build_features(coerce_tables(shuffled))
    # equal up to the summation order of floats (items are summed in SKU-row order)
    pd.testing.assert_frame_equal(base, again, check_exact=False, rtol=1e-12)
    counts = [c for c in base.columns if "prior" in c or c.startswith("n_")]
    pd.testing.assert_frame_equal(base[counts], again[counts], check_exact=True)
    assert not base["order_id"].equals(shuffled["orders"]["order_id"])


def test_prior_aggregate_many_equals_separate_calls():
    rng = np.random.default_rng(8)
    qk, qt = rng.integers(0, 6, 150), rng.integers(0, 40, 150)
    sources = {
        "a": (rng.integers(0, 6, 200), rng.integers(0, 40, 200), {"v": rng.integers(0, 9, 200)}),
        "b": (rng.integers(0, 8, 50), rng.integers(0, 40, 50), None),
        "empty": (np.zeros(0, np.int64), np.zeros(0, np.int64), None),
    }
    many = prior_aggregate_many(sources, qk, qt)
    for name, (ek, et, vals) in sources.items():
        one = prior_aggregate(ek, et, qk, qt, vals)
        np.testing.assert_array_equal(many[name].count, one.count)
        for v in vals or {}:
            np.testing.assert_array_equal(many[name].sums[v], one.sums[v])
    assert many["a"].count.max() > 0
    assert many["empty"].count.max() == 0


# ---------------------------------------------------------------------------------------------
# scoring with a prepared history == building on the history merged with the new rows


def _new_rows(tables, seed: int = 0) -> dict[str, pd.DataFrame]:
    """New orders: two of one known customer (and one more at the same time as the second),
    a new customer, a new SKU, an order back-dated into the history, one with a new carrier."""
    rng = np.random.default_rng(seed)
    hist = tables.orders
    as_of = tables.as_of()
    known_cust = hist["customer_id"].value_counts().index[0]
    base = hist.sample(8, random_state=seed).reset_index(drop=True)
    ts = [
        as_of + pd.Timedelta(hours=1),
        as_of + pd.Timedelta(hours=5),
        as_of + pd.Timedelta(hours=5),  # same timestamp as the one before
        as_of + pd.Timedelta(hours=5),  # same customer, same timestamp
        as_of + pd.Timedelta(hours=2),
        as_of + pd.Timedelta(hours=3),
        hist["order_ts"].quantile(0.5),  # back-dated: in the middle of the history
        as_of + pd.Timedelta(days=200),  # after the label window of the first ones
    ]
    cust = [known_cust, known_cust, base["customer_id"][2], known_cust, "u-new", "u-new"]
    cust += [base["customer_id"][6], known_cust]
    orders = base.assign(
        order_id=[f"n{i}" for i in range(8)],
        order_ts=pd.array(ts, dtype=hist["order_ts"].dtype),
        customer_id=pd.array(cust, dtype="str"),
    )
    sku_ids = tables.skus["sku_id"].to_numpy()
    line_sku = [rng.choice(sku_ids) for _ in range(8)] + ["s-new", sku_ids[0], "s-new"]
    lines = pd.DataFrame(
        {
            "order_id": [f"n{i}" for i in range(8)] + ["n1", "n1", "n5"],
            "sku_id": pd.array(line_sku, dtype="str"),
            "quantity": rng.integers(1, 4, 11).astype(np.int64),
            "unit_price": rng.uniform(1, 100, 11).round(2),
        }
    )
    new_sku = tables.skus.iloc[[0]].assign(sku_id="s-new", category="garden-new")
    seen = pd.array([pd.NaT], dtype=tables.customers["first_seen_ts"].dtype)
    new_cust = tables.customers.iloc[[0]].assign(customer_id="u-new", first_seen_ts=seen)
    return {"orders": orders, "order_lines": lines, "skus": new_sku, "customers": new_cust}


def _merged(tables, new: dict[str, pd.DataFrame]):
    return tables.replace(
        **{
            name: pd.concat([getattr(tables, name), df], ignore_index=True)
            for name, df in new.items()
        }
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_prepared_history_equals_merged_build(seed):
    from returnrisk.features import prepare_history

    tables = coerce_tables(random_frames(600, seed=3 + seed))
    new = _new_rows(tables, seed)
    history = prepare_history(tables)
    merged = _merged(tables, new)
    ids = new["orders"]["order_id"].tolist()
    for as_of in (None, tables.as_of() + pd.Timedelta(days=300)):
        want_as_of = merged.as_of() if as_of is None else as_of
        expected = build_features(merged, order_ids=ids, as_of=want_as_of)
        got = build_features(new, order_ids=ids, as_of=as_of, history=history)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        # the new orders see each other: the second order of the customer counts the first
        row = got.set_index("order_id")
        assert row.loc["n1", "customer_prior_orders"] == row.loc["n0", "customer_prior_orders"] + 1
        assert row.loc["n3", "customer_prior_orders"] == row.loc["n1", "customer_prior_orders"]
        assert row.loc["n5", "customer_prior_orders"] == 1  # the new customer's second order
    # a subset of the new orders, as of the history's own as_of (new orders are then no events)
    part = build_features(new, order_ids=["n3", "n6"], as_of=tables.as_of(), history=history)
    expected = build_features(merged, order_ids=["n3", "n6"], as_of=tables.as_of())
    pd.testing.assert_frame_equal(part, expected, check_exact=True)


def test_prepared_history_refuses_what_it_cannot_answer(world):
    from returnrisk.features import prepare_history

    history = prepare_history(world)
    new = _new_rows(world)
    with pytest.raises(ValueError, match="before the prepared history"):
        build_features(new, as_of=world.as_of() - pd.Timedelta(days=1), history=history)
    clash = {**new, "orders": new["orders"].assign(order_id=world.orders["order_id"][:8].values)}
    with pytest.raises(ValueError, match="must be unique"):
        build_features(clash, history=history)
    with pytest.raises(ValueError, match="config"):
        build_features(new, history=history, config=FeatureConfig(prior_strength=5.0))


# ---------------------------------------------------------------------------------------------
# the label is one function; the feature modules are layers


def test_feature_table_labels_are_order_outcomes(world):
    """``build_features`` takes mature, label and first_case_ts from ``order_outcomes``, at any
    as_of and window, for every order or a subset."""
    from returnrisk.arrays import ts_int
    from returnrisk.labels import order_outcomes

    mid = world.orders["order_ts"].median()
    for as_of, days in ((None, 90), (mid, 7), (mid, 30)):
        f = build_features(world, as_of=as_of, config=FeatureConfig(label_window_days=days))
        ref = order_outcomes(
            world.orders,
            world.after_sales_cases,
            as_of=world.as_of() if as_of is None else as_of,
            label_window_days=days,
        ).set_index("order_id")
        ref = ref.loc[f["order_id"]]
        np.testing.assert_array_equal(f["mature"].to_numpy(), ref["mature"].to_numpy())
        np.testing.assert_array_equal(f["label"].to_numpy(), ref["label"].to_numpy())
        np.testing.assert_array_equal(
            ts_int(f["first_case_ts"]), ts_int(ref["first_case_ts"].reset_index(drop=True))
        )
        assert f["mature"].any()
        assert (f["label"] == 1.0).any()


def test_order_outcomes_first_case_and_window_bounds():
    """A case at exactly t + window counts; one after it does not; a case after as_of is not
    known; naive timestamps are UTC; rows keep the orders' order."""
    from returnrisk.labels import order_outcomes

    t0 = pd.Timestamp("2025-01-01")
    day = pd.Timedelta(days=1)
    orders = pd.DataFrame(
        {"order_id": ["c", "a", "b", "d"], "order_ts": [t0, t0, t0, t0 + 5 * day]}
    )
    cases = pd.DataFrame(
        {
            "order_id": ["a", "a", "b", "c", "zz"],
            "opened_ts": [t0 + 12 * day, t0 + 10 * day, t0 + 10 * day + pd.Timedelta(1), t0, t0],
        }
    )
    out = order_outcomes(
        orders, cases, as_of=(t0 + 14 * day).tz_localize("UTC"), label_window_days=10
    )
    assert out["order_id"].tolist() == ["c", "a", "b", "d"]
    assert out["mature"].tolist() == [True, True, True, False]
    assert out["label"].iloc[:3].tolist() == [1.0, 1.0, 0.0]
    assert out["first_case_ts"].iloc[1] == pd.Timestamp("2025-01-11", tz="UTC")  # the first
    assert pd.isna(out["first_case_ts"].iloc[3])
    early = order_outcomes(orders, cases, as_of=t0 + 5 * day, label_window_days=1)
    assert early["first_case_ts"].iloc[:3].isna().tolist() == [False, True, True]


def test_feature_modules_import_no_private_names():
    """The layers: kernels -> history -> families -> build / online import only public names
    of each other (and of the base package), and the pair-code packing is written once."""
    import ast
    from pathlib import Path

    import returnrisk.features as pkg

    folder = Path(pkg.__file__).parent
    allowed = {
        "kernels": set(),
        "specs": set(),
        "history": {"kernels", "specs"},
        "families": {"history", "kernels", "specs"},
        "build": {"families", "history", "kernels", "specs"},
        "online": {"families", "history", "kernels", "specs"},
    }
    packing = 0
    for path in folder.glob("*.py"):
        text = path.read_text()
        packing += text.count("2**32") + text.count("1 << 32")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ImportFrom):
                continue
            local = node.level > 0
            if not local and not (node.module or "").startswith("returnrisk"):
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"
            if local and path.stem in allowed:
                assert node.module in allowed[path.stem], f"{path.name} imports .{node.module}"
    assert packing == 1


# ---------------------------------------------------------------------------------------------
# duties in force at the order's time (duty_rules)


def _with_rules(rules: list[tuple]) -> dict[str, pd.DataFrame]:
    frames = tiny_frames()
    frames["duty_rules"] = pd.DataFrame(rules, columns=list(DUTY_RULE_COLUMNS))
    return frames


def test_the_duty_rule_in_force_at_the_order_time_replaces_the_countrys() -> None:
    """DE (de-minimis 150, DDP by default) orders at days 0, 1, 1, 5; a rule from day 1
    (inclusive) to day 5 (exclusive) sets 50 and DDU: o2 / o3 (at day 1 exactly) get it, o1
    (before) and o5 (at its end) keep the country's. A rule with a missing incoterm keeps the
    country's; the US order (day 2) gets its rule's de-minimis 0."""
    f = build_features(
        coerce_tables(
            _with_rules(
                [
                    ("de1", "DE", _d(1), _d(5), 50.0, "DDU", "test"),
                    ("us1", "US", _d(-100), None, 0.0, None, "test"),
                ]
            )
        )
    ).set_index("order_id")
    assert f["duty_de_minimis"].to_dict() == {
        "o1": 150.0,
        "o2": 50.0,
        "o3": 50.0,
        "o4": 0.0,
        "o5": 150.0,
    }
    assert f["effective_incoterm"].to_dict() == {
        "o1": "DDP",
        "o2": "DDU",
        "o3": "DDU",
        "o4": "DDU",  # its own incoterm
        "o5": "DDP",
    }
    # o2: 100 DDU above 50 -> duties due; o3: 60 DDU above 50; o1, o5 DDP: none
    assert f["duties_due_on_arrival"].to_dict() == {
        "o1": 0.0,
        "o2": 1.0,
        "o3": 1.0,
        "o4": 1.0,
        "o5": 0.0,
    }
    assert f.loc["o2", "value_to_de_minimis"] == 100.0 / 50.0
    # no rules: the country's values (the table is optional)
    plain = build_features(coerce_tables(tiny_frames())).set_index("order_id")
    assert plain["duty_de_minimis"].tolist() == [150.0, 150.0, 150.0, 800.0, 150.0]


def test_a_rule_with_a_missing_de_minimis_keeps_the_countrys() -> None:
    f = build_features(
        coerce_tables(_with_rules([("de1", "DE", _d(0), None, None, "DDU", None)]))
    ).set_index("order_id")
    assert f.loc[["o1", "o2", "o5"], "duty_de_minimis"].tolist() == [150.0] * 3
    assert f.loc[["o1", "o2", "o5"], "effective_incoterm"].tolist() == ["DDU"] * 3


def test_overlapping_or_inverted_duty_rules_are_refused() -> None:
    from returnrisk.contract import ContractError

    bad = _with_rules(
        [
            ("de1", "DE", _d(0), _d(10), 50.0, None, None),
            ("de2", "DE", _d(5), None, 20.0, None, None),  # starts before de1 ends
            ("us1", "US", _d(3), _d(3), 0.0, None, None),  # ends when it starts
            ("fr1", "FR", _d(3), None, 0.0, None, None),  # not in countries
        ]
    )
    with pytest.raises(ContractError) as err:
        coerce_tables(bad)
    text = str(err.value)
    assert "duty_rules.valid_from: the rules of one country do not overlap — 2 rows" in text
    assert "duty_rules.valid_to: after valid_from — 1 row, e.g. rule_id us1" in text
    assert "duty_rules.country_code: foreign key: must exist in countries.country_code" in text
