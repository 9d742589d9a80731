"""The registry's names, in one place (no imports: cheap for the CLI and the service).

``CHAMPION_URI`` is what scoring, the service and the SKU report load by default;
``DEFAULT_TRACKING_URI`` is the store used when neither ``--tracking-uri`` nor
``$MLFLOW_TRACKING_URI`` names one (``mlflow.db`` in the working directory).
"""

MODEL_NAME = "return-risk"
CHAMPION = "champion"
CHALLENGER = "challenger"
CHAMPION_URI = f"models:/{MODEL_NAME}@{CHAMPION}"
CHALLENGER_URI = f"models:/{MODEL_NAME}@{CHALLENGER}"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_NAME = "returnrisk"
