"""The training loop: one Tune trial trains one MLP, checkpointing and reporting every epoch.

Runs inside a Ray worker. It logs to MLflow with its own client and explicit run ids, and
can resume from its last checkpoint when Tune restarts it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from cluster.seeds import derive_seed
from cluster.tracking import Tracker
from jobs.rowhash import value_hash
from serving.features import encode, encode_label, feature_names
from serving.model import build_model

CHECKPOINT_FILE = "checkpoint.pt"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its hyper-parameters (small: shipped to each trial)."""

    dataset_path: str
    id_column: str
    features: dict[str, Any]
    task: str
    epochs: int
    seed: int
    defaults: dict[str, Any]
    threads: int
    tracking_uri: str
    experiment_id: str
    tune_run_id: str


def hyperparameters(config: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """The trial's sampled values over the configured defaults, with stable types."""
    merged = {**ctx.defaults, **config}
    for key in ("hidden_size", "depth", "batch_size"):
        merged[key] = int(merged[key])
    for key in ("lr", "weight_decay", "dropout"):
        merged[key] = float(merged[key])
    return merged


def architecture(features: dict[str, Any], task: str, hp: dict[str, Any]) -> dict[str, Any]:
    n_outputs = len(features["label"]["classes"]) if task == "classification" else 1
    return {
        "type": "mlp",
        "n_inputs": len(feature_names(features)),
        "n_outputs": n_outputs,
        "hidden_size": hp["hidden_size"],
        "depth": hp["depth"],
        "dropout": hp["dropout"],
    }


def load_split(ctx: TrialContext, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    table = pq.read_table(Path(ctx.dataset_path) / split)
    # Rows in id-hash order: training sees the same sequence whatever the file layout.
    table = table.take(np.argsort(value_hash(table.column(ctx.id_column)), kind="stable"))
    x = torch.from_numpy(encode(ctx.features, table))
    y = torch.from_numpy(encode_label(ctx.features, table))
    return x, y


def trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable."""
    import ray
    from ray import tune

    torch.set_num_threads(ctx.threads)
    hp = hyperparameters(config, ctx)
    seed = derive_seed(ctx.seed, "trial", sorted(hp.items()))
    torch.manual_seed(seed)
    device = pick_device()
    began = time.perf_counter()
    x_train, y_train = load_split(ctx, "train")
    x_val, y_val = load_split(ctx, "val")
    loaded = time.perf_counter() - began
    model = build_model(architecture(ctx.features, ctx.task, hp)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    loss_fn: nn.Module = nn.CrossEntropyLoss() if ctx.task == "classification" else nn.MSELoss()

    tracker = Tracker(ctx.tracking_uri, ctx.experiment_id)
    start_epoch, run_id = 0, None
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, run_id = int(state["epoch"]), str(state["run_id"])
    name = tune.get_context().get_trial_name()
    if run_id is None:  # a trial restarted before its first checkpoint keeps its run too
        run_id = _existing_trial_run(tracker, ctx.tune_run_id, name)
    if run_id is None:
        run_id = tracker.start(
            name,
            parent=ctx.tune_run_id,
            stage="trial",
            tags={
                "relay.trial_name": name,
                "relay.device": str(device),
                "relay.gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            },
        )
        tracker.log(run_id, params=hp)

    busy = 0.0  # seconds spent on data and training, for the tune overhead ratio
    for epoch in range(start_epoch, ctx.epochs):
        began = time.perf_counter()
        generator = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
        train_loss = _train_epoch(
            model, optimizer, loss_fn, x_train, y_train, hp["batch_size"], generator, device
        )
        metrics = {
            "train_loss": train_loss,
            **evaluate_split(model, loss_fn, x_val, y_val, ctx.task, device),
        }
        busy += time.perf_counter() - began
        tracker.log(run_id, metrics=metrics, step=epoch + 1)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "run_id": run_id,
                },
                os.path.join(folder, CHECKPOINT_FILE),
            )
            tune.report(
                {
                    **metrics,
                    "epoch": epoch + 1,
                    "trial_run_id": run_id,
                    "trial_seconds": busy + loaded,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def _existing_trial_run(tracker: Tracker, tune_run_id: str, name: str) -> str | None:
    found = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{tune_run_id}' and tags.`relay.trial_name` = '{name}'"
        ),
        max_results=1,
    )
    return found[0].info.run_id if found else None


def pick_device() -> torch.device:
    """CUDA only when Ray gave this trial a GPU and torch can see one; otherwise the CPU."""
    import ray

    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    if ray.get_gpu_ids():
        log.warning(
            "trial was given GPU %s but torch sees no CUDA device: training on CPU",
            ray.get_gpu_ids(),
        )
    return torch.device("cpu")


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        xb, yb = x[index].to(device), y[index].to(device)
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out if out.shape[1] > 1 else out[:, 0], yb)
        loss.backward()
        optimizer.step()
        total += float(loss) * len(index)
    return total / max(len(x), 1)


def evaluate_split(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    device: torch.device,
) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = model(x.to(device)).cpu()
    model.train()
    if task == "classification":
        return {
            "val_loss": float(loss_fn(out, y)),
            "val_accuracy": float((out.argmax(dim=1) == y).float().mean()),
        }
    pred = out[:, 0]
    mse = float(loss_fn(pred, y))
    return {"val_loss": mse, "val_rmse": float(np.sqrt(mse))}
