"""returnrisk.train: model, evaluation, tuning and the MLflow registry.

- ``model``     RiskModel (category casting, LightGBM, calibrator)
- ``evaluate``  metrics, slices, baselines, figures
- ``tune``      Optuna search over time-ordered folds (resumable study)
- ``pyfunc``    the MLflow pyfunc wrapper
- ``registry``  log/register, aliases, load_model, champion/challenger gate, promote, rollback
- ``pipeline``  the ``train`` and ``retrain`` jobs

Nothing is imported here, so ``import returnrisk.train`` stays cheap.
"""
