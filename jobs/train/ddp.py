"""A torch trial as a Ray Train TorchTrainer run (`jobs.train.distributed`): each of the
`workers_per_trial` DDP workers runs the shared loop over its Ray Data shards."""

from __future__ import annotations

from typing import Any

import torch

from jobs.train import distributed
from jobs.train.context import TrialContext
from jobs.train.loop import Executor, loop, quiet_checkpoint_logs


def fit_distributed(hp: dict[str, Any], ctx: TrialContext) -> None:
    """Runs in the Tune trial's process; blocks until the Train run ends."""
    from ray.train.torch import TorchTrainer

    quiet_checkpoint_logs()
    distributed.fit(TorchTrainer, worker_loop, hp, ctx)


class ShardData:
    """This worker's shard of each split, streamed by Ray Data."""

    def __init__(self, batch_size: int):
        import ray.train

        self.train = ray.train.get_dataset_shard("train")
        self.val = ray.train.get_dataset_shard("val")
        self.batch_size = batch_size

    def train_batches(self, seed: int) -> Any:
        for batch in self.train.iter_torch_batches(
            batch_size=self.batch_size,
            local_shuffle_buffer_size=4 * self.batch_size,
            local_shuffle_seed=seed,
        ):
            yield batch["x"], batch["y"]

    def val_batches(self) -> Any:
        for batch in self.val.iter_torch_batches(batch_size=8192):
            yield batch["x"], batch["y"]


def worker_loop(config: dict[str, Any]) -> None:
    """One DDP worker: the shared loop with summed metrics and rank 0 checkpoints."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    quiet_checkpoint_logs()
    hp: dict[str, Any] = config["hp"]
    ctx: TrialContext = config["ctx"]
    torch.set_num_threads(max(1, int(ctx.cpus_per_worker)))
    rank = ray.train.get_context().get_world_rank()

    def reduce(sums: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(sums)
        return sums

    def report(metrics: dict[str, Any], folder: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint)

    executor = Executor(
        report=report,
        checkpoint=ray.train.get_checkpoint(),
        reduce=reduce,
        wrap=ray.train.torch.prepare_model,
        device=ray.train.torch.get_device(),
        writes_checkpoints=rank == 0,
        gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()),
        node_id=ray.get_runtime_context().get_node_id(),
    )
    loop(hp, ctx, ShardData(hp["batch_size"]), executor, setup_seconds=0.0)
