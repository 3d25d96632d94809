"""What a trial needs besides its hyper-parameters: small, shipped to every trial, and free of
torch, so families that do not train in torch never import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its hyper-parameters (small: shipped to each trial)."""

    dataset_path: str
    id_column: str | None  # None: the dataset has no id column
    features: dict[str, Any]
    task: str
    epochs: int
    seed: int
    defaults: dict[str, Any]
    threads: int
    workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    storage_path: str = ""  # where DDP trials keep their Ray Train runs
    run_name: str = ""  # prefix of those runs' names (unique per tune run)
    network: str = "mlp"  # the torch family: mlp, linear (no hidden layer), torch (module)
    module: dict[str, str] | None = None  # family torch: the user module's name, builder, source
    kinds: dict[str, str] = field(default_factory=dict)  # hyper-parameter -> int | float | str
    splits: Any = None  # an ObjectRef to the search's (train, val) arrays (`jobs.train.splits`)


def hyperparameters(config: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """The trial's sampled values over the configured defaults, as their declared types
    (a uniform sample of an integer parameter is rounded)."""
    cast = {"int": lambda v: round(float(v)), "float": float, "str": str}
    merged = {**ctx.defaults, **config}
    return {k: cast[ctx.kinds[k]](v) if k in ctx.kinds else v for k, v in merged.items()}
