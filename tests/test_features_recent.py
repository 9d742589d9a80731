"""Exact values of the recent-window, matured-order and new-source history features (#13) on a
hand-built world of five orders over 135 days: window edges, ties, cold starts, matured orders,
missing suppliers that must not pool, and the product's case-type mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from returnrisk.contract import coerce_tables
from returnrisk.features import build_features
from tests.test_features import K, _d, tiny_frames  # the tiny world's static tables

PRIOR = 0.1  # FeatureConfig.default_case_rate
TYPE_PRIOR = 0.02  # FeatureConfig.default_type_rate


def recent_frames() -> dict[str, pd.DataFrame]:
    """u1 orders at d0, d70, d100 (o3 and o4 tie), u2 (cold) at d135; all on the DE x c1 lane.
    Cases: k1 return of SKU A on o1 at d20, k2 not_received on o2 (no SKU) at d80, k3 damaged on
    o1 at exactly d100 (o3's and o4's time: not known to them)."""
    frames = tiny_frames()
    frames["orders"] = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4", "o5"],
            "customer_id": ["u1", "u1", "u1", "u1", "u2"],
            "order_ts": [_d(0), _d(70), _d(100), _d(100), _d(135)],
            "channel": "ebay",
            "destination_country": "DE",
            "carrier_id": "c1",
            "incoterm": None,
            "order_value": [100.0, 100.0, 100.0, 100.0, 80.0],
            "shipping_fee": 0.0,
            "discount_value": 0.0,
            "payment_method": "card",
            "promised_delivery_days": pd.array([5, 2, 5, 5, 3], dtype="Int64"),
        }
    )
    frames["order_lines"] = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "o4", "o5"],
            "sku_id": ["A", "A", "A", "B", "A"],
            "quantity": [1, 1, 1, 1, 1],
            "unit_price": [100.0, 100.0, 100.0, 100.0, 80.0],
        }
    )
    frames["after_sales_cases"] = pd.DataFrame(
        {
            "case_id": ["k1", "k2", "k3"],
            "order_id": ["o1", "o2", "o1"],
            "opened_ts": [_d(20), _d(80), _d(100)],
            "case_type": ["return", "not_received", "damaged"],
            "sku_id": ["A", None, None],
            "amount": [100.0, 100.0, 10.0],
        }
    )
    frames["shipments"] = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "shipped_ts": [_d(1), _d(71)],
            "delivered_ts": [_d(6), _d(110)],  # o2: 39 days in transit, 40 after the order
        }
    )
    return frames


@pytest.fixture(scope="module")
def f() -> pd.DataFrame:
    out = build_features(coerce_tables(recent_frames()))
    assert out["order_id"].tolist() == ["o1", "o2", "o3", "o4", "o5"]
    return out.set_index("order_id")


def rate(events: float, trials: float, prior: float) -> float:
    return (events + K * prior) / (trials + K)


def test_customer_windows_edges_and_ties(f):
    # o3 at d100: the 30-day window is [d70, d100): o2 at exactly d70 is in, o4 (tie) is not
    assert f["customer_orders_30d"].tolist() == [0, 0, 1, 1, 0]
    # the 90-day window [d10, d100): k1 (d20) and k2 (d80); k3 opens at d100: not known
    assert f.loc["o3", "customer_cases_90d"] == 2
    assert f.loc["o2", "customer_cases_90d"] == 1  # [d-20, d70): k1
    # o5 is a cold-start customer: nothing
    assert f.loc["o5", ["customer_orders_30d", "customer_cases_90d"]].tolist() == [0, 0]


def test_matured_rates_count_only_orders_whose_outcome_is_known(f):
    # o1 (d0) matures at d90 with its first case (d20) inside its window; o2 (d70) matures at
    # d160: after every order here, so it counts for nobody
    g = rate(1, 1, PRIOR)  # the global share of matured orders with a case, after d90
    assert f.loc["o3", "customer_case_rate_mature"] == pytest.approx(rate(1, 1, g))
    assert f.loc["o2", "customer_case_rate_mature"] == pytest.approx(PRIOR)  # none matured
    # the lifetime rate counts o2 (placed 30 days before o3, already with a case) too
    assert f.loc["o5", "customer_case_rate_mature"] == pytest.approx(g)  # cold start: prior
    assert f.loc["o5", "lane_case_rate_mature"] == pytest.approx(rate(1, 1, g))
    # product P: o1's item of A matured with a case; o2's (k2 has no SKU: every item) has not
    assert f.loc["o5", "product_case_rate_mature_max"] == pytest.approx(rate(1, 1, g))


def test_lane_recent_windows_shrink_to_the_lifetime(f):
    o5 = f.loc["o5"]
    # [d105, d135): no lane orders, no first case: the recent rate is the lifetime rate
    assert o5["lane_case_rate_30d"] == pytest.approx(o5["lane_case_rate"])
    assert o5["lane_case_trend_30d"] == pytest.approx(0.0)
    assert o5["lane_not_received_rate_30d"] == pytest.approx(o5["lane_not_received_rate"])
    # [d45, d135): o2's first case (d80) over o2, o3, o4
    assert o5["lane_case_rate_90d"] == pytest.approx(rate(1, 3, o5["lane_case_rate"]))
    # shipments delivered in [d105, d135): o2's (39 days in transit, later than promised)
    assert o5["lane_transit_days_30d"] == pytest.approx(
        (39 + K * o5["lane_transit_days"]) / (1 + K)
    )
    assert o5["lane_late_rate_30d"] == pytest.approx(rate(1, 1, o5["lane_late_rate"]))
    # no duty dispute: the destination's recent rate is shrunk to its lifetime rate
    assert o5["destination_duty_dispute_rate_90d"] == pytest.approx(
        rate(0, 3, o5["destination_duty_dispute_rate"])
    )


def test_item_levels_supplier_brand_and_windows(f):
    o5 = f.loc["o5"]
    # before d135: case items (o1, A) at d20 and (o2, A) at d80 (k2 has no SKU: o2's items);
    # items o1 A, o2 A, o3 A, o4 B. The global item rate is the prior of supplier and brand.
    item_rate = rate(2, 4, PRIOR)
    # A and B have no supplier: each is a supplier of its own (never pooled into one "missing")
    assert o5["supplier_case_rate_max"] == pytest.approx(rate(2, 3, item_rate))
    assert o5["brand_case_rate_max"] == pytest.approx(rate(2, 4, item_rate))  # brand "br": A, B
    # SKU A over [d45, d135): one case item (o2, A) over o2 and o3's items of A
    assert o5["sku_case_rate_90d_max"] == pytest.approx(rate(1, 2, o5["sku_case_rate_max"]))
    # product P over [d45, d135): (o2, A) over o2 A, o3 A, o4 B; over [d105, d135): nothing
    p = o5["product_case_rate_max"]
    assert o5["product_case_rate_90d_max"] == pytest.approx(rate(1, 3, p))
    assert o5["product_case_trend_90d_max"] == pytest.approx(rate(1, 3, p) - p)
    assert o5["product_case_rate_30d_max"] == pytest.approx(p)
    assert o5["supplier_case_rate_90d_max"] == pytest.approx(
        rate(1, 2, o5["supplier_case_rate_max"])
    )
    # apparel to DE over [d45, d135): (o2, A) over o2 A, o3 A, o4 B
    assert o5["category_destination_case_rate_90d_max"] == pytest.approx(
        rate(1, 3, o5["category_destination_case_rate_max"])
    )
    # the case-type mix of product P: k1 is a return of A; nothing was not as described
    assert o5["product_return_rate_max"] == pytest.approx(rate(1, 4, TYPE_PRIOR))
    assert o5["product_not_as_described_rate_max"] == pytest.approx(rate(0, 4, TYPE_PRIOR))
    # cold start: the first order has every rate at its prior and no windows
    o1 = f.loc["o1"]
    assert o1["supplier_case_rate_max"] == pytest.approx(PRIOR)
    assert o1["product_case_rate_90d_max"] == pytest.approx(o1["product_case_rate_max"])


def test_customer_with_the_category_and_product(f):
    # o3 and o4 (tie at d100): u1 bought A at d0 and d70 (apparel, product P); o4's B is P too
    assert f["customer_category_prior_items"].tolist() == [0, 1, 2, 2, 0]
    assert f["customer_product_prior_items"].tolist() == [0, 1, 2, 2, 0]
    # u1's apparel items with a case before d100: (o1, A) at d20, (o2, A) at d80, over 2 items
    cat = f.loc["o3", "category_case_rate_mean"]
    assert f.loc["o3", "customer_category_case_rate_max"] == pytest.approx(rate(2, 2, cat))
    # a sized return before: k1 returned A (size M) at d20; u2 has none
    assert f["customer_prior_sized_returns"].tolist() == [0, 1, 1, 1, 0]


def test_a_case_opened_at_the_window_start_is_in_and_one_at_t_is_out():
    frames = recent_frames()
    cases = frames["after_sales_cases"]
    frames["after_sales_cases"] = cases.assign(opened_ts=[_d(10), _d(80), _d(100)])
    out = build_features(coerce_tables(frames)).set_index("order_id")
    # o3 at d100: [d10, d100) holds k1 at exactly d10 and k2; not k3 at d100
    assert out.loc["o3", "customer_cases_90d"] == 2
    frames["after_sales_cases"] = cases.assign(opened_ts=[_d(9.999), _d(80), _d(100)])
    out = build_features(coerce_tables(frames)).set_index("order_id")
    assert out.loc["o3", "customer_cases_90d"] == 1
    assert np.isfinite(out["lane_case_rate_90d"]).all()
