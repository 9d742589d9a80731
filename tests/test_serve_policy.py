"""Policy (score, level, flag modes) and reason-code texts from hand-made contributions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from returnrisk.serve.policy import (
    PolicyConfig,
    PolicyError,
    apply_policy,
    flag,
    n_top,
    risk_level,
    risk_score,
)
from returnrisk.serve.reasons import explain, explain_row


def test_score_and_levels() -> None:
    p = np.array([0.0, 0.1999, 0.2, 0.35, 0.4, 0.99, 1.0])
    s = risk_score(p)
    assert s.tolist() == [0.0, 20.0, 20.0, 35.0, 40.0, 99.0, 100.0]
    assert risk_level(s, (20, 40)).tolist() == [
        "normal",
        "elevated",
        "elevated",
        "elevated",
        "highest",
        "highest",
        "highest",
    ]
    assert risk_level(np.array([19.9, 20.0]), (20, 40)).tolist() == ["normal", "elevated"]
    assert risk_level(np.array([5.0, 10.0]), (5, 10)).tolist() == ["elevated", "highest"]


def test_flag_top_percent_with_deterministic_ties() -> None:
    ids = np.array([f"o{i:02d}" for i in range(20)])
    p = np.linspace(0.0, 0.19, 20)
    got = flag(p, ids, PolicyConfig(flag_top=10))
    assert got.sum() == 2
    assert set(ids[got]) == {"o19", "o18"}
    # ties: equal probabilities -> lower order_id wins
    p_tie = np.full(20, 0.3)
    got = flag(p_tie, ids, PolicyConfig(flag_top=5))
    assert ids[got].tolist() == ["o00"]
    assert n_top(100_000, 5) == 5000
    assert n_top(3, 0) == 0
    assert n_top(1, 5) == 1  # one order at 5 %: ceil


def test_flag_threshold_and_expected_cost() -> None:
    ids = np.array(["a", "b", "c"])
    p = np.array([0.1, 0.25, 0.5])
    assert flag(p, ids, PolicyConfig(flag_above=0.25)).tolist() == [False, True, True]
    # p * 40 > 8  <=>  p > 0.2
    assert flag(p, ids, PolicyConfig(case_cost=40, action_cost=8)).tolist() == [
        False,
        True,
        True,
    ]
    assert flag(p, ids, PolicyConfig(case_cost=10, action_cost=5)).tolist() == [
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"flag_top": 5, "flag_above": 0.3}, "one flag mode"),
        ({"case_cost": 5}, "go together"),
        ({"flag_top": 120}, "--flag-top"),
        ({"flag_above": 1.5}, "--flag-above"),
        ({"case_cost": -1, "action_cost": 1}, "--case-cost"),
        ({"level_cuts": (50, 10)}, "cut points"),
    ],
)
def test_bad_policy_is_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(PolicyError, match=word):
        PolicyConfig(**kwargs)


def test_apply_policy_frame() -> None:
    out = apply_policy(pd.Series(["x", "y"]), np.array([0.05, 0.6]), PolicyConfig(flag_above=0.5))
    assert out.columns.tolist() == [
        "order_id",
        "probability",
        "risk_score",
        "risk_level",
        "flagged",
    ]
    assert out["flagged"].tolist() == [False, True]
    assert out["risk_level"].tolist() == ["normal", "highest"]


@dataclass(frozen=True)
class Spec:
    family: str
    description: str


SPECS = {
    "value_to_de_minimis": Spec("duties", "order value / de-minimis"),
    "duties_due_on_arrival": Spec("duties", "DDU above de-minimis"),
    "customer_prior_cases": Spec("customer", "prior cases"),
    "customer_prior_orders": Spec("customer", "prior orders"),
    "lane_not_received_rate": Spec("logistics", "lane not-received rate"),
    "min_n_images": Spec("listing", "fewest listing images among the items"),
    "order_value": Spec("price", "goods value"),
}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "destination_country": ["DE", "BR"],
            "carrier_id": ["c1", None],
            "carrier_name": ["X", None],
            "effective_incoterm": ["DDU", "DDP"],
            "order_value": [182.0, 40.0],
            "duty_de_minimis": [150.0, 50.0],
            "value_to_de_minimis": [182 / 150, 0.8],
            "duties_due_on_arrival": [1.0, 0.0],
            "customer_prior_cases": [3.0, 0.0],
            "customer_prior_orders": [5.0, 0.0],
            "lane_not_received_rate": [0.079, 0.02],
            "min_n_images": [1.0, 6.0],
        }
    )


def test_reason_texts_quote_the_orders_values() -> None:
    frame = _frame()
    contrib = pd.DataFrame(
        {
            "value_to_de_minimis": [0.5, -0.1],
            "duties_due_on_arrival": [0.3, 0.0],  # duties = 0.8 / -0.1
            "customer_prior_cases": [0.4, 0.0],
            "customer_prior_orders": [0.2, -0.3],  # customer = 0.6 / -0.3
            "lane_not_received_rate": [0.7, 0.05],  # logistics = 0.7 / 0.05
            "min_n_images": [-0.2, 0.9],  # listing
            "order_value": [0.0, 0.2],  # price
            "bias": [-2.0, -2.0],
        }
    )
    out = explain(frame, contrib, SPECS, top=3)
    r1 = out.iloc[0]
    assert r1["reason_1_driver"] == "duties"
    assert r1["reason_1"] == "ships DDU, 182 above the DE duty-free limit of 150"
    assert r1["reason_1_contribution"] == pytest.approx(0.8)
    assert r1["reason_2_driver"] == "logistics"
    assert r1["reason_2"] == "lane DE via carrier X: 7.9 % of parcels not received"
    assert r1["reason_3"] == "customer opened 3 cases in 5 earlier orders"
    assert r1["reason_3_contribution"] == pytest.approx(0.6)
    r2 = out.iloc[1]
    assert r2["reason_1_driver"] == "listing"
    assert r2["reason_1"] == "fewest listing images among the items: 6"
    assert r2["reason_2_driver"] == "price"
    assert r2["reason_3_driver"] == "logistics"
    assert r2["reason_3"] == "no carrier assigned yet for BR"
    # signed contributions, sorted from the largest
    c = out[[f"reason_{k}_contribution" for k in (1, 2, 3)]].to_numpy()
    assert (np.diff(c, axis=1) <= 0).all()


def test_reason_texts_other_branches() -> None:
    frame = _frame().assign(effective_incoterm=["DDP", "DDU"], customer_prior_orders=[0.0, 2.0])
    contrib = pd.DataFrame(0.0, index=[0, 1], columns=list(SPECS))
    contrib["customer_prior_orders"] = 1.0
    contrib["value_to_de_minimis"] = 0.5
    out = explain(frame, contrib, SPECS, top=2)
    assert out["reason_1"].tolist() == [
        "new customer: no earlier orders",
        "customer opened 0 cases in 2 earlier orders",
    ]
    assert out["reason_2"].tolist() == [
        "ships DDP to DE, order value 182 (duty-free limit 150)",
        "ships DDU to BR, order value 40 (duty-free limit 50)",
    ]
    assert "reason_3" not in out.columns


def test_reasons_on_no_rows_and_misaligned_input() -> None:
    frame = _frame().iloc[0:0]
    contrib = pd.DataFrame(columns=list(SPECS), dtype="float64")
    out = explain(frame, contrib, SPECS)
    assert len(out) == 0
    assert "reason_1" in out.columns
    with pytest.raises(ValueError, match="contribution rows"):
        explain(_frame(), contrib, SPECS)


def test_template_only_when_its_feature_drives_the_family() -> None:
    specs = {**SPECS, "customer_tenure_days": Spec("customer", "days since first seen")}
    frame = _frame().assign(customer_tenure_days=[400.0, 3.0])
    contrib = pd.DataFrame(0.0, index=[0, 1], columns=list(specs))
    contrib["customer_tenure_days"] = [0.9, 0.1]
    contrib["customer_prior_cases"] = [0.1, 0.9]
    out = explain(frame, contrib, specs, top=1)
    assert out["reason_1"].tolist() == [
        "days since first seen: 400",
        "new customer: no earlier orders",
    ]


def test_one_row_explained_alone_as_in_a_batch() -> None:
    """The HTTP service explains one order at a time, batch scoring thousands at once: an order
    gets the same reasons either way, whatever branch its sentences take."""
    specs = {
        **SPECS,
        "customer_tenure_days": Spec("customer", "days since first seen"),
        "size_bracketing": Spec("size_fit", "same product in two or more sizes"),
        "multi_qty_apparel": Spec("size_fit", "one sized SKU with quantity > 1"),
        "sku_case_rate_max": Spec("product", "highest SKU case rate"),
        "channel": Spec("order", "sales channel"),
    }
    rng = np.random.default_rng(7)
    n = 60

    def pick(*values: object) -> np.ndarray:
        return rng.choice(np.asarray(values, dtype=object), n)

    def text(*values: object) -> pd.api.extensions.ExtensionArray:
        return pd.array(pick(*values), dtype="str")

    def number(*values: float) -> np.ndarray:
        return pick(*values).astype("float64")

    frame = pd.DataFrame(
        {
            "destination_country": text("DE", "BR", "US", None),
            "carrier_name": text("X", "Y Express", None),
            "effective_incoterm": text("DDU", "DDP", None),
            "order_value": number(182.0, 40.0, 150.0, 0.5, 1e6, np.nan),
            "duty_de_minimis": number(150.0, 50.0, 0.0, np.nan),
            "value_to_de_minimis": rng.uniform(0.0, 3.0, n),
            "duties_due_on_arrival": number(0.0, 1.0, np.nan),
            "customer_prior_cases": number(0.0, 3.0, np.nan),
            "customer_prior_orders": number(0.0, 5.0, 12.0, np.nan),
            "customer_tenure_days": rng.uniform(0.0, 900.0, n).round(3),
            "lane_not_received_rate": number(0.079, 0.02, -0.0001, 0.125, np.nan),
            "min_n_images": number(1.0, 6.0, np.nan),
            "size_bracketing": number(0.0, 1.0, np.nan),
            "multi_qty_apparel": number(0.0, 1.0),
            "sku_case_rate_max": rng.uniform(0.0, 0.3, n),
            "top_sku_id": text("P1-RED", "P2", None),
            "top_category": text("apparel", "home"),
            "channel": text("web", "app", None),
        },
        index=[f"o{i}" for i in range(n)],
    )
    # quarters (exact sums: ties are exact ties) and tenths (sums depend on the order of the
    # additions, which must not depend on the number of rows), every family tied on some rows
    quarters = pd.DataFrame(rng.integers(-8, 9, (n, len(specs))) / 4.0, columns=list(specs))
    tenths = pd.DataFrame(rng.integers(-8, 9, (n, len(specs))) / 10.0, columns=list(specs))
    for contrib in (quarters, tenths):
        contrib.iloc[::7] = 0.0
        contrib["bias"] = -2.0
        for top in (1, 3, 5):
            batch = explain(frame, contrib, specs, top=top)
            assert batch.index.equals(frame.index)
            names = contrib.columns.tolist()
            matrix = contrib.to_numpy()
            for i in range(n):
                alone = explain(frame.iloc[[i]], contrib.iloc[[i]], specs, top=top)
                pd.testing.assert_frame_equal(alone, batch.iloc[[i]], check_exact=True)
                # the service's form: the order's row as features.online gives it, no frame
                one = explain_row(_online_row(frame.iloc[[i]]), matrix[[i]], names, specs, top=top)
                expected = batch.iloc[i].to_dict()
                assert list(one) == list(expected)
                for key, value in expected.items():
                    assert (pd.isna(one[key]) and pd.isna(value)) or one[key] == value, key


def _online_row(frame: pd.DataFrame) -> dict[str, object]:
    """A one-row frame as ``OnlineFeatures.order_features`` gives a row: text as a list of str
    or None, numbers as a 1-element float array."""
    row: dict[str, object] = {}
    for name, col in frame.items():
        if isinstance(col.dtype, pd.StringDtype):
            row[name] = [None if pd.isna(v) else str(v) for v in col]
        else:
            row[name] = col.to_numpy(dtype="float64")
    return row


def test_explain_row_wants_one_order() -> None:
    contrib = np.zeros((2, len(SPECS)))
    with pytest.raises(ValueError, match="one order expected"):
        explain_row({"order_value": np.zeros(2)}, contrib, list(SPECS), SPECS)


def test_size_fit_reason_names_bracketing() -> None:
    specs = {
        "size_bracketing": Spec("size_fit", "1 when the same product is ordered in 2+ sizes"),
        "multi_qty_apparel": Spec("size_fit", "1 when one sized SKU has quantity > 1"),
    }
    frame = pd.DataFrame({"size_bracketing": [1.0, 0.0, 0.0], "multi_qty_apparel": [1.0, 1.0, 0.0]})
    contrib = pd.DataFrame(
        {"size_bracketing": [2.5, 0.0, -0.2], "multi_qty_apparel": [0.1, 0.4, 0.0]}
    )
    out = explain(frame, contrib, specs, top=1)
    assert out["reason_1_driver"].tolist() == ["size_fit"] * 3
    assert out["reason_1"].tolist() == [
        "same product ordered in two or more sizes (bracketing)",
        "several units of one sized item (fit risk)",
        "no size bracketing in this order",
    ]
