"""The gbdt trial: XGBoost boosting rounds as Tune iterations, one process or a Ray Train
XGBoostTrainer over `workers_per_trial` workers.

Each report carries the best round's metrics so far (what early stopping keeps), and every 5%
of the rounds (and at the end) the checkpoint holds exactly that model: the booster cut to its
best round, in XGBoost's UBJSON, with the round it was written at. A trial that
Tune restarts boosts on from the checkpointed model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from cluster.seeds import derive_seed
from jobs.train import distributed
from jobs.train.context import TrialContext
from jobs.train.splits import Arrays
from serving.families.trees import BOOSTER, load_booster
from serving.features import feature_names

STATE = "state.json"
CHECKPOINTS_PER_TRIAL = 20
REPORT_SECONDS = 0.5
log = logging.getLogger(__name__)
LIBRARY_PARAMS = (
    "learning_rate",
    "max_depth",
    "min_child_weight",
    "subsample",
    "colsample_bytree",
    "reg_lambda",
)


def objective(ctx: TrialContext) -> dict[str, Any]:
    """The loss and metrics for the task; val_loss means what it means for the torch families
    (mean log loss, or the mean squared error of the standardised label). The loss is the last
    metric: xgboost's own early stopping watches the last, so these parameters in a plain
    `xgboost.train` stop on the loss, as relay's trials do."""
    if ctx.task == "regression":
        return {"objective": "reg:squarederror", "eval_metric": ["rmse"]}
    classes = len(ctx.features["label"]["classes"])
    if classes == 2:
        return {"objective": "binary:logistic", "eval_metric": ["error", "logloss"]}
    return {
        "objective": "multi:softprob",
        "num_class": classes,
        "eval_metric": ["merror", "mlogloss"],
    }


def params(hp: dict[str, Any], ctx: TrialContext, device: str, threads: int) -> dict[str, Any]:
    return {
        **{k: hp[k] for k in LIBRARY_PARAMS},
        **objective(ctx),
        "tree_method": "hist",
        "device": device,
        "nthread": threads,
        "seed": derive_seed(ctx.seed, "trial", sorted(hp.items())) % 2**31,
    }


def metrics_of(evals_log: dict[str, dict[str, list[float]]], ctx: TrialContext, at: int) -> dict:
    """The validation metrics of round `at` (0-based in this log)."""
    values = {name: series[at] for name, series in evals_log["val"].items()}
    if ctx.task == "regression":
        return {"val_loss": values["rmse"] ** 2, "val_rmse": values["rmse"]}
    loss, error = ("logloss", "error") if "logloss" in values else ("mlogloss", "merror")
    return {"val_loss": values[loss], "val_accuracy": 1.0 - values[error]}


def pick_device(gpu_ids: list[Any]) -> str:
    """cuda only when Ray gave this trial a GPU and this xgboost build has CUDA."""
    if gpu_ids and xgb.build_info().get("USE_CUDA"):
        return "cuda"
    if gpu_ids:
        log.warning("trial was given GPU %s but this xgboost has no CUDA: training on CPU", gpu_ids)
    return "cpu"


def describe(booster_bytes: bytes, ctx: TrialContext) -> dict[str, Any]:
    """The architecture the spec records for a booster."""
    booster = load_booster(booster_bytes)
    return {
        "type": "xgboost",
        "objective": objective(ctx)["objective"],
        "n_features": len(feature_names(ctx.features)),
        "rounds": booster.num_boosted_rounds(),
    }


def restore(checkpoint: Any) -> tuple[Any, dict[str, Any]]:
    """(booster, state) from a checkpoint, or (None, a fresh state)."""
    if not checkpoint:
        return None, {"round": 0, "best_round": 0, "best": {}}
    with checkpoint.as_directory() as folder:
        booster = load_booster((Path(folder) / BOOSTER).read_bytes())
        state = json.loads((Path(folder) / STATE).read_text())
    return booster, state


class Reporter(xgb.callback.TrainingCallback):
    """Report each round, keep the best, checkpoint it, stop early."""

    def __init__(
        self,
        hp: dict[str, Any],
        ctx: TrialContext,
        state: dict[str, Any],
        report: Callable[[dict[str, Any], str | None], None],
        extra: dict[str, Any],
        writes_checkpoints: bool = True,
        sparse: bool = False,
    ):
        super().__init__()
        self.ctx, self.report, self.extra = ctx, report, extra
        self.start = state["best_round"]  # the checkpointed booster has this many rounds
        self.best_round, self.best = state["best_round"], state["best"]
        self.total, self.patience = hp["num_boost_round"], hp["early_stopping_rounds"]
        self.every = max(1, self.total // CHECKPOINTS_PER_TRIAL)
        self.saved_round = self.start
        self.writes = writes_checkpoints
        # A report costs more than a round on small data (Tune's hand-off; under Ray Train a
        # wait for the controller's poll, 0.25 s): a plain trial reports a round when
        # REPORT_SECONDS have passed since its last report, a multi-worker one (whose workers
        # must report at the same rounds) with its checkpoints; both with the last round.
        # Each report carries its round, ASHA's time unit, so rungs still count rounds.
        self.sparse = sparse
        self.last = self.reported = time.perf_counter()
        self.busy = extra.pop("setup_seconds", 0.0)

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        round_ = self.start + epoch + 1
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.busy += seconds
        current = metrics_of(evals_log, self.ctx, epoch)
        if not self.best or current["val_loss"] < self.best["val_loss"]:
            self.best_round, self.best = round_, current
        stop = bool(self.patience) and round_ - self.best_round >= self.patience
        last = stop or round_ >= self.total
        due = round_ - self.saved_round >= self.every and (
            self.sparse or self.best_round > self.saved_round
        )
        result = {
            **self.best,
            "epoch": round_,
            "epochs_total": self.total,
            "best_round": self.best_round,
            "restored_epoch": self.start,
            "epoch_seconds": seconds,
            "trial_seconds": self.busy,
            **self.extra,
        }
        if due or last:
            self.saved_round = round_
            with tempfile.TemporaryDirectory() as folder:
                if self.writes:
                    model[: self.best_round].save_model(os.path.join(folder, BOOSTER))
                    state = {"round": round_, "best_round": self.best_round, "best": self.best}
                    Path(folder, STATE).write_text(json.dumps(state))
                self.report(result, folder if self.writes else None)
            self.reported = now
        elif not self.sparse and now - self.reported >= REPORT_SECONDS:
            self.report(result, None)
            self.reported = now
        return stop


def fit_distributed(hp: dict[str, Any], ctx: TrialContext) -> None:
    """An XGBoostTrainer over `workers_per_trial` workers (`worker_loop`)."""
    from ray.train.xgboost import XGBoostTrainer

    distributed.fit(XGBoostTrainer, worker_loop, hp, ctx)


def fit(hp: dict[str, Any], ctx: TrialContext, train: Arrays, val: Arrays, began: float) -> None:
    """Boost one trial in this process on `train`, stopping early on `val`, reporting to Tune."""
    import ray
    from ray import tune

    device = pick_device(ray.get_gpu_ids())
    train_matrix = xgb.DMatrix(train[0], label=train[1], nthread=ctx.threads)
    val_matrix = xgb.DMatrix(val[0], label=val[1], nthread=ctx.threads)
    booster, state = restore(tune.get_checkpoint())

    def report(metrics: dict[str, Any], folder: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)

    extra = {
        "device": device,
        "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
        "node_id": ray.get_runtime_context().get_node_id(),
        "setup_seconds": time.perf_counter() - began,
    }
    reporter = Reporter(hp, ctx, state, report, extra)
    boost(hp, ctx, train_matrix, val_matrix, booster, state, reporter, device)


def boost(
    hp: dict[str, Any],
    ctx: TrialContext,
    train: Any,
    val: Any,
    booster: Any,
    state: dict[str, Any],
    reporter: Reporter,
    device: str,
    threads: int | None = None,
) -> None:
    remaining = hp["num_boost_round"] - state["best_round"]
    if remaining <= 0:
        return
    xgb.train(
        params(hp, ctx, device, threads or ctx.threads),
        train,
        num_boost_round=remaining,
        # the validation split only: scoring the training rows every round cost a third of
        # the boosting time on 1M rows (benchmarks/gbdt.py), for a train_loss nothing decides on
        evals=[(val, "val")],
        xgb_model=booster,
        callbacks=[reporter],
        verbose_eval=False,
    )


def shard_matrix(name: str, threads: int) -> Any:
    """This worker's shard of a split as a DMatrix (xgboost joins the workers' shards)."""
    import ray.train

    parts = list(ray.train.get_dataset_shard(name).iter_batches(batch_format="numpy"))
    x = np.concatenate([p["x"] for p in parts]) if parts else np.empty((0, 0), np.float32)
    y = np.concatenate([p["y"] for p in parts]) if parts else np.empty(0, np.float32)
    return xgb.DMatrix(x, label=y, nthread=threads)


def worker_loop(config: dict[str, Any]) -> None:
    """One XGBoostTrainer worker: Ray has joined the workers into xgboost's collective, so
    histograms and metrics are summed over all shards; rank 0 writes the checkpoints."""
    import ray
    import ray.train

    hp: dict[str, Any] = config["hp"]
    ctx: TrialContext = config["ctx"]
    threads = max(1, int(ctx.cpus_per_worker))
    device = pick_device(ray.get_gpu_ids())
    train, val = shard_matrix("train", threads), shard_matrix("val", threads)
    booster, state = restore(ray.train.get_checkpoint())

    def report(metrics: dict[str, Any], folder: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint)

    extra = {
        "device": device,
        "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    rank = ray.train.get_context().get_world_rank()
    reporter = Reporter(hp, ctx, state, report, extra, writes_checkpoints=rank == 0, sparse=True)
    boost(hp, ctx, train, val, booster, state, reporter, device, threads)
