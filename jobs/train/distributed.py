"""A trial as a Ray Train run over `workers_per_trial` workers: TorchTrainer (DDP) or
XGBoostTrainer, built the same way.

Ray 2.58 runs Train V2, where a Tuner cannot wrap a trainer: the trial function builds the
trainer itself and `TuneReportCallback` forwards rank 0's reports to Tune. The run is named
after the trial, so a trial Tune restarts resumes its Train run from the last checkpoint.
Data reaches the workers as Ray Data shards; the splits are materialised before the workers
start, because workers that wait for data while holding every CPU would starve Ray Data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from jobs.train.arrays import encoded_split
from jobs.train.context import TrialContext

# Each report waits for the controller's poll; Ray's 2 s default dominated small epochs.
HEALTH_CHECK_INTERVAL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


def fit(
    trainer: Callable[..., Any],
    worker_loop: Callable[[dict[str, Any]], None],
    hp: dict[str, Any],
    ctx: TrialContext,
) -> None:
    """Run `worker_loop` on each worker under `trainer` (a Ray Train trainer class)."""
    from ray import tune
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    os.environ.setdefault(*HEALTH_CHECK_INTERVAL)  # propagated to the controller and workers
    datasets = {split: encoded_split(ctx, split).materialize() for split in ("train", "val")}
    resources: dict[str, float] = {"CPU": ctx.cpus_per_worker}
    if ctx.use_gpu:
        resources["GPU"] = 1
    trainer(
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
    ).fit()
