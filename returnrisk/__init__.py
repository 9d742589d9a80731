"""returnrisk: pre-shipment after-sales risk scoring for cross-border e-commerce sellers.

Stages of the data's journey, one sub-package each:

- ``returnrisk.contract``  the merchant's data directory (schemas, loading, validation)
- ``returnrisk.synth`` / ``returnrisk.importers``  writers of that directory
- ``returnrisk.features``  point-in-time feature table (repository folder ``features/``)
- ``returnrisk.train``     model, evaluation, MLflow registry (folder ``train/``)
- ``returnrisk.serve``     scoring policy, reason codes, batch and HTTP (folder ``serve/``)

Importing this package has no side effects.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("returnrisk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
