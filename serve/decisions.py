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

    def online_variant_features(
        self, online: Any, new: Any, base: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``variant_features`` of one order (``new``: a ``features.online.OnlineOrder``) from
        the online store ``online`` (``features.online``: ``build_features``' row, bit for bit,
        tested): the order as it is, changed to DDP unless it is DDP already, and switched to
        each other service seen shipping to its country in the history -- each variant the
        order changed, as ``variant_features`` builds it. The variants come from
        ``OnlineFeatures.variants``: the order's own row with only its carrier's and incoterm's
        parts built again, all at once (equal to building each changed order afresh, tested).
        The rows as one mapping of column -> values (``features.online.features_frame`` makes
        it the frame). ``base``: the order's own row when the caller has it
        (``ScoringState.score_one``'s), else built."""
        if base is None:
            base = online.order_features(new)
        changes: list[dict[str, Any]] = []
        actions = ["ship"]
        if base["effective_incoterm"][0] != "DDP":
            changes.append({"incoterm": "DDP"})
            actions.append("ship_ddp")
        dest, own = base["destination_country"][0], base["carrier_id"][0]
        for carrier in self._served().get(dest, ()):  # a handful of services
            if carrier != own:
                changes.append({"carrier_id": carrier})
                actions.append("switch_carrier")
        out = _stack([base, online.variants(new, base, changes)]) if changes else dict(base)
        out["action"] = actions
        out["variant_carrier"] = list(out["carrier_id"])
        return out

    def _served(self) -> dict[str, list[str]]:
        """The carrier services seen shipping to each destination (``lanes``), looked up once
        per decider (not filtered again for each order)."""
        got = self.__dict__.get("_served_by_destination")
        if got is None:
            lanes = self.lanes
            if lanes is None:
                lanes = history_lanes(self.history.tables.orders)
            by = lanes.groupby("destination_country", sort=False)["carrier_id"]
            got = {str(d): [str(c) for c in g] for d, g in by}
            self.__dict__["_served_by_destination"] = got  # a frozen dataclass: a cache
        return got

    def online_action_table(
        self, online: Any, new: Any, base: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``action_table`` of one order from the online store (``online_variant_features``),
        through the same decision rule (``table_of``)."""
        feats = self.online_variant_features(online, new, base)
        value = new.order.get("order_value")
        orders = pd.DataFrame(
            {
                "order_id": np.asarray(feats["order_id"][:1], dtype=object),
                "order_value": [np.nan if value is None else float(value)],
            }
        )
        return self.table_of(orders, feats)

    # -- probabilities ----------------------------------------------------------------------
    def family_proba(self, features: Any) -> np.ndarray:
        """(n, families) P(case) x P(family | case) of feature rows (a frame, or a mapping of
        column -> values as the online store gives them); rows add up to P(case)."""
        rm = self.risk_model
        if isinstance(features, pd.DataFrame):
            p = np.asarray(rm.predict_case(features[list(rm.feature_names_)]), dtype=np.float64)
        else:  # the online rows, as ScoringState.score_one predicts them
            p = np.asarray(rm.predict_matrix(rm.encode(features)[0]), dtype=np.float64)
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
        return self.table_of(orders, self.variant_features(new, as_of=as_of))

    def table_of(self, orders: pd.DataFrame, feats: Any) -> pd.DataFrame:
        """``action_table`` from the variants' feature rows (``variant_features``' frame, or
        ``online_variant_features``' mapping): the one decision rule of both, in arrays (one
        frame at the end)."""
        pf = self.family_proba(feats)
        fid = pd.array(feats["order_id"], dtype="str").to_numpy(dtype=object)
        act = np.asarray(feats["action"], dtype=object)
        car = pd.array(feats["variant_carrier"], dtype="str").to_numpy(dtype=object)
        base_rows = act == "ship"
        ids = fid[base_rows]
        pb = pf[base_rows]
        pf_base = pb[pd.Index(ids).get_indexer(fid)]  # each variant's order as it is
        # the table actions on the order as it is: p_family x (1 - efficacy)
        others = [a for a in ACTIONS if a != "ship" and a not in WHAT_IF_ACTIONS]
        eff = np.array([[self.costs.efficacy[a][f] for f in FAMILIES] for a in others])
        k, n = len(others), len(ids)
        pf_if = np.concatenate([pf, (pb[None, :, :] * (1 - eff[:, None, :])).reshape(k * n, -1)])
        oid = np.concatenate([fid, np.tile(ids, k)])
        action = np.concatenate([act, np.repeat(np.asarray(others, dtype=object), n)])
        carrier = np.concatenate([car, np.tile(car[base_rows], k)])
        pos = pd.Index(orders["order_id"].astype("str")).get_indexer(oid)
        value = orders["order_value"].to_numpy(dtype=np.float64)[pos]
        pf_b = np.concatenate([pf_base, np.tile(pb, (k, 1))])
        cols = {"order_id": oid, "action": action, "carrier_id": carrier}
        cols.update(self._columns(action, pf_if, pf_b, self.costs.family_costs(), value))
        rank = pd.Index(ACTIONS).get_indexer(action)
        by_carrier = np.where(pd.isna(carrier), "", carrier).astype(str)
        order = np.lexsort((by_carrier, rank, pos))
        out = {c: cols[c][order] for c in TABLE_COLUMNS}
        out["carrier_id"] = pd.array(out["carrier_id"], dtype="str")
        return pd.DataFrame(out)

    def _rows(
        self,
        rows: pd.DataFrame,
        pf_if: np.ndarray,
        pf_base: np.ndarray,
        cost_f: np.ndarray,
        value: pd.Series,
    ) -> pd.DataFrame:
        """``rows`` (order_id, action, carrier_id) with ``_columns``; ``value`` by order_id."""
        v = value.to_numpy(dtype=np.float64)[value.index.get_indexer(rows["order_id"])]
        cols: dict[str, Any] = {c: rows[c].to_numpy() for c in rows.columns}
        cols.update(self._columns(rows["action"], pf_if, pf_base, cost_f, v))
        return pd.DataFrame(cols)

    def _columns(
        self,
        action: Any,
        pf_if: np.ndarray,
        pf_base: np.ndarray,
        cost_f: np.ndarray,
        value: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Per row of ``action`` (and its order's ``value``): ``p_case_if``, the families'
        ``_if``, ``action_cost`` and ``saving`` = (p_family - p_family_if) x family cost -
        action cost."""
        act = pd.Index(ACTIONS).get_indexer(action)
        v = np.where(np.isfinite(value), value, 0.0)
        fixed = np.array([self.costs.action_cost[a] for a in ACTIONS])[act]
        share = np.array([self.costs.action_value_share[a] for a in ACTIONS])[act]
        cost = fixed + share * v
        cols: dict[str, np.ndarray] = {"p_case_if": pf_if.sum(axis=1)}
        for j, c in enumerate(FAMILY_COLUMNS):
            cols[f"{c}_if"] = pf_if[:, j]
        cols["action_cost"] = cost
        cols["saving"] = (pf_base - pf_if) @ cost_f - cost
        return cols

    def recommend(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per order (first-seen order of ``table``): ``recommended_action``,
        ``recommended_carrier`` (for ``switch_carrier``), ``expected_saving``, ``p_case`` (as
        it is) and ``p_case_if`` (of the recommendation); ``ship`` and 0 when no saving is
        positive. Ties go to the action listed first (``ACTIONS``), then the carrier."""
        return recommend(table)


def _stack(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``OnlineFeatures.order_features`` rows as one (lists, arrays, time indexes)."""
    out: dict[str, Any] = {}
    for key, first in rows[0].items():
        values = [r[key] for r in rows]
        if isinstance(first, list):
            out[key] = [x for v in values for x in v]
        elif isinstance(first, pd.Index):
            out[key] = first.append(values[1:])
        else:
            out[key] = np.concatenate(values)
    return out


def recommend(table: pd.DataFrame) -> pd.DataFrame:
    """See ``Decider.recommend``; ``table`` is ``Decider.action_table``'s (sorted) output."""
    codes, ids = pd.factorize(table["order_id"].to_numpy(dtype=object))  # first-seen order
    s = table["saving"].to_numpy(dtype=np.float64)
    act = table["action"].to_numpy(dtype=object)
    p_if = table["p_case_if"].to_numpy(dtype=np.float64)
    # the first row with the largest saving of each order (the table is in ACTIONS order)
    order = np.lexsort((np.arange(len(s)), -s, codes))
    first = order[np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]] if len(s) else order
    ship = np.flatnonzero(act == "ship")
    p_case = np.full(len(ids), np.nan)
    p_case[codes[ship]] = p_if[ship]
    positive = s[first] > 0
    carrier = table["carrier_id"].to_numpy(dtype=object)[first]
    keep = positive & (act[first] == "switch_carrier")
    return pd.DataFrame(  # one frame of the columns (not one insert each)
        {
            "order_id": ids,
            "recommended_action": pd.array(np.where(positive, act[first], "ship"), dtype="str"),
            "recommended_carrier": pd.array(np.where(keep, carrier, None), dtype="str"),
            "expected_saving": np.where(positive, s[first], 0.0),
            "p_case": p_case,
            "p_case_if": np.where(positive, p_if[first], p_case),
        }
    )


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
    return compare_recommendations(recommend(model_table[model_table["order_id"].isin(ids)]),
                                   truth_table)  # fmt: skip


def compare_recommendations(
    recommendations: pd.DataFrame, truth_table: pd.DataFrame
) -> dict[str, float]:
    """``compare_to_truth`` of recommendations already made (``recommend``'s ``order_id``,
    ``recommended_action``, ``recommended_carrier``; e.g. the backtest's flagged orders), over
    those the truth has rows for."""
    m = recommendations[recommendations["order_id"].astype("str").isin(truth_table["order_id"])]
    m = m.assign(order_id=m["order_id"].astype("str")).reset_index(drop=True)
    ids = m["order_id"]
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
    *,
    decider: Decider | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``result.results`` with ``ACTION_COLUMNS`` for the flagged (or all scored) orders, and
    their whole action table. ``state``: the ``ScoringState`` that scored ``raw``. The what-if
    builds cover those orders only (see the module's docstring). ``decider``: one built for
    ``state`` with ``costs`` (the service keeps one per state); default: built here."""
    from .scoring import validate_new

    if which not in ACTIONS_FOR[1:]:
        raise ValueError(f"actions must be one of {', '.join(ACTIONS_FOR)}, not {which!r}")
    res = result.results
    scored = res["status"] == "scored"
    pick = scored & (res["flagged"].fillna(False).astype(bool) if which == "flagged" else True)
    ids = pd.Index(res.loc[pick, "order_id"].astype("str"))
    # the rows of those orders only (accepted once already: checking them alone accepts them
    # again), so a batch's few flagged orders are not all checked a second time
    raw = _rows_of(raw, ids)
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
    if decider is None:
        decider = Decider.build(state.feature_history, state.risk_model, costs)
    table = decider.action_table(new, as_of=as_of)
    rec = recommend(table).set_index("order_id")
    key = out["order_id"].astype("str")
    for c in ACTION_COLUMNS:
        out[c] = rec[c].reindex(key).to_numpy()
    for c in ("recommended_action", "recommended_carrier"):
        out[c] = out[c].astype("str")
    return out, table


def _rows_of(raw: Mapping[str, pd.DataFrame], ids: pd.Index) -> dict[str, pd.DataFrame]:
    """``raw`` with the orders and lines of ``ids`` only (the static rows as they are)."""
    from returnrisk.contract import order_keys

    out = dict(raw)
    for name in ("orders", "order_lines"):
        df = raw.get(name)
        if df is not None and "order_id" in df.columns:
            out[name] = df[ids.get_indexer(order_keys(df["order_id"])) >= 0]
    return out


# ---------------------------------------------------------------------------------------------
# the service's answer (``POST /v1/score?actions=...``): the same table, as JSON

NO_ACTION: dict[str, Any] = dict.fromkeys(ACTION_COLUMNS)


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return v.item() if hasattr(v, "item") else v


def table_records(table: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """An action table as JSON records by order (each row's columns but ``order_id``)."""
    cols = [c for c in TABLE_COLUMNS if c != "order_id"]
    ids = table["order_id"].astype("str").tolist()
    out: dict[str, list[dict[str, Any]]] = {}
    for oid, row in zip(ids, table[cols].astype(object).to_dict("records"), strict=True):
        out.setdefault(oid, []).append({k: _json_value(v) for k, v in row.items()})
    return out


def online_action_fields(
    decider: Decider,
    online: Any,
    new: Any,
    flagged: bool,
    which: str,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The action fields of one order of the service's fast path: nothing computed for an
    unflagged order under ``flagged`` (``NO_ACTION``), else its what-if table from the online
    store, through ``recommend`` (and with ``all`` the table itself under ``actions``).
    ``base``: the order's feature row, when the fast path has built it already."""
    if which == "flagged" and not flagged:
        return NO_ACTION
    table = decider.online_action_table(online, new, base)
    rec = recommend(table).iloc[0]
    out = {c: _json_value(rec[c]) for c in ACTION_COLUMNS}
    if which == "all":
        out["actions"] = next(iter(table_records(table).values()))
    return out


def records_with_actions(
    records: list[dict[str, Any]], results: pd.DataFrame, table: pd.DataFrame, which: str
) -> list[dict[str, Any]]:
    """``results_to_records``' records (one per row of ``results``) with the action fields of
    ``with_actions``' results and table, as new records: ``ACTION_COLUMNS`` on every scored
    order (null where none was computed), with ``all`` the order's table under ``actions``."""
    fields = results[list(ACTION_COLUMNS)].astype(object).to_dict("records")
    tables = table_records(table) if which == "all" and len(table) else {}
    out = []
    for rec, f, oid in zip(records, fields, results["order_id"].astype("str"), strict=True):
        if rec["status"] != "scored":
            out.append(rec)
            continue
        extra = {k: _json_value(v) for k, v in f.items()}
        if which == "all":
            extra["actions"] = tables.get(oid, [])
        out.append({**rec, **extra})
    return out
