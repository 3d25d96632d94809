"""Hyper-parameter search: Ray Tune (ASHA by default) over the training loop in `jobs.train`.

Each trial is a plain function trainable with `train.cpus_per_trial` CPUs (and one GPU when
the cluster has one and `train.use_gpu` allows), so on 2 CPUs two trials run at once.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig, SearchParam
from cluster.errors import ConfigError
from cluster.runtime import RayInfo
from cluster.tracking import Tracker
from jobs import plots
from jobs.etl import Dataset
from jobs.progress import StageRuns
from jobs.train import TrialContext, hyperparameters, trial


@dataclass
class TuneOutcome:
    """The winning trial, as evaluate and register need it."""

    run_id: str
    best_run_id: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    checkpoint_path: str
    trials: int
    wall_seconds: float = 0.0
    overhead_ratio: float = 0.0  # wall time / (training time spread over the trial slots)


def search_space(params: dict[str, SearchParam]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for name, p in params.items():
        if p.type == "choice":
            space[name] = tune.choice(p.values)
        elif p.type == "grid":
            space[name] = tune.grid_search(p.values)
        elif p.type == "uniform":
            space[name] = tune.uniform(p.low, p.high)
        elif p.type == "loguniform":
            space[name] = tune.loguniform(p.low, p.high)
        else:
            space[name] = tune.randint(int(p.low), int(p.high))
    return space


def use_gpu(cfg: RelayConfig, info: RayInfo) -> bool:
    """auto: a GPU per trial exactly when the cluster has one; true without GPUs would hang."""
    if cfg.train.use_gpu == "true" and info.num_gpus < 1:
        raise ConfigError(
            "train.use_gpu is true but the Ray cluster has no GPU: trials would wait forever; "
            "use auto (or false), or connect to a cluster with GPU nodes"
        )
    return cfg.train.use_gpu == "true" or (cfg.train.use_gpu == "auto" and info.num_gpus >= 1)


def run(cfg: RelayConfig, runs: StageRuns, dataset: Dataset, info: RayInfo) -> TuneOutcome:
    """Search; an interrupted search (same tune run, its Tune folder on disk) is restored."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    tracker = runs.tracker
    with runs.open("tune") as run_id:
        defaults = cfg.train.model_dump(
            include={"lr", "hidden_size", "depth", "weight_decay", "batch_size", "dropout"}
        )
        ctx = TrialContext(
            dataset_path=str(dataset.path),
            id_column=dataset.meta["id_column"],
            features=dataset.meta["features"],
            task=cfg.model.task,
            epochs=cfg.train.epochs,
            seed=cfg.seed,
            defaults=defaults,
            threads=max(1, int(cfg.train.cpus_per_trial)),
            tracking_uri=tracker.uri,
            experiment_id=tracker.experiment_id,
            tune_run_id=run_id,
        )
        gpu = use_gpu(cfg, info)
        tracker.log(
            run_id,
            params={
                "num_samples": cfg.tune.num_samples,
                "scheduler": cfg.tune.scheduler,
                "metric": cfg.tune.metric,
                "mode": cfg.tune.mode,
                "epochs": cfg.train.epochs,
                "max_concurrent_trials": cfg.tune.max_concurrent_trials,
                "use_gpu": gpu,
                "search_space": {
                    k: v.model_dump(exclude_none=True) for k, v in cfg.tune.search_space.items()
                },
                "dataset_digest": dataset.digest,
            },
        )
        scheduler = (
            ASHAScheduler(
                time_attr="training_iteration",
                max_t=cfg.train.epochs,
                grace_period=min(cfg.tune.grace_period, cfg.train.epochs),
                reduction_factor=cfg.tune.reduction_factor,
            )
            if cfg.tune.scheduler == "asha"
            else FIFOScheduler()
        )
        trainable = tune.with_resources(
            tune.with_parameters(trial, ctx=ctx),
            {"cpu": cfg.train.cpus_per_trial, "gpu": 1 if gpu else 0},
        )
        storage = Path(cfg.runtime.state_dir).resolve() / "tune"
        name = f"{cfg.name}-{run_id[:12]}"  # unique per tune run: a reused name resumes
        if tune.Tuner.can_restore(str(storage / name)):
            tuner = tune.Tuner.restore(
                str(storage / name), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = _new_tuner(cfg, trainable, scheduler, name, storage)
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # Tune's tables; stdout is for results
            grid = tuner.fit()
        slots = min(
            cfg.tune.max_concurrent_trials,
            max(1.0, info.resources.get("CPU", 1.0) // cfg.train.cpus_per_trial),
        )
        outcome = _record(tracker, run_id, grid, cfg, ctx, time.perf_counter() - started, slots)
    return outcome


def _new_tuner(cfg: RelayConfig, trainable: Any, scheduler: Any, name: str, storage: Path) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return tune.Tuner(
        trainable,
        param_space=search_space(cfg.tune.search_space),
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric,
            mode=cfg.tune.mode,
            num_samples=cfg.tune.num_samples,
            max_concurrent_trials=cfg.tune.max_concurrent_trials,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=cfg.seed),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )


def _record(
    tracker: Tracker,
    run_id: str,
    grid: Any,
    cfg: RelayConfig,
    ctx: TrialContext,
    wall: float,
    slots: float,
) -> TuneOutcome:
    """Close every trial run with its final status, tag the best, summarise on the tune run."""
    if grid.num_errors == len(grid) or not len(grid):
        errors = "; ".join(str(r.error).splitlines()[0] for r in grid if r.error)
        raise RuntimeError(f"every trial failed: {errors}")
    best = grid.get_best_result(metric=cfg.tune.metric, mode=cfg.tune.mode)
    best_run = best.metrics["trial_run_id"]
    for result in grid:
        trial_run = (result.metrics or {}).get("trial_run_id")
        if not trial_run:
            continue
        epochs = int(result.metrics.get("epoch", 0))
        status = (
            "failed"
            if result.error
            else "completed"
            if epochs >= cfg.train.epochs
            else "early_stopped"
        )
        tags = {"relay.trial_status": status, "relay.epochs_run": epochs}
        if trial_run == best_run:
            tags["relay.best_trial"] = "true"
        tracker.log(trial_run, tags=tags)
        tracker.client.set_terminated(trial_run, "FAILED" if result.error else "FINISHED")
    metrics = {
        k: float(v)
        for k, v in best.metrics.items()
        if k.startswith(("val_", "train_")) and isinstance(v, int | float)
    }
    hp = hyperparameters(best.config, ctx)
    trained = sum(float((r.metrics or {}).get("trial_seconds", 0.0)) for r in grid)
    tracker.log(
        run_id,
        metrics={
            **{f"best_{k}": v for k, v in metrics.items()},
            "trial_seconds_total": trained,
            "wall_seconds": wall,
            # wall time over the ideal: all training time spread over the trial slots
            "overhead_ratio": wall / max(trained / slots, 1e-9),  # 1.0 would be no overhead
        },
        tags={
            "relay.best_trial_run_id": best_run,
            "relay.best_hyperparameters": hp,
            "relay.trials": len(grid),
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        runs = [r.metrics["trial_run_id"] for r in grid if (r.metrics or {}).get("trial_run_id")]
        histories = plots.histories_from(tracker.client, runs, cfg.tune.metric)
        png = plots.learning_curves(
            histories, best_run, cfg.tune.metric, Path(folder) / "learning_curves.png"
        )
        tracker.client.log_artifact(run_id, str(png))
    return TuneOutcome(
        run_id=run_id,
        best_run_id=best_run,
        hyperparameters=hp,
        metrics=metrics,
        checkpoint_path=best.checkpoint.path,
        trials=len(grid),
        wall_seconds=wall,
        overhead_ratio=wall / max(trained / slots, 1e-9),
    )


def main(argv: list[str] | None = None) -> None:
    from jobs.pipeline import stage_main

    stage_main("tune", argv)


if __name__ == "__main__":
    main()
