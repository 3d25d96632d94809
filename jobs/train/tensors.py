"""A torch trial in this process: the splits as tensors on the trial's device, then the shared
loop (`jobs.train.loop`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import torch

from jobs.train.context import TrialContext
from jobs.train.loop import Batch, Executor, loop, quiet_checkpoint_logs
from jobs.train.splits import Arrays

log = logging.getLogger(__name__)


def fit(hp: dict[str, Any], ctx: TrialContext, train: Arrays, val: Arrays, began: float) -> None:
    """Train one trial on `train`, validating on `val`, reporting to Tune."""
    import ray
    from ray import tune

    quiet_checkpoint_logs()
    torch.set_num_threads(ctx.threads)
    device = pick_device(ray.get_gpu_ids())
    data = TensorData(*as_tensors(train, val), batch_size=hp["batch_size"]).to(device)
    executor = Executor(
        report=lambda metrics, folder: tune.report(
            metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None
        ),
        checkpoint=tune.get_checkpoint(),
        reduce=lambda sums: sums,
        wrap=lambda model: model.to(device),
        device=device,
        gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()),
        node_id=ray.get_runtime_context().get_node_id(),
    )
    loop(hp, ctx, data, executor, setup_seconds=time.perf_counter() - began)


class TensorData:
    """Whole splits in memory; each epoch a seeded permutation of the training rows."""

    def __init__(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        batch_size: int,
    ):
        self.x_train, self.y_train = x_train, y_train
        self.x_val, self.y_val = x_val, y_val
        self.batch_size = batch_size

    def to(self, device: torch.device) -> TensorData:
        """The splits resident on the training device: one copy, not one per batch."""
        moved = (t.to(device) for t in (self.x_train, self.y_train, self.x_val, self.y_val))
        return TensorData(*moved, batch_size=self.batch_size)

    def train_batches(self, seed: int) -> Iterator[Batch]:
        # The permutation is drawn on the CPU: the same order whatever the device.
        order = torch.randperm(len(self.x_train), generator=torch.Generator().manual_seed(seed))
        order = order.to(self.x_train.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x_train[index], self.y_train[index]

    def val_batches(self) -> Iterator[Batch]:
        yield self.x_val, self.y_val


def as_tensors(train: Arrays, val: Arrays) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val): a trial's own copy of arrays it maps read-only from the
    object store, else the arrays' memory itself."""
    return tuple(torch.from_numpy(a if a.flags.writeable else a.copy()) for a in (*train, *val))


def pick_device(gpu_ids: list[Any]) -> torch.device:
    """CUDA only when Ray gave this trial a GPU and torch can see one; otherwise the CPU."""
    if gpu_ids and torch.cuda.is_available():
        return torch.device("cuda")
    if gpu_ids:
        log.warning(
            "trial was given GPU %s but torch sees no CUDA device: training on CPU", gpu_ids
        )
    return torch.device("cpu")
