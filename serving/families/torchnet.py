"""Torch families (mlp, linear, user modules): a network rebuilt from the spec, weights from
safetensors (no pickle). A user module's source travels in the bundle (`module.py`, covered
by the bundle's sha256) and is run from there: serving needs nothing installed beside relay."""

from __future__ import annotations

import hashlib
import sys
import types
from typing import Any

import numpy as np
import torch
from torch import nn

WEIGHTS = "model.safetensors"
MODULE = "module.py"  # a user module's source, in bundles of family torch


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


def module_from_source(name: str, source: str) -> types.ModuleType:
    """Run a user module's source as module `name` (cached: one copy per process)."""
    key = f"relay_user_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    if key not in sys.modules:
        module = types.ModuleType(key)
        module.__file__ = f"<{name}>"
        exec(compile(source, f"<relay model.module {name}>", "exec"), module.__dict__)
        sys.modules[key] = module
    return sys.modules[key]


def build_model(architecture: dict[str, Any], source: str | None = None) -> nn.Module:
    """The network an architecture describes; a user module's needs its `source`."""
    if architecture["type"] == "module":
        module = module_from_source(architecture["module"], source or "")
        build = getattr(module, architecture["builder"])
        return build(
            int(architecture["n_inputs"]), int(architecture["n_outputs"]), **architecture["kwargs"]
        )
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

    source = files[MODULE].decode() if MODULE in files else None
    model = build_model(spec["architecture"], source)
    model.load_state_dict(load_tensors(files[WEIGHTS]))
    return TorchScorer(model, spec["task"] == "classification")
