"""A trial as a Ray Train TorchTrainer run: `workers_per_trial` DDP workers, one loop.

Ray 2.58 runs Train V2, where a Tuner cannot wrap a trainer: the trial function builds the
trainer itself and `TuneReportCallback` forwards rank 0's reports to Tune. The run is named
after the trial, so a trial Tune restarts resumes its Train run from the last checkpoint.
Data reaches the workers as Ray Data shards; the splits are materialised before the workers
start, because workers that wait for data while holding every CPU would starve Ray Data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jobs.train.loop import Executor, TrialContext, loop, quiet_checkpoint_logs

# Each report waits for the controller's poll; Ray's 2 s default dominated small epochs.
HEALTH_CHECK_INTERVAL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


def fit_distributed(hp: dict[str, Any], ctx: TrialContext) -> None:
    """Runs in the Tune trial's process; blocks until the Train run ends."""
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    os.environ.setdefault(*HEALTH_CHECK_INTERVAL)  # propagated to the controller and workers
    datasets = {split: encoded_split(ctx, split).materialize() for split in ("train", "val")}
    resources: dict[str, float] = {"CPU": ctx.cpus_per_worker}
    if ctx.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"hp": hp, "ctx": ctx},
        scaling_config=ScalingConfig(
            num_workers=ctx.workers, use_gpu=ctx.use_gpu, resources_per_worker=resources
        ),
        datasets=datasets,
        run_config=RunConfig(
            name=f"{ctx.run_name}-{tune.get_context().get_trial_id()}",
            storage_path=ctx.storage_path,
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def encoded_split(ctx: TrialContext, split: str) -> Any:
    """The split as a Ray Dataset of {x: float32[n_features], y: label}, encoded like serving."""
    import ray

    from serving.features import encode, encode_label

    def to_tensors(table: Any) -> dict[str, Any]:
        return {"x": encode(ctx.features, table), "y": encode_label(ctx.features, table)}

    return ray.data.read_parquet(str(Path(ctx.dataset_path) / split)).map_batches(
        to_tensors, batch_format="pyarrow"
    )


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
