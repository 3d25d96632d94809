"""Gradient-boosted trees (xgboost): the booster from xgboost's own UBJSON file, no pickle."""

from __future__ import annotations

from typing import Any

import numpy as np

BOOSTER = "model.ubj"


class TreeScorer:
    def __init__(self, booster: Any, classify: bool):
        self.booster, self.classify = booster, classify

    def __call__(self, features: np.ndarray) -> np.ndarray:
        out = self.booster.inplace_predict(features)
        if self.classify and out.ndim == 1:  # binary:logistic gives P(second class)
            return np.stack([1.0 - out, out], axis=1).astype(np.float32)
        return out


def load_booster(data: bytes) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    return booster


def load(spec: dict[str, Any], files: dict[str, bytes]) -> TreeScorer:
    return TreeScorer(load_booster(files[BOOSTER]), spec["task"] == "classification")
