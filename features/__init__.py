"""returnrisk.features: the point-in-time feature table (one row per order).

``build_features(tables, order_ids=None, as_of=None, config=FeatureConfig())`` is the one code path
for training and scoring; ``FEATURE_SPECS`` is the model's feature list. ``prepare_history(tables)``
indexes the history once so that ``build_features(new_rows, history=h)`` scores new orders at a
cost independent of the history's size (same results as on the merged tables).
``returnrisk.features.online.OnlineFeatures(history)`` is the online store the HTTP service reads:
one new order in ~1.5 ms, through the same as-of join and formula functions.
"""

from .build import FeatureConfig, History, build_features, order_outcomes, prepare_history
from .specs import CONTEXT_COLUMNS, FAMILIES, FEATURE_SPECS, HEAD_COLUMNS, FeatureSpec

__all__ = [
    "CONTEXT_COLUMNS",
    "FAMILIES",
    "FEATURE_SPECS",
    "HEAD_COLUMNS",
    "FeatureConfig",
    "FeatureSpec",
    "History",
    "build_features",
    "order_outcomes",
    "prepare_history",
]
