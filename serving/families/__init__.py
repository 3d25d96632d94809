"""Scorers: a model family's weight files as a function from encoded features to outputs.

Every family is fed the same encoded matrix (`serving.features.encode`) and answers in the same
units: class probabilities (n, classes) for classification, the standardised value (n,) for
regression. So `serving.model.Predictor` turns any family's output into an answer the same way,
and nothing above this package asks which family a model is. Modules are named by string and
imported on first use: serving an MLP never imports xgboost, serving trees never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from cluster.errors import ServingError

# family -> the module whose `load(spec, files)` builds its scorer
SCORERS = {
    "mlp": "serving.families.torchnet",
    "linear": "serving.families.torchnet",
    "torch": "serving.families.torchnet",
    "gbdt": "serving.families.trees",
}
LEGACY_FAMILY = "mlp"  # bundles written before families were recorded


class Scorer(Protocol):
    def __call__(self, features: np.ndarray) -> np.ndarray: ...


def family_of(spec: dict[str, Any]) -> str:
    return str(spec.get("family", LEGACY_FAMILY))


def load(spec: dict[str, Any], files: dict[str, bytes]) -> Scorer:
    """The scorer for a verified bundle's spec and weight files."""
    family = family_of(spec)
    if family not in SCORERS:
        raise ServingError(
            f"the model's family {family!r} is not one this relay serves ({sorted(SCORERS)}); "
            "upgrade relay where it serves"
        )
    return importlib.import_module(SCORERS[family]).load(spec, files)
