"""The torch model and the predictor built from a bundle's spec and weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from serving.features import encode, encode_records


class MLP(nn.Module):
    """A plain multi-layer perceptron; its shape is fully described by the spec."""

    def __init__(
        self, n_inputs: int, n_outputs: int, hidden_size: int, depth: int, dropout: float = 0.0
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for _ in range(depth):
            layers += [nn.Linear(width, hidden_size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden_size
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(architecture: dict[str, Any]) -> MLP:
    return MLP(
        n_inputs=int(architecture["n_inputs"]),
        n_outputs=int(architecture["n_outputs"]),
        hidden_size=int(architecture["hidden_size"]),
        depth=int(architecture["depth"]),
        dropout=float(architecture.get("dropout", 0.0)),
    )


class Predictor:
    """Turns raw records (or an Arrow table) into predictions, exactly as served."""

    def __init__(self, spec: dict[str, Any], state_dict: dict[str, torch.Tensor]):
        self.spec = spec
        self.model = build_model(spec["architecture"])
        self.model.load_state_dict(state_dict)
        self.model.eval()

    def predict_table(self, table: pa.Table) -> np.ndarray:
        """Probabilities (n, classes) for classification, values (n,) for regression."""
        return self._predict(encode(self.spec["features"], table))

    def predict_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The serving path: validated request records, no Arrow table on the way."""
        return self.format(self._predict(encode_records(self.spec["features"], records)))

    def _predict(self, features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.model(torch.from_numpy(features))
        if self.spec["task"] == "classification":
            return torch.softmax(out, dim=1).numpy()
        label = self.spec["features"]["label"]
        return out[:, 0].numpy() * label["std"] + label["mean"]

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
