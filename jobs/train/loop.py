"""The training loop, shared by both ways a torch trial runs (`tensors`, `ddp`).

`workers_per_trial: 1` runs `loop` directly in the Tune trial over in-memory tensors;
more workers run the same `loop` in each TorchTrainer worker over Ray Data shards
(`jobs.train.ddp`). What differs is packed in an `Executor`: how to report, how to sum over
workers, how to wrap the model. Trials never touch MLflow: the driver logs their results
(`jobs.tune.trialruns`), so a trial process imports only torch, pyarrow and Ray.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cluster.seeds import derive_seed
from jobs.train.context import TrialContext
from serving.families.torchnet import build_model
from serving.features import feature_names

CHECKPOINT_FILE = "checkpoint.pt"
TRAINING_KEYS = ("lr", "weight_decay", "batch_size")  # the loop's own; a module gets the rest
log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]


class Data(Protocol):
    def train_batches(self, seed: int) -> Iterable[Batch]: ...
    def val_batches(self) -> Iterable[Batch]: ...


@dataclass
class Executor:
    """What differs between a plain trial and one DDP worker."""

    report: Callable[[dict[str, Any], str | None], None]  # (metrics, checkpoint folder)
    checkpoint: Any  # the Checkpoint to resume from, or None
    reduce: Callable[[torch.Tensor], torch.Tensor]  # sum over all workers
    wrap: Callable[[nn.Module], nn.Module]  # move to the device (and DDP-wrap)
    device: torch.device
    writes_checkpoints: bool = True  # only rank 0 writes under DDP
    gpu_ids: str = ""
    node_id: str = ""


def architecture(ctx: TrialContext, hp: dict[str, Any]) -> dict[str, Any]:
    """The network's shape for the spec: serving rebuilds it from this alone."""
    features = ctx.features
    n_outputs = len(features["label"]["classes"]) if ctx.task == "classification" else 1
    shape = {"type": "mlp", "n_inputs": len(feature_names(features)), "n_outputs": n_outputs}
    if ctx.network == "linear":
        return {**shape, "hidden_size": 0, "depth": 0, "dropout": 0.0}
    if ctx.network == "torch" and ctx.module is not None:
        return {
            **shape,
            "type": "module",
            "module": ctx.module["name"],
            "builder": ctx.module["builder"],
            "module_sha256": hashlib.sha256(ctx.module["source"].encode()).hexdigest(),
            "kwargs": {k: v for k, v in hp.items() if k not in TRAINING_KEYS},
        }
    return {
        **shape,
        "hidden_size": hp["hidden_size"],
        "depth": hp["depth"],
        "dropout": hp["dropout"],
    }


def quiet_checkpoint_logs() -> None:
    """Ray logs a line per persisted checkpoint: one per trial and epoch, to the console."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)


def loop(
    hp: dict[str, Any], ctx: TrialContext, data: Data, ex: Executor, setup_seconds: float
) -> None:
    """Train epochs from the checkpoint (if any); report metrics and a checkpoint per epoch."""
    seed = derive_seed(ctx.seed, "trial", sorted(hp.items()))
    torch.manual_seed(seed)
    model = build_model(architecture(ctx, hp), ctx.module["source"] if ctx.module else None)
    start_epoch, optimizer_state = 0, None
    if ex.checkpoint:
        with ex.checkpoint.as_directory() as folder:
            state = read_checkpoint((Path(folder) / CHECKPOINT_FILE).read_bytes())
        model.load_state_dict(state["model"])
        start_epoch, optimizer_state = int(state["epoch"]), state["optimizer"]
    wrapped = ex.wrap(model)
    optimizer = torch.optim.AdamW(
        wrapped.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"]
    )
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    classify = ctx.task == "classification"
    loss_fn: nn.Module = (
        nn.CrossEntropyLoss(reduction="sum") if classify else nn.MSELoss(reduction="sum")
    )
    busy = setup_seconds  # seconds on data and training: the tune overhead ratio's base
    for epoch in range(start_epoch, ctx.epochs):
        began = time.perf_counter()
        generator_seed = derive_seed(seed, "epoch", epoch)
        train = _train_epoch(wrapped, optimizer, loss_fn, data.train_batches(generator_seed), ex)
        val = _val_epoch(wrapped, loss_fn, data.val_batches(), ex)
        totals = ex.reduce(torch.cat([train, val]).to(ex.device)).cpu().tolist()
        metrics = _metrics(totals, classify)
        seconds = time.perf_counter() - began
        busy += seconds
        result = {
            **metrics,
            "epoch_seconds": seconds,
            "epoch": epoch + 1,
            # the checkpoint's epoch this process began from (0: from scratch), in the trial's
            # own words: the driver records it as where a restarted trial resumed
            "restored_epoch": start_epoch,
            "trial_seconds": busy,
            "device": str(ex.device),
            "gpu_ids": ex.gpu_ids,
            "node_id": ex.node_id,
        }
        with tempfile.TemporaryDirectory() as folder:
            if ex.writes_checkpoints:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save({**state, "epoch": epoch + 1}, os.path.join(folder, CHECKPOINT_FILE))
            ex.report(result, folder if ex.writes_checkpoints else None)


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    batches: Iterable[Batch],
    ex: Executor,
) -> torch.Tensor:
    """[loss sum, rows] over this worker's batches."""
    model.train()
    total, rows = 0.0, 0
    for xb, yb in batches:
        xb, yb = xb.to(ex.device), yb.to(ex.device)
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out if out.shape[1] > 1 else out[:, 0], yb)
        (loss / len(xb)).backward()
        optimizer.step()
        total += float(loss.detach())
        rows += len(xb)
    return torch.tensor([total, rows], dtype=torch.float64)


def _val_epoch(
    model: nn.Module, loss_fn: nn.Module, batches: Iterable[Batch], ex: Executor
) -> torch.Tensor:
    """[loss sum, correct predictions, rows] over this worker's validation rows."""
    model.eval()
    total, correct, rows = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in batches:
            xb, yb = xb.to(ex.device), yb.to(ex.device)
            out = model(xb)
            if out.shape[1] > 1:
                total += float(loss_fn(out, yb))
                correct += float((out.argmax(dim=1) == yb).sum())
            else:
                total += float(loss_fn(out[:, 0], yb))
            rows += len(xb)
    model.train()
    return torch.tensor([total, correct, rows], dtype=torch.float64)


def _metrics(totals: list[float], classify: bool) -> dict[str, float]:
    train_sum, train_rows, val_sum, correct, val_rows = totals
    val_loss = val_sum / max(val_rows, 1)
    metrics = {"train_loss": train_sum / max(train_rows, 1), "val_loss": val_loss}
    if classify:
        metrics["val_accuracy"] = correct / max(val_rows, 1)
    else:
        metrics["val_rmse"] = float(np.sqrt(val_loss))
    return metrics


def read_checkpoint(raw: bytes) -> dict[str, Any]:
    """Tensors land on the CPU whatever device wrote them: the evaluating driver, or a trial
    restarted on another node, may have no GPU. No pickle: weights_only."""
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
