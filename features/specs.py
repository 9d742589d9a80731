"""What the feature table is: its parameters (``FeatureConfig``) and its columns: the model's
feature list (one ``FeatureSpec`` per column, grouped into reason-code families), the head and
the context columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from returnrisk.labels import LABEL_WINDOW_DAYS


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the feature table (parsed once at the command entry)."""

    label_window_days: int = LABEL_WINDOW_DAYS
    prior_strength: float = 20.0  # k in (events + k * prior) / (trials + k)
    default_case_rate: float = 0.10  # prior of a global rate before any history exists
    default_type_rate: float = 0.02  # the same for one case type (not_received, damaged, ...)
    default_transit_days: float = 7.0
    apparel_categories: tuple[str, ...] = (
        "apparel",
        "clothing",
        "fashion",
        "shoes",
        "footwear",
        "lingerie",
        "sportswear",
    )

    def __post_init__(self) -> None:
        if self.label_window_days <= 0:
            raise ValueError(f"label_window_days must be > 0, got {self.label_window_days}")
        if self.prior_strength <= 0:
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength}")


FAMILIES = ("logistics", "duties", "listing", "size_fit", "customer", "product", "price", "order")


@dataclass(frozen=True)
class FeatureSpec:
    """One model feature: its column name, kind, reason-code family and a one-line description."""

    name: str
    kind: Literal["numeric", "categorical"]
    family: str
    description: str


def _specs(*rows: tuple[str, str, str, str]) -> dict[str, FeatureSpec]:
    out: dict[str, FeatureSpec] = {}
    for name, kind, family, description in rows:
        if family not in FAMILIES:
            raise ValueError(f"feature {name}: unknown family {family!r}")
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"feature {name}: unknown kind {kind!r}")
        if name in out:
            raise ValueError(f"feature {name}: defined twice")
        out[name] = FeatureSpec(name, kind, family, description)  # type: ignore[arg-type]
    return out


N, C = "numeric", "categorical"

# Ordered: this is the model's feature list. History features ("prior", "rate") use only data
# known strictly before the order's order_ts (orders at their order_ts, cases at their opened_ts,
# shipments at their delivered_ts). Rates are smoothed: (events + k * prior) / (trials + k).
FEATURE_SPECS: dict[str, FeatureSpec] = _specs(
    # --- order
    ("channel", C, "order", "sales channel the order was placed on"),
    ("payment_method", C, "order", "payment method"),
    ("order_hour", N, "order", "hour of day of order_ts (UTC)"),
    ("order_weekday", N, "order", "day of week of order_ts (0 = Monday)"),
    ("order_month", N, "order", "month of order_ts"),
    ("is_peak_season", N, "order", "1 when ordered between 20 Nov and 24 Dec (peak season)"),
    ("n_lines", N, "order", "number of order lines"),
    ("n_units", N, "order", "total quantity over all lines"),
    ("n_distinct_skus", N, "order", "number of distinct SKUs"),
    ("n_distinct_categories", N, "order", "number of distinct categories"),
    # --- price
    ("order_value", N, "price", "goods value after discounts, before shipping"),
    ("shipping_fee", N, "price", "shipping fee charged (NaN when unknown)"),
    ("discount_share", N, "price", "discount / (order value + discount)"),
    ("max_unit_price", N, "price", "unit price of the most expensive item"),
    ("price_to_list_ratio", N, "price", "value-weighted unit price / list price of the items"),
    # --- listing
    ("main_category", C, "listing", "category of the most valuable item"),
    ("main_brand", C, "listing", "brand of the most valuable item"),
    ("min_n_images", N, "listing", "fewest listing images among the items"),
    ("mean_n_images", N, "listing", "mean number of listing images over the items"),
    (
        "listing_language_match",
        N,
        "listing",
        "value-weighted share of items whose listing is in a language of the destination",
    ),
    # --- size_fit
    ("n_sized_units", N, "size_fit", "units of items that have a size (apparel, shoes)"),
    (
        "size_bracketing",
        N,
        "size_fit",
        "1 when the same product is ordered in two or more sizes",
    ),
    (
        "multi_qty_apparel",
        N,
        "size_fit",
        "1 when one apparel / sized SKU is ordered with quantity > 1",
    ),
    (
        "sized_without_size_chart",
        N,
        "size_fit",
        "share of sized units whose listing has no size chart",
    ),
    (
        "customer_prior_sized_returns",
        N,
        "size_fit",
        "sized items (apparel, shoes) the customer returned or had refunded before",
    ),
    # --- logistics
    ("destination_region", C, "logistics", "region of the destination country"),
    ("carrier_service_level", C, "logistics", "carrier service level (economy/standard/express)"),
    ("carrier_tracked", N, "logistics", "1 when the carrier service is tracked"),
    ("promised_delivery_days", N, "logistics", "delivery days promised to the buyer"),
    ("total_weight_g", N, "logistics", "total weight of the items in grams"),
    ("lane_prior_orders", N, "logistics", "prior orders on this destination x carrier lane"),
    ("lane_case_rate", N, "logistics", "smoothed share of prior lane orders with a case"),
    ("lane_not_received_rate", N, "logistics", "smoothed share of prior lane orders not received"),
    ("lane_damaged_rate", N, "logistics", "smoothed share of prior lane orders damaged"),
    (
        "lane_transit_days",
        N,
        "logistics",
        "mean shipped-to-delivered days of lane shipments delivered before the order (smoothed)",
    ),
    (
        "lane_late_rate",
        N,
        "logistics",
        "smoothed share of delivered lane shipments later than promised",
    ),
    (
        "lane_case_rate_mature",
        N,
        "logistics",
        "smoothed share of the lane's matured orders (placed over 90 days before) with a case",
    ),
    (
        "lane_case_rate_30d",
        N,
        "logistics",
        "lane cases opened in the last 30 days / lane orders placed then (shrunk to lifetime)",
    ),
    (
        "lane_case_rate_90d",
        N,
        "logistics",
        "lane cases opened in the last 90 days / lane orders placed then (shrunk to lifetime)",
    ),
    ("lane_case_trend_30d", N, "logistics", "lane_case_rate_30d - lane_case_rate"),
    (
        "lane_not_received_rate_30d",
        N,
        "logistics",
        "lane not_received cases in the last 30 days / lane orders then (shrunk to lifetime)",
    ),
    (
        "lane_transit_days_30d",
        N,
        "logistics",
        "mean transit days of lane shipments delivered in the last 30 days (shrunk to lifetime)",
    ),
    (
        "lane_late_rate_30d",
        N,
        "logistics",
        "share of lane shipments delivered in the last 30 days later than promised (shrunk)",
    ),
    # --- duties
    ("effective_incoterm", C, "duties", "order's incoterm, else the country's default"),
    ("value_to_de_minimis", N, "duties", "order value / max(de-minimis, 1); NaN when unknown"),
    (
        "duties_due_on_arrival",
        N,
        "duties",
        "1 when DDU and the value is above the de-minimis (buyer pays duties); NaN when unknown",
    ),
    (
        "destination_duty_dispute_rate",
        N,
        "duties",
        "smoothed share of prior orders to the destination with a duty dispute",
    ),
    (
        "destination_duty_dispute_rate_90d",
        N,
        "duties",
        "duty disputes to the destination in the last 90 days / its orders then (shrunk)",
    ),
    # --- customer
    ("customer_segment", C, "customer", "customer segment (b2c/b2b)"),
    (
        "ships_to_customer_country",
        N,
        "customer",
        "1 when the destination is the customer's home country",
    ),
    ("customer_prior_orders", N, "customer", "orders the customer placed before"),
    ("customer_prior_cases", N, "customer", "cases the customer opened before"),
    (
        "customer_case_rate",
        N,
        "customer",
        "smoothed share of the customer's prior orders with a case",
    ),
    ("customer_tenure_days", N, "customer", "days since first seen or first order (0 when new)"),
    (
        "customer_days_since_last_order",
        N,
        "customer",
        "days since the customer's previous order (NaN when none)",
    ),
    (
        "customer_days_since_last_case",
        N,
        "customer",
        "days since the customer's last case opened (NaN when none)",
    ),
    ("customer_prior_returns", N, "customer", "prior cases of type return or refund"),
    ("customer_prior_not_received", N, "customer", "prior cases of type not_received"),
    ("customer_prior_damaged", N, "customer", "prior cases of type damaged"),
    (
        "customer_prior_not_as_described",
        N,
        "customer",
        "prior cases of type not_as_described or wrong_item",
    ),
    ("customer_prior_duty_disputes", N, "customer", "prior cases of type duty_dispute"),
    ("customer_orders_30d", N, "customer", "orders the customer placed in the last 30 days"),
    ("customer_cases_90d", N, "customer", "cases the customer opened in the last 90 days"),
    (
        "customer_case_rate_mature",
        N,
        "customer",
        "smoothed share of the customer's matured orders (placed over 90 days before) with a case",
    ),
    (
        "customer_category_prior_items",
        N,
        "customer",
        "most earlier items the customer bought in one of the order's categories",
    ),
    (
        "customer_category_case_rate_max",
        N,
        "customer",
        "highest case rate of the customer's earlier items in one of the order's categories",
    ),
    (
        "customer_product_prior_items",
        N,
        "customer",
        "most earlier items of one of the order's products the customer bought (repeat purchase)",
    ),
    # --- product
    ("sku_min_prior_orders", N, "product", "fewest prior orders of any SKU in the order"),
    ("sku_prior_units", N, "product", "units of the order's SKUs sold before (sum)"),
    ("sku_prior_cases", N, "product", "prior orders with a case, summed over the order's SKUs"),
    ("sku_case_rate_max", N, "product", "highest SKU case rate (shrunk to its category's)"),
    ("sku_case_rate_mean", N, "product", "value-weighted mean SKU case rate"),
    ("product_case_rate_max", N, "product", "highest product case rate (shrunk to category)"),
    ("product_case_rate_mean", N, "product", "value-weighted mean product case rate"),
    ("category_case_rate_mean", N, "product", "value-weighted mean category case rate"),
    (
        "category_destination_case_rate_max",
        N,
        "product",
        "highest category x destination case rate (shrunk to the category's)",
    ),
    ("supplier_case_rate_max", N, "product", "highest supplier case rate over the items"),
    ("brand_case_rate_max", N, "product", "highest brand case rate over the items"),
    (
        "sku_case_rate_90d_max",
        N,
        "product",
        "highest SKU case rate over the last 90 days (shrunk to the SKU's lifetime rate)",
    ),
    (
        "product_case_rate_30d_max",
        N,
        "product",
        "highest product case rate over the last 30 days (shrunk to its lifetime rate)",
    ),
    (
        "product_case_rate_90d_max",
        N,
        "product",
        "highest product case rate over the last 90 days (shrunk to its lifetime rate)",
    ),
    (
        "product_case_trend_90d_max",
        N,
        "product",
        "highest (90-day - lifetime) product case rate over the items",
    ),
    (
        "supplier_case_rate_90d_max",
        N,
        "product",
        "highest supplier case rate over the last 90 days (shrunk to its lifetime rate)",
    ),
    (
        "category_destination_case_rate_90d_max",
        N,
        "product",
        "highest category x destination case rate over the last 90 days (shrunk to lifetime)",
    ),
    (
        "product_return_rate_max",
        N,
        "product",
        "highest smoothed share of a product's earlier items returned or refunded",
    ),
    (
        "product_not_as_described_rate_max",
        N,
        "product",
        "highest smoothed share of a product's earlier items not as described or wrong",
    ),
    (
        "product_case_rate_mature_max",
        N,
        "product",
        "highest product case rate over its matured items (placed over 90 days before)",
    ),
)
del N, C

# The features computed from the history before the order (counts, rates, windows, tenure): they
# move as the history grows, as cases open and with the season, whatever the orders look like.
# One list, checked by a test (a feature whose value depends on earlier orders, cases or
# shipments is in it); the monitor keeps them out of its drift alerts.
HISTORY_FEATURES: tuple[str, ...] = (
    "lane_prior_orders",
    "lane_case_rate",
    "lane_not_received_rate",
    "lane_damaged_rate",
    "lane_transit_days",
    "lane_late_rate",
    "destination_duty_dispute_rate",
    "customer_prior_orders",
    "customer_prior_cases",
    "customer_case_rate",
    "customer_tenure_days",
    "customer_days_since_last_order",
    "customer_days_since_last_case",
    "customer_prior_returns",
    "customer_prior_not_received",
    "customer_prior_damaged",
    "customer_prior_not_as_described",
    "customer_prior_duty_disputes",
    "sku_min_prior_orders",
    "sku_prior_units",
    "sku_prior_cases",
    "sku_case_rate_max",
    "sku_case_rate_mean",
    "product_case_rate_max",
    "product_case_rate_mean",
    "category_case_rate_mean",
    "category_destination_case_rate_max",
    "lane_case_rate_mature",
    "lane_case_rate_30d",
    "lane_case_rate_90d",
    "lane_case_trend_30d",
    "lane_not_received_rate_30d",
    "lane_transit_days_30d",
    "lane_late_rate_30d",
    "destination_duty_dispute_rate_90d",
    "customer_orders_30d",
    "customer_cases_90d",
    "customer_case_rate_mature",
    "customer_category_prior_items",
    "customer_category_case_rate_max",
    "customer_product_prior_items",
    "customer_prior_sized_returns",
    "supplier_case_rate_max",
    "brand_case_rate_max",
    "sku_case_rate_90d_max",
    "product_case_rate_30d_max",
    "product_case_rate_90d_max",
    "product_case_trend_90d_max",
    "supplier_case_rate_90d_max",
    "category_destination_case_rate_90d_max",
    "product_return_rate_max",
    "product_not_as_described_rate_max",
    "product_case_rate_mature_max",
)
_unknown = sorted(set(HISTORY_FEATURES) - set(FEATURE_SPECS))
if _unknown:
    raise ValueError(f"HISTORY_FEATURES names columns that are not features: {_unknown}")
# the calendar features: they move with the window (hour, weekday, month, season)
CALENDAR_FEATURES = ("order_hour", "order_weekday", "order_month", "is_peak_season")

CATEGORICAL_FEATURES = tuple(n for n, s in FEATURE_SPECS.items() if s.kind == "categorical")
NUMERIC_FEATURES = tuple(n for n, s in FEATURE_SPECS.items() if s.kind == "numeric")

# The first columns of the feature table (identity, label) and the context columns after the
# features: values that reason codes and reports quote. None of them is a model feature.
HEAD_COLUMNS = (
    "order_id",
    "order_ts",
    "customer_id",
    "destination_country",
    "carrier_id",
    "mature",
    "label",
)
CONTEXT_COLUMNS: dict[str, str] = {
    "duty_de_minimis": "destination's duty de-minimis in force at the order's time "
    "(reporting currency)",
    "carrier_name": "name of the carrier service",
    "first_case_ts": "opened_ts of the order's first case known at as_of (label data: never a "
    "feature)",
    "destination_prior_orders": "orders to the destination before this one",
    "lane_prior_not_received": "prior lane orders with a not_received case",
    "lane_prior_damaged": "prior lane orders with a damaged case",
    "top_sku_id": "riskiest SKU of the order (highest SKU case rate, then value)",
    "top_category": "category of top_sku_id",
    "sku_case_rate_top": "case rate of top_sku_id (smoothed)",
    "top_sku_prior_orders": "prior orders of top_sku_id",
    "top_sku_prior_cases": "prior orders of top_sku_id with a case",
}


def describe_features() -> str:
    """The feature list as a Markdown table (for the README and model cards)."""
    rows = ["| feature | kind | family | description |", "|---|---|---|---|"]
    rows += [
        f"| `{s.name}` | {s.kind} | {s.family} | {s.description} |" for s in FEATURE_SPECS.values()
    ]
    return "\n".join(rows)


# the context columns holding text (the other context columns are numbers or timestamps)
STRING_CONTEXT = ("top_sku_id", "top_category", "carrier_name")
