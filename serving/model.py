"""The predictor: raw records (or an Arrow table) to answers, for a model of any family."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from serving import families
from serving.features import encode, encode_records


class Predictor:
    """Turns raw records (or an Arrow table) into predictions, exactly as served."""

    def __init__(self, spec: dict[str, Any], files: dict[str, bytes]):
        self.spec = spec
        self.score = families.load(spec, files)

    def predict_table(self, table: pa.Table) -> np.ndarray:
        """Probabilities (n, classes) for classification, values (n,) for regression."""
        return self._predict(encode(self.spec["features"], table))

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The serving path: validated request records, no Arrow table on the way."""
        return self.format(self._predict(encode_records(self.spec["features"], records)))

    def _predict(self, features: np.ndarray) -> np.ndarray:
        out = self.score(features)
        if self.spec["task"] == "classification":
            return out
        label = self.spec["features"]["label"]
        return out * label["std"] + label["mean"]

    def format(self, output: np.ndarray) -> list[dict[str, Any]]:
        if self.spec["task"] == "classification":
            classes = self.spec["features"]["label"]["classes"]
            return [
                {
                    "prediction": classes[int(np.argmax(row))],
                    "probabilities": {c: float(p) for c, p in zip(classes, row, strict=True)},
                }
                for row in output
            ]
        return [{"prediction": float(v)} for v in output]
