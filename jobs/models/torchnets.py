"""The torch families: `mlp` (relay's network) and `linear` (logistic / linear regression, the
baseline every team checks first). Both train in `jobs.train`'s loop, one epoch per report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.config import SearchParam
from jobs.models.contract import HyperParameter, checkpoint_file
from jobs.models.usermodule import UserModule
from jobs.train.context import TrialContext

TRAINING = {
    "lr": HyperParameter("float", 3e-3, low=0, low_open=True, help="AdamW learning rate"),
    "weight_decay": HyperParameter("float", 0.0, low=0, help="AdamW weight decay"),
    "batch_size": HyperParameter("int", 512, low=1, help="rows per optimiser step"),
}
NETWORK = {
    "hidden_size": HyperParameter("int", 64, low=1, help="units per hidden layer"),
    "depth": HyperParameter("int", 2, low=1, high=16, help="hidden layers"),
    "dropout": HyperParameter("float", 0.0, low=0, high=0.99, help="dropout after each layer"),
}
RATES = {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2},
    "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
}


@dataclass(frozen=True)
class TorchFamily:
    name: str
    hyperparameters: Mapping[str, HyperParameter]
    space: Mapping[str, dict[str, Any]]
    min_grace_share: float = 0.0  # an epoch is a whole pass: tune.grace_period as given
    library: str = "torch"
    module: UserModule | None = None  # family torch: the user's build

    @property
    def accepts_any_name(self) -> bool:
        return self.module is not None and self.module.takes_any

    def context(self) -> dict[str, Any]:
        return {"network": self.name, "module": self.module.as_context() if self.module else None}

    def default_space(self) -> dict[str, dict[str, Any]]:
        return dict(self.space)

    def iterations(
        self, cfg_epochs: int, defaults: Mapping[str, Any], space: Mapping[str, SearchParam]
    ) -> int:
        return cfg_epochs

    def trainable(self) -> Callable[[dict[str, Any], TrialContext], None]:
        from jobs.train.trial import torch_trial

        return torch_trial

    def export(
        self, checkpoint: str, hp: Mapping[str, Any], ctx: TrialContext
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        from jobs.train.loop import CHECKPOINT_FILE, architecture, read_checkpoint
        from serving.families.torchnet import MODULE, weights_bytes

        state = read_checkpoint(checkpoint_file(checkpoint, CHECKPOINT_FILE))
        files = weights_bytes(state["model"])
        if self.module is not None:
            files[MODULE] = self.module.source.encode()
        return architecture(ctx, dict(hp)), files


MLP = TorchFamily(
    "mlp",
    {**TRAINING, **NETWORK},
    {
        **RATES,
        "hidden_size": {"type": "choice", "values": [32, 64]},
        "depth": {"type": "choice", "values": [1, 2]},
    },
)
LINEAR = TorchFamily("linear", TRAINING, RATES)


def user_family(module: UserModule) -> TorchFamily:
    """family torch: the training hyper-parameters and the user's build's own."""
    return TorchFamily("torch", {**TRAINING, **module.parameters}, RATES, module=module)
