"""What-if re-scoring: from a score to the action with the largest expected saving.

For each order, every action of the cost model (``returnrisk.costs``) gets a probability of a
case if it were taken (``p_case_if``, and per case-type family) and an expected saving:

* ``ship_ddp`` and ``switch_carrier`` change the order itself. Their ``p_case_if`` comes from
  re-building the changed order's features with the feature code (``build_features`` on a
  copy of the order rows with ``incoterm = "DDP"``, or with another ``carrier_id`` among the
  services seen shipping to the order's country in the history — that lane's history then
  applies) and scoring them with the same model. Never a hand-made adjustment.
* ``hold_inspect``, ``contact_buyer`` and ``cancel`` leave the order as it is; their effect is
  the efficacy table: p_family_if = p_family x (1 - efficacy).
* ``ship`` is the order as it is (saving 0).

saving = sum over families (p_family - p_family_if) x cost of a case of the family - action cost.
The recommended action is the one with the largest saving; ``ship`` when none is positive.

A what-if is a model estimate, not a causal guarantee: the model learnt how orders shipped DDP
or by a carrier fared, not what changing one would do.

The changed orders are built in *layers*, each one ``build_features`` call over all the
orders asked about: the DDP layer (every order not DDP, changed), then one layer per carrier
service (every order that could switch to it, changed); in a layer the other orders appear
once, as they are. A feature of an order depends on the other new orders only through an
earlier order of the same customer, SKU or lane in the same request; for one order, or orders
sharing none of these, the what-if is exactly the order changed by hand and built (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from returnrisk.costs import ACTIONS, CASE_FAMILY, FAMILIES, WHAT_IF_ACTIONS, CostModel

FAMILY_COLUMNS = tuple(f"p_{f}" for f in FAMILIES)
TABLE_COLUMNS = (
    "order_id",
    "action",
    "carrier_id",
    "p_case_if",
    *(f"{c}_if" for c in FAMILY_COLUMNS),
    "action_cost",
    "saving",
)


def history_lanes(orders: pd.DataFrame) -> pd.DataFrame:
    """The (destination_country, carrier_id) pairs seen in the history, sorted."""
    lanes = orders[["destination_country", "carrier_id"]].dropna()
    lanes = lanes.astype("str").drop_duplicates()
    return lanes.sort_values(["destination_country", "carrier_id"]).reset_index(drop=True)


def family_shares(tables: Any) -> np.ndarray:
    """Share of each family among the history's first cases (the fallback P(family | case))."""
    c = tables.after_sales_cases.sort_values(["order_id", "opened_ts", "case_id"], kind="stable")
    first = c.drop_duplicates("order_id")["case_type"].astype("str").map(CASE_FAMILY)
    counts = first.value_counts().reindex(list(FAMILIES), fill_value=0).to_numpy(np.float64)
    counts = counts + 1.0  # every family possible
    return counts / counts.sum()


@dataclass(frozen=True)
class Decider:
    """Everything a decision needs: the prepared feature history, the risk model (anything with
    ``predict_case(X)`` (1-D P(case)) and ``feature_names_``), optionally a case-type model
    (``predict_family_proba(X)``; else the history's family shares), the cost model."""

    history: Any  # returnrisk.features.History
    risk_model: Any
    costs: CostModel
    case_types: Any = None
    lanes: pd.DataFrame | None = None  # default: history_lanes(history.tables.orders)
    shares: np.ndarray | None = None  # default: family_shares(history.tables)

    @classmethod
    def build(
        cls, history: Any, risk_model: Any, costs: CostModel, case_types: Any = None
    ) -> Decider:
        """``case_types`` defaults to the one the risk model carries (``case_types_``)."""
        if case_types is None:
            case_types = getattr(risk_model, "case_types_", None)
        return cls(
            history,
            risk_model,
            costs,
            case_types,
            history_lanes(history.tables.orders),
            family_shares(history.tables),
        )

    # -- features of the changed orders ------------------------------------------------------
    def _build(self, new: Mapping[str, pd.DataFrame], orders: pd.DataFrame, as_of: Any):
        from returnrisk.features import build_features

        return build_features(
            {**new, "orders": orders},
            order_ids=orders["order_id"].tolist(),
            as_of=as_of,
            history=self.history,
        )

    def variant_features(
        self, new: Mapping[str, pd.DataFrame], *, as_of: Any = None
    ) -> pd.DataFrame:
        """Feature rows of every (order, variant): ``action`` is ``ship`` (as it is),
        ``ship_ddp`` or ``switch_carrier`` (``variant_carrier`` the service switched to); one
        ``build_features`` call per layer (see the module's docstring), all vectorised."""
        orders = new["orders"].reset_index(drop=True)
        if as_of is None:
            as_of = max(self.history.as_of, orders["order_ts"].max()) if len(orders) else None
        own = orders["carrier_id"].astype("str")
        base = self._build(new, orders, as_of)
        parts = [base.assign(action="ship")]
        # DDP already (given, or the country's default when the order does not say): no change
        eff = base.set_index("order_id")["effective_incoterm"].loc[orders["order_id"]]
        not_ddp = (eff.astype("str") != "DDP").fillna(True).to_numpy()
        if not_ddp.any():
            ddp = orders.assign(incoterm=orders["incoterm"].where(~not_ddp, "DDP"))
            f = self._build(new, ddp, as_of)
            keep = f["order_id"].isin(orders.loc[not_ddp, "order_id"]).to_numpy()
            parts.append(f[keep].assign(action="ship_ddp"))
        lanes = self.lanes if self.lanes is not None else history_lanes(self.history.tables.orders)
        dest = orders["destination_country"].astype("str")
        for carrier in pd.unique(lanes["carrier_id"]):  # a handful of services, not orders
            served = lanes.loc[lanes["carrier_id"] == carrier, "destination_country"]
            can = (dest.isin(served) & (own != carrier).fillna(True)).to_numpy()
            if not can.any():
                continue
            switched = orders.assign(carrier_id=orders["carrier_id"].where(~can, carrier))
            f = self._build(new, switched, as_of)
            keep = f["order_id"].isin(orders.loc[can, "order_id"]).to_numpy()
            parts.append(f[keep].assign(action="switch_carrier"))
        out = pd.concat(parts, ignore_index=True)
        out["variant_carrier"] = out["carrier_id"].astype("str")
        return out

    # -- probabilities ----------------------------------------------------------------------
    def family_proba(self, features: pd.DataFrame) -> np.ndarray:
        """(n, families) P(case) x P(family | case) of feature rows; rows add up to P(case)."""
        names = list(self.risk_model.feature_names_)
        p = np.asarray(self.risk_model.predict_case(features[names]), dtype=np.float64)
        if self.case_types is not None:
            given = self.case_types.predict_family_proba(features)
        else:
            shares = self.shares if self.shares is not None else family_shares(self.history.tables)
            given = np.broadcast_to(shares, (len(p), len(FAMILIES)))
        return p[:, None] * given

    # -- decisions --------------------------------------------------------------------------
    def action_table(self, new: Mapping[str, pd.DataFrame], *, as_of: Any = None) -> pd.DataFrame:
        """Every action for every order: ``TABLE_COLUMNS``, sorted by order (input order), then
        action (``ACTIONS`` order), then carrier."""
        orders = new["orders"].reset_index(drop=True)
        feats = self.variant_features(new, as_of=as_of)
        pf = self.family_proba(feats)
        cost_f = self.costs.family_costs()
        value = orders.set_index(orders["order_id"].astype("str"))["order_value"]
        fid = feats["order_id"].astype("str")
        base_rows = (feats["action"] == "ship").to_numpy()
        base = pd.DataFrame(pf[base_rows], index=fid[base_rows].to_numpy())
        pf_base = base.loc[fid].to_numpy()  # each variant's order as it is
        # the re-scored variants (ship, ship_ddp, switch_carrier)
        scored = pd.DataFrame(
            {
                "order_id": fid.to_numpy(),
                "action": feats["action"].to_numpy(),
                "carrier_id": feats["variant_carrier"].to_numpy(),
            }
        )
        tables = [self._rows(scored, pf, pf_base, cost_f, value)]
        # the table actions on the order as it is
        ids = fid[base_rows].to_numpy()
        for action in ACTIONS:
            if action == "ship" or action in WHAT_IF_ACTIONS:
                continue
            eff = np.array([self.costs.efficacy[action][f] for f in FAMILIES])
            carrier = feats.loc[base_rows, "variant_carrier"].to_numpy()
            rows = pd.DataFrame({"order_id": ids, "action": action, "carrier_id": carrier})
            pb = pf[base_rows]
            tables.append(self._rows(rows, pb * (1 - eff), pb, cost_f, value))
        out = pd.concat(tables, ignore_index=True)
        pos = pd.Series(np.arange(len(orders)), index=orders["order_id"].astype("str"))
        rank = out["action"].map({a: i for i, a in enumerate(ACTIONS)}).to_numpy()
        order = np.lexsort(
            (out["carrier_id"].fillna("").to_numpy(dtype=str), rank, pos.loc[out["order_id"]])
        )
        out = out.iloc[order].reset_index(drop=True)
        out["carrier_id"] = out["carrier_id"].astype("str")
        return out[list(TABLE_COLUMNS)]

    def _rows(
        self,
        rows: pd.DataFrame,
        pf_if: np.ndarray,
        pf_base: np.ndarray,
        cost_f: np.ndarray,
        value: pd.Series,
    ) -> pd.DataFrame:
        act = rows["action"].to_numpy()
        v = value.loc[rows["order_id"]].to_numpy(dtype=np.float64)
        v = np.where(np.isfinite(v), v, 0.0)
        fixed = pd.Series(self.costs.action_cost).loc[act].to_numpy()
        share = pd.Series(self.costs.action_value_share).loc[act].to_numpy()
        cost = fixed + share * v
        out = rows.copy()
        out["p_case_if"] = pf_if.sum(axis=1)
        for j, c in enumerate(FAMILY_COLUMNS):
            out[f"{c}_if"] = pf_if[:, j]
        out["action_cost"] = cost
        out["saving"] = (pf_base - pf_if) @ cost_f - cost
        return out

    def recommend(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per order (first-seen order of ``table``): ``recommended_action``,
        ``recommended_carrier`` (for ``switch_carrier``), ``expected_saving``, ``p_case`` (as
        it is) and ``p_case_if`` (of the recommendation); ``ship`` and 0 when no saving is
        positive. Ties go to the action listed first (``ACTIONS``), then the carrier."""
        return recommend(table)


def recommend(table: pd.DataFrame) -> pd.DataFrame:
    """See ``Decider.recommend``; ``table`` is ``Decider.action_table``'s (sorted) output."""
    ids = pd.unique(table["order_id"])
    ship = table[table["action"] == "ship"].set_index("order_id")
    # the first row with the largest saving of each order (the table is in ACTIONS order)
    s = table["saving"].to_numpy()
    best_s = table.groupby("order_id", sort=False)["saving"].transform("max").to_numpy()
    first = table[s == best_s].drop_duplicates("order_id").set_index("order_id").loc[ids]
    positive = first["saving"].to_numpy() > 0
    out = pd.DataFrame({"order_id": ids})
    out["recommended_action"] = np.where(positive, first["action"].to_numpy(dtype=object), "ship")
    carrier = np.where(
        positive & (first["action"].to_numpy() == "switch_carrier"),
        first["carrier_id"].to_numpy(dtype=object),
        None,
    )
    out["recommended_carrier"] = pd.Series(carrier, dtype="str")
    out["expected_saving"] = np.where(positive, first["saving"].to_numpy(), 0.0)
    out["p_case"] = ship.loc[ids, "p_case_if"].to_numpy()
    out["p_case_if"] = np.where(positive, first["p_case_if"].to_numpy(), out["p_case"].to_numpy())
    out["recommended_action"] = out["recommended_action"].astype("str")
    return out


# ---------------------------------------------------------------------------------------------
# against the synthetic world's truth (``truth_actions.parquet``)


def truth_action_table(
    truth_actions: pd.DataFrame, costs: CostModel, order_value: pd.Series
) -> pd.DataFrame:
    """``action_table``'s columns under the generator's truth: the what-if actions from
    ``truth_actions`` (true P per family of the changed order), the table actions from the
    efficacy table on the true P of the order as it is. ``order_value``: by order_id."""
    ta = truth_actions.assign(order_id=truth_actions["order_id"].astype("str"))
    ship = ta[ta["action"] == "ship"].set_index("order_id")
    pf = ta[list(FAMILY_COLUMNS)].to_numpy(dtype=np.float64)
    pf_base = ship.loc[ta["order_id"], list(FAMILY_COLUMNS)].to_numpy(dtype=np.float64)
    cost_f = costs.family_costs()
    value = order_value.copy()
    value.index = value.index.astype("str")
    helper = Decider(None, None, costs)
    parts = [helper._rows(ta[["order_id", "action", "carrier_id"]], pf, pf_base, cost_f, value)]
    pb = ship[list(FAMILY_COLUMNS)].to_numpy(dtype=np.float64)
    for action in ACTIONS:
        if action == "ship" or action in WHAT_IF_ACTIONS:
            continue
        eff = np.array([costs.efficacy[action][f] for f in FAMILIES])
        rows = pd.DataFrame(
            {"order_id": ship.index, "action": action, "carrier_id": ship["carrier_id"]}
        ).reset_index(drop=True)
        parts.append(helper._rows(rows, pb * (1 - eff), pb, cost_f, value))
    out = pd.concat(parts, ignore_index=True)
    rank = out["action"].map({a: i for i, a in enumerate(ACTIONS)}).to_numpy()
    order = np.lexsort((out["carrier_id"].astype("str").to_numpy(dtype=str), rank, out["order_id"]))
    return out.iloc[order].reset_index(drop=True)[list(TABLE_COLUMNS)]


def compare_to_truth(model_table: pd.DataFrame, truth_table: pd.DataFrame) -> dict[str, float]:
    """How good the model's recommendations are under the truth, over the orders of both:
    ``agreement`` (share whose recommended action, and carrier, is the truth-best one),
    ``regret_share`` (sum of truth-best saving - true saving of the recommendation, over the
    sum of truth-best savings), their totals and the count. A recommendation the truth cannot
    replay (a carrier the generator has no row for) counts as ``ship``."""
    ids = np.intersect1d(pd.unique(model_table["order_id"]), pd.unique(truth_table["order_id"]))
    m = recommend(model_table[model_table["order_id"].isin(ids)])
    t = recommend(truth_table[truth_table["order_id"].isin(ids)]).set_index("order_id")
    t = t.loc[m["order_id"]]
    key = ["order_id", "action", "carrier_id"]
    truth_saving = truth_table.set_index(key)["saving"]
    table_actions = ~m["recommended_action"].isin(WHAT_IF_ACTIONS)
    own = truth_table[truth_table["action"] == "ship"].set_index("order_id")["carrier_id"]
    carrier = np.where(
        table_actions, own.loc[m["order_id"]].to_numpy(dtype=object), m["recommended_carrier"]
    )
    carrier = np.where(m["recommended_action"] == "ship_ddp", own.loc[m["order_id"]], carrier)
    idx = pd.MultiIndex.from_arrays(
        [m["order_id"].to_numpy(), m["recommended_action"].to_numpy(), carrier.astype(str)]
    )
    got = truth_saving.reindex(idx).fillna(0.0).to_numpy()
    got = np.where(m["recommended_action"].to_numpy() == "ship", 0.0, got)
    best = t["expected_saving"].to_numpy()
    same = (m["recommended_action"].to_numpy() == t["recommended_action"].to_numpy()) & (
        m["recommended_carrier"].fillna("").to_numpy()
        == t["recommended_carrier"].fillna("").to_numpy()
    )
    return {
        "n": float(len(m)),
        "agreement": float(same.mean()) if len(m) else float("nan"),
        "truth_best_saving": float(best.sum()),
        "recommended_true_saving": float(got.sum()),
        "regret_share": float((best - got).sum() / best.sum()) if best.sum() > 0 else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# the hook of ``returnrisk score --actions``

ACTION_COLUMNS = ("recommended_action", "recommended_carrier", "expected_saving", "p_case_if")
ACTIONS_FOR = ("none", "flagged", "all")


def with_actions(
    state: Any,
    raw: Mapping[str, pd.DataFrame],
    result: Any,
    costs: CostModel,
    which: str = "flagged",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``result.results`` with ``ACTION_COLUMNS`` for the flagged (or all scored) orders, and
    their whole action table. ``state``: the ``ScoringState`` that scored ``raw``. The what-if
    builds cover those orders only (see the module's docstring)."""
    from .scoring import validate_new

    if which not in ACTIONS_FOR[1:]:
        raise ValueError(f"actions must be one of {', '.join(ACTIONS_FOR)}, not {which!r}")
    res = result.results
    scored = res["status"] == "scored"
    pick = scored & (res["flagged"].fillna(False).astype(bool) if which == "flagged" else True)
    ids = pd.Index(res.loc[pick, "order_id"].astype("str"))
    v = validate_new(raw, state.history)
    o = v.orders
    as_of = max(state.as_of, o["order_ts"].max()) if len(o) else state.as_of
    keep_o = ids.get_indexer(o["order_id"].astype("str")) >= 0
    keep_l = ids.get_indexer(v.order_lines["order_id"].astype("str")) >= 0
    new = {"orders": o[keep_o], "order_lines": v.order_lines[keep_l]}
    new.update({k: df for k, df in v.static.items() if len(df)})
    out = res.copy()
    if not keep_o.any():
        for c in ACTION_COLUMNS:
            dtype = "str" if c.startswith("recommended_") else "float64"
            out[c] = pd.Series(np.nan, index=out.index, dtype=dtype)
        return out, pd.DataFrame(columns=list(TABLE_COLUMNS))
    decider = Decider.build(state.feature_history, state.risk_model, costs)
    table = decider.action_table(new, as_of=as_of)
    rec = recommend(table).set_index("order_id")
    key = out["order_id"].astype("str")
    for c in ACTION_COLUMNS:
        out[c] = rec[c].reindex(key).to_numpy()
    for c in ("recommended_action", "recommended_carrier"):
        out[c] = out[c].astype("str")
    return out, table
