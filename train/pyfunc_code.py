"""The return-risk pyfunc, "models from code": MLflow runs this file to build the model.

``mlflow.pyfunc.log_model(python_model=<this file>, artifacts={"risk_model": ...})`` copies it
into the model version; ``mlflow.pyfunc.load_model`` runs it (under a module name of its own)
and then calls ``load_context``, which reads that version's pickled RiskModel. Nothing but
MLflow imports this module.
"""

import mlflow.models

from returnrisk.train.pyfunc import RiskModelPyfunc

mlflow.models.set_model(RiskModelPyfunc())
