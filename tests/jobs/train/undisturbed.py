"""A trial's training rerun here, start to end, with nothing killed: what a restored trial matches.

Training is deterministic on the CPU (one thread, seeded data order and weights, no dropout by
default), so a trial restored from its checkpoint reports the same losses as this, epoch for
epoch. One restarted from scratch or given only the epoch counter back would not (its losses
after the restart come from other weights and optimizer state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from jobs.models.torchnets import MLP
from jobs.train.context import TrialContext, hyperparameters
from jobs.train.loop import Executor, loop
from jobs.train.splits import read
from jobs.train.tensors import TensorData, as_tensors


def undisturbed(
    dataset_path: str, params: dict[str, str], epochs: int, seed: int
) -> list[dict[str, Any]]:
    """Per-epoch results of the trial with these MLflow params (the defaults and its sampled
    values), trained in this process on one thread as a 1-CPU trial is."""
    meta = json.loads((Path(dataset_path) / "dataset.json").read_text())
    ctx = TrialContext(
        dataset_path=dataset_path,
        id_column=meta["id_column"],
        features=meta["features"],
        task="classification",
        epochs=epochs,
        seed=seed,
        defaults={},
        threads=1,
        kinds={k: hp.kind for k, hp in MLP.hyperparameters.items()},  # MLflow params are text
    )
    hp = hyperparameters(params, ctx)
    results: list[dict[str, Any]] = []
    executor = Executor(
        report=lambda metrics, folder: results.append(metrics),
        checkpoint=None,
        reduce=lambda sums: sums,
        wrap=lambda model: model,
        device=torch.device("cpu"),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(ctx.threads)
    try:
        data = TensorData(*as_tensors(*read(ctx)), batch_size=hp["batch_size"])
        loop(hp, ctx, data, executor, setup_seconds=0.0)
    finally:
        torch.set_num_threads(threads)
    return results
