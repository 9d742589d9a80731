"""The cost model: defaults from the history, overrides from one YAML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from returnrisk.contract import CASE_TYPES
from returnrisk.costs import (
    ACTIONS,
    CASE_FAMILY,
    FAMILIES,
    CostFileError,
    load_costs,
    resolve_costs,
)


def _cases() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "case_type": ["return", "return", "return", "damaged", "not_received", "refund"],
            "amount": [10.0, 30.0, np.nan, 50.0, 80.0, 4.0],
        }
    )


def test_every_case_type_has_one_family_and_every_action_defaults() -> None:
    assert set(CASE_FAMILY) == set(CASE_TYPES)
    assert set(CASE_FAMILY.values()) == set(FAMILIES)
    cm = resolve_costs()
    assert set(cm.efficacy) == set(ACTIONS)
    assert all(cm.efficacy["ship"][f] == 0 for f in FAMILIES)
    assert all(cm.efficacy["cancel"][f] == 1 for f in FAMILIES)
    assert cm.efficacy_matrix().shape == (len(ACTIONS), len(FAMILIES))


def test_case_cost_defaults_to_history_median_plus_handling() -> None:
    cm = resolve_costs(None, _cases())
    assert cm.case_cost["return"] == pytest.approx(20.0 + cm.handling_cost)  # NaN ignored
    assert cm.case_cost["damaged"] == pytest.approx(50.0 + cm.handling_cost)
    # logistics: damaged once, not_received once -> the mean of the two
    assert cm.family_cost["logistics"] == pytest.approx(65.0 + cm.handling_cost)
    # return_refund: three returns, one refund -> weighted by how often each occurs
    want = (3 * (20.0 + cm.handling_cost) + 1 * (4.0 + cm.handling_cost)) / 4
    assert cm.family_cost["return_refund"] == pytest.approx(want)


def test_every_number_can_be_overridden(tmp_path: Path) -> None:
    f = tmp_path / "costs.yaml"
    f.write_text(
        "handling_cost: 2\n"
        "case_cost: {damaged: 99}\n"
        "actions:\n"
        "  hold_inspect: {cost: 7.5, value_share: 0.01, efficacy: {product: 0.9}}\n",
        encoding="utf-8",
    )
    cm = load_costs(f, _cases())
    assert cm.handling_cost == 2.0
    assert cm.case_cost["return"] == pytest.approx(22.0)
    assert cm.case_cost["damaged"] == 99.0  # a given case cost is the total
    assert cm.action_cost["hold_inspect"] == 7.5
    assert cm.efficacy["hold_inspect"]["product"] == 0.9
    # the other families keep their defaults
    assert (
        cm.efficacy["hold_inspect"]["logistics"]
        == resolve_costs().efficacy["hold_inspect"]["logistics"]
    )
    np.testing.assert_allclose(cm.costs_of("hold_inspect", np.array([100.0, np.nan])), [8.5, 7.5])


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("colour: 3\n", "unknown key", "'colour'"),
        ("case_cost: {lost_parcel: 3}\n", "case_cost", "'lost_parcel'"),
        ("actions: {teleport: {cost: 1}}\n", "actions", "'teleport'"),
        ("actions: {cancel: {price: 1}}\n", "actions.cancel", "'price'"),
        ("actions: {cancel: {cost: -1}}\n", "actions.cancel.cost", "-1"),
        ("case_cost: {return: -0.5}\n", "case_cost.return", "-0.5"),
        ("actions: {hold_inspect: {efficacy: {product: 1.5}}}\n", "efficacy.product", "1.5"),
        ("actions: {hold_inspect: {efficacy: {shoes: 0.5}}}\n", "efficacy", "'shoes'"),
        ("handling_cost: lots\n", "handling_cost", "'lots'"),
        ("actions: [1, 2]\n", "actions", "[1, 2]"),
    ],
)
def test_a_bad_file_names_file_key_and_value(tmp_path: Path, text: str, key: str, value: str):
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(CostFileError) as err:
        load_costs(f)
    msg = str(err.value)
    assert str(f) in msg
    assert key in msg
    assert value in msg
    assert "\n" not in msg


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(CostFileError, match="cannot read"):
        load_costs(tmp_path / "absent.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("actions: {cancel: [\n", encoding="utf-8")
    with pytest.raises(CostFileError, match="not valid YAML"):
        load_costs(f)
