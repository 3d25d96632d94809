"""Torch families (mlp, linear, user modules): a network rebuilt from the spec, weights from
safetensors (no pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

WEIGHTS = "model.safetensors"


class MLP(nn.Module):
    """A plain multi-layer perceptron; depth 0 is a linear (or logistic) model."""

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


def build_model(architecture: dict[str, Any]) -> nn.Module:
    return MLP(
        n_inputs=int(architecture["n_inputs"]),
        n_outputs=int(architecture["n_outputs"]),
        hidden_size=int(architecture.get("hidden_size", 0)),
        depth=int(architecture.get("depth", 0)),
        dropout=float(architecture.get("dropout", 0.0)),
    )


def weights_bytes(state_dict: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """A state dict as the bundle's weight file."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return {WEIGHTS: save(tensors)}


class TorchScorer:
    def __init__(self, model: nn.Module, classify: bool):
        self.model, self.classify = model.eval(), classify

    def __call__(self, features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.model(torch.from_numpy(features))
        return torch.softmax(out, dim=1).numpy() if self.classify else out[:, 0].numpy()


def load(spec: dict[str, Any], files: dict[str, bytes]) -> TorchScorer:
    from safetensors.torch import load as load_tensors

    model = build_model(spec["architecture"])
    model.load_state_dict(load_tensors(files[WEIGHTS]))
    return TorchScorer(model, spec["task"] == "classification")
