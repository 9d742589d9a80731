"""returnrisk.features: the point-in-time feature table (one row per order).

``build_features(tables, order_ids=None, as_of=None, config=FeatureConfig())`` is the one code path
for training and scoring; ``FEATURE_SPECS`` is the model's feature list.
"""

from .build import FeatureConfig, build_features
from .specs import CONTEXT_COLUMNS, FAMILIES, FEATURE_SPECS, HEAD_COLUMNS, FeatureSpec

__all__ = [
    "CONTEXT_COLUMNS",
    "FAMILIES",
    "FEATURE_SPECS",
    "HEAD_COLUMNS",
    "FeatureConfig",
    "FeatureSpec",
    "build_features",
]
