"""Run by MLflow, by path, when it logs or loads a relay model (pyfunc "models from code"):
never imported by relay itself."""

import mlflow.models

from serving.pyfunc import RelayModel

mlflow.models.set_model(RelayModel())
