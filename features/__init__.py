"""returnrisk.features: the point-in-time feature table (one row per order).

``build_features(tables, order_ids=None, as_of=None, config=FeatureConfig())`` is the one code path
for training and scoring; ``FEATURE_SPECS`` is the model's feature list. ``prepare_history(tables)``
indexes the history once so that ``build_features(new_rows, history=h)`` scores new orders at a
cost independent of the history's size (same results as on the merged tables).
``returnrisk.features.online.OnlineFeatures(history)`` is the online store the HTTP service reads:
one new order in ~1.5 ms, through the same as-of join and formula functions.

The layers, each importing only the ones above it: ``specs`` (the table's parameters and
columns), ``kernels`` (array kernels and the point-in-time join), ``history`` (the build context
and the prepared history), ``families`` (the feature families and their formulas), ``build``
(the driver) and ``online`` (the online store). The label is ``returnrisk.labels``.
"""

from .build import build_features, prepare_history
from .history import History
from .specs import (
    CONTEXT_COLUMNS,
    FAMILIES,
    FEATURE_SPECS,
    HEAD_COLUMNS,
    FeatureConfig,
    FeatureSpec,
)

__all__ = [
    "CONTEXT_COLUMNS",
    "FAMILIES",
    "FEATURE_SPECS",
    "HEAD_COLUMNS",
    "FeatureConfig",
    "FeatureSpec",
    "History",
    "build_features",
    "prepare_history",
]
