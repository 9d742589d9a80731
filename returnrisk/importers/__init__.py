"""Importers for merchant and public exports, one module per export.

Each importer reads an export, turns it into the contract tables (``returnrisk contract``) and
writes a data directory. Nothing is silently dropped: every input row either becomes part of a
table (an order line, or an after-sales case) or is written to
``DIR/refused/<source>_refused.parquet`` with a ``reason`` column, and the counts per reason are
printed. The transformations are pure functions over DataFrames (``online_retail_tables``,
``superstore_tables``, ...), vectorised, and never mutate their inputs.

- ``common``: errors, the result and its report, countries, reading files (shared).
- ``online_retail``: UCI Online Retail / Online Retail II.
- ``superstore``: Tableau Global Superstore.
- ``shopify``: Shopify admin order export.
- ``amazon``: Amazon Seller Central All Orders and returns reports.
- ``tracking``: carrier tracking events (AfterShip-style) added to an existing directory.

The assumptions each importer makes, and what its export cannot tell, are stated next to the
rules in each module and in docs/importers.md.
"""

from __future__ import annotations

from returnrisk.importers.amazon import (
    AmazonConfig,
    amazon_tables,
    import_amazon,
    read_amazon,
    reason_case_types,
)
from returnrisk.importers.common import (
    ImporterError,
    ImportResult,
    build_countries,
    country_codes,
    customer_keys,
    reference_countries,
)
from returnrisk.importers.online_retail import (
    OnlineRetailConfig,
    import_online_retail,
    online_retail_tables,
    read_online_retail,
)
from returnrisk.importers.shopify import (
    ShopifyConfig,
    import_shopify,
    read_shopify,
    shopify_tables,
)
from returnrisk.importers.superstore import (
    SuperstoreConfig,
    import_superstore,
    read_superstore,
    superstore_tables,
)
from returnrisk.importers.tracking import (
    TrackingConfig,
    import_tracking,
    read_tracking,
    tracking_updates,
)

__all__ = [
    "AmazonConfig",
    "ShopifyConfig",
    "TrackingConfig",
    "amazon_tables",
    "customer_keys",
    "import_amazon",
    "import_shopify",
    "import_tracking",
    "read_amazon",
    "read_shopify",
    "read_tracking",
    "reason_case_types",
    "shopify_tables",
    "tracking_updates",
    "ImportResult",
    "ImporterError",
    "OnlineRetailConfig",
    "SuperstoreConfig",
    "build_countries",
    "country_codes",
    "import_online_retail",
    "import_superstore",
    "online_retail_tables",
    "read_online_retail",
    "read_superstore",
    "reference_countries",
    "superstore_tables",
]
