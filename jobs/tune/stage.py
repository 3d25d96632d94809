"""Hyper-parameter search: Ray Tune (ASHA by default) over the training trial in `jobs.train`.

With one worker per trial each trial is a plain function trainable holding
`train.cpus_per_trial` CPUs (and a GPU when the cluster has one and `train.use_gpu` allows),
so on 2 CPUs two trials run at once, re-using their actors. With more workers each trial
drives a TorchTrainer (`jobs.train.ddp`) whose workers hold the CPUs and GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.compute.runtime import RayInfo
from cluster.config import RelayConfig, SearchParam
from cluster.errors import ConfigError, TrainingFailedError
from cluster.tracking.tracker import NOTE_TAG, Tracker
from jobs.artifacts import Dataset, TuneOutcome
from jobs.metrics import plots
from jobs.models import families
from jobs.progress import StageRuns
from jobs.train import splits
from jobs.train.context import TrialContext, hyperparameters

if TYPE_CHECKING:
    from jobs.tune.trialruns import TrialRuns

# A DDP trial's own process only waits on its TorchTrainer; Tune refuses an empty request.
DDP_DRIVER_RESOURCES = {"CPU": 0, "memory": 1024}


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


def planned_trials(cfg: RelayConfig, params: dict[str, SearchParam]) -> int:
    """Trials the search will run: num_samples for each point of its grid axes."""
    grid = [len(p.values or []) for p in params.values() if p.type == "grid"]
    return cfg.tune.num_samples * math.prod(grid)


def use_gpu(cfg: RelayConfig, info: RayInfo) -> bool:
    """auto: a GPU per trial exactly when the cluster has one; true without GPUs would hang."""
    if cfg.train.use_gpu == "true" and info.num_gpus < 1:
        raise ConfigError(
            "train.use_gpu is true but the Ray cluster has no GPU: trials would wait forever; "
            "use auto (or false), or connect to a cluster with GPU nodes"
        )
    return cfg.train.use_gpu == "true" or (cfg.train.use_gpu == "auto" and info.num_gpus >= 1)


def trial_resources(cfg: RelayConfig, info: RayInfo, gpu: bool) -> dict[str, float]:
    """What one trial's process asks Tune for; refuses requests that could never be placed."""
    workers = cfg.train.workers_per_trial
    cpus = info.resources.get("CPU", 0.0)
    if cfg.train.cpus_per_trial > cpus:
        raise ConfigError(
            f"train.cpus_per_trial is {cfg.train.cpus_per_trial} but the Ray cluster has "
            f"{cpus:g} CPUs: trials would wait forever; lower it or add nodes"
        )
    if gpu and workers > info.num_gpus:
        raise ConfigError(
            f"train.workers_per_trial is {workers} with a GPU each but the Ray cluster has "
            f"{info.num_gpus:g} GPUs: lower workers_per_trial or set train.use_gpu false"
        )
    if workers > 1:
        return DDP_DRIVER_RESOURCES
    return {"CPU": cfg.train.cpus_per_trial, "GPU": 1 if gpu else 0}


def trial_slots(cfg: RelayConfig, info: RayInfo, gpu: bool) -> float:
    """How many trials the cluster can run at once (the ideal the overhead ratio assumes)."""
    slots = info.resources.get("CPU", 1.0) // cfg.train.cpus_per_trial
    if gpu:
        slots = min(slots, info.num_gpus // cfg.train.workers_per_trial)
    return max(1.0, min(float(cfg.tune.max_concurrent_trials), slots))


@dataclass
class Search:
    """One family's search: its trials' context, Tune's results, its trial runs."""

    family: str
    ctx: TrialContext
    grid: Any
    trial_runs: TrialRuns


def run(cfg: RelayConfig, runs: StageRuns, dataset: Dataset, info: RayInfo) -> TuneOutcome:
    """Search each family; an interrupted search (same tune run, its Tune folders on disk) is
    restored. With several families each has its own Tuner, and the best trial across them
    wins."""
    # Without result.json files (results go to MLflow) Tune's analysis warns for every trial.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tracker = runs.tracker
    gpu = use_gpu(cfg, info)
    listed = families.names(cfg)
    with runs.open("tune") as run_id:
        name = f"{cfg.name}-{run_id[:12]}"  # unique per tune run: a reused name resumes
        tracker.log(
            run_id,
            params={
                "num_samples": cfg.tune.num_samples,
                "scheduler": cfg.tune.scheduler,
                "metric": cfg.tune.metric,
                "mode": cfg.tune.mode,
                "epochs": cfg.train.epochs,
                "family" if len(listed) == 1 else "families": listed[0]
                if len(listed) == 1
                else listed,
                "max_concurrent_trials": cfg.tune.max_concurrent_trials,
                "use_gpu": gpu,
                "workers_per_trial": cfg.train.workers_per_trial,
                "search": cfg.tune.search,
                "search_space": _logged_space(cfg, listed),
                "dataset_digest": dataset.digest,
            },
        )
        started = time.perf_counter()
        # one read of the splits for every family's trials, started before the first trial;
        # multi-worker trials read shards through Ray Data instead
        one_worker = cfg.train.workers_per_trial == 1
        read = splits.start(families.trial_context(cfg, dataset, listed[0])) if one_worker else None
        searches = [
            _search(
                cfg,
                f,
                dataset,
                info,
                gpu,
                tracker,
                run_id,
                name if len(listed) == 1 else f"{name}-{f}",
                read,
            )
            for f in listed
        ]
        wall = time.perf_counter() - started
        outcome = _record(tracker, run_id, searches, cfg, trial_slots(cfg, info, gpu), wall)
        for used in (run_id, outcome.best_run_id):  # the search, and the run the model came from
            dataset.log_splits(tracker, used)
    return outcome


def _logged_space(cfg: RelayConfig, listed: list[str]) -> dict[str, Any]:
    def dumped(name: str) -> dict[str, Any]:
        return {k: v.model_dump(exclude_none=True) for k, v in families.space(cfg, name).items()}

    return dumped(listed[0]) if len(listed) == 1 else {f: dumped(f) for f in listed}


def _search(
    cfg: RelayConfig,
    family_name: str,
    dataset: Dataset,
    info: RayInfo,
    gpu: bool,
    tracker: Tracker,
    run_id: str,
    name: str,
    read: Any,
) -> Search:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from jobs.tune.trialruns import TrialRuns  # a Tune callback: imports Ray Tune (~1 s)

    chosen = families.family(cfg, family_name)
    space = families.space(cfg, family_name)
    storage = storage_root(cfg)
    ctx = families.trial_context(
        cfg,
        dataset,
        family_name,
        use_gpu=gpu,
        storage_path=f"{storage}/train",
        run_name=name,
        splits=read,
    )
    max_t = chosen.iterations(cfg.train.epochs, ctx.defaults, space)
    # a family whose early iterations say little (boosting rounds) sets a floor
    grace = max(cfg.tune.grace_period, math.ceil(chosen.min_grace_share * max_t))
    scheduler = (
        ASHAScheduler(
            time_attr="epoch",  # epochs, boosting rounds: what each result counts
            max_t=max_t,
            grace_period=min(grace, max_t),
            reduction_factor=cfg.tune.reduction_factor,
        )
        if cfg.tune.scheduler == "asha"
        else FIFOScheduler()
    )
    resources = trial_resources(cfg, info, gpu)
    trainable = tune.with_resources(tune.with_parameters(chosen.trainable(), ctx=ctx), resources)
    trial_runs = TrialRuns(tracker, run_id, ctx.epochs, ctx.defaults, family=chosen.name)
    if tune.Tuner.can_restore(f"{storage}/{name}"):
        tuner = tune.Tuner.restore(
            f"{storage}/{name}", trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = _new_tuner(cfg, trainable, scheduler, name, storage, trial_runs, space)
    with contextlib.redirect_stdout(sys.stderr):  # Tune's tables; stdout is for results
        grid = tuner.fit()
    return Search(chosen.name, ctx, grid, trial_runs)


def storage_root(cfg: RelayConfig) -> str:
    """Checkpoint storage: the configured folder or URI, else <state_dir>/tune."""
    if cfg.tune.storage_path:
        if "://" in cfg.tune.storage_path:
            return cfg.tune.storage_path.rstrip("/")
        return str(Path(cfg.tune.storage_path).resolve())
    return str(Path(cfg.runtime.state_dir).resolve() / "tune")


def checkpoint_uri(best: Any, storage: str) -> str:
    """The best trial's last checkpoint as a path or URI that `jobs.data.sources.filesystem` opens.

    A DDP trial's checkpoint lives in its Train run; Tune only hears its path.
    """
    path = best.checkpoint.path if best.checkpoint else best.metrics["checkpoint_path"]
    scheme = storage.split("://", 1)[0] if "://" in storage else None
    return f"{scheme}://{path}" if scheme and "://" not in path else path


def search_algorithm(cfg: RelayConfig) -> Any:
    """Random/grid sampling seeded from the config, or Optuna TPE (an optional dependency)."""
    if cfg.tune.search == "optuna":
        try:
            from ray.tune.search import ConcurrencyLimiter
            from ray.tune.search.optuna import OptunaSearch

            return ConcurrencyLimiter(
                OptunaSearch(seed=cfg.seed), max_concurrent=cfg.tune.max_concurrent_trials
            )
        except ImportError:
            raise ConfigError(
                "tune.search is optuna but optuna is not installed: "
                "pip install 'relay[optuna]' (or use search: random)"
            ) from None
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # a SearchGenerator ignores TuneConfig.max_concurrent_trials: it takes its own limit
    return BasicVariantGenerator(
        random_state=cfg.seed, max_concurrent=cfg.tune.max_concurrent_trials
    )


def _new_tuner(
    cfg: RelayConfig,
    trainable: Any,
    scheduler: Any,
    name: str,
    storage: str,
    trial_runs: TrialRuns,
    space: dict[str, SearchParam],
) -> Any:
    from ray import tune

    from jobs.tune.progress import SearchProgress

    return tune.Tuner(
        trainable,
        param_space=search_space(space),
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric,
            mode=cfg.tune.mode,
            num_samples=cfg.tune.num_samples,
            scheduler=scheduler,
            search_alg=search_algorithm(cfg),
            reuse_actors=cfg.train.workers_per_trial == 1,  # imports and data load once per slot
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[
                trial_runs,
                SearchProgress(cfg.tune.metric, cfg.tune.mode, planned_trials(cfg, space)),
            ],
        ),
    )


def _record(
    tracker: Tracker,
    run_id: str,
    searches: list[Search],
    cfg: RelayConfig,
    slots: float,
    wall: float,
) -> TuneOutcome:
    """Tag the best trial's run (the best across families) and summarise the search."""
    grids = [r for search in searches for r in search.grid]
    if not grids or all(r.error for r in grids):
        lines = [str(r.error).strip().splitlines() for r in grids if r.error]
        last = sorted({found[-1] for found in lines if found})
        raise TrainingFailedError(
            f"every trial failed ({len(grids)}): {'; '.join(last) or 'no error recorded'}; each "
            "trial's run (relay runs) holds its traceback as error.txt"
        )
    sign = 1.0 if cfg.tune.mode == "min" else -1.0
    bests = {
        s.family: (s, s.grid.get_best_result(metric=cfg.tune.metric, mode=cfg.tune.mode))
        for s in searches
        if s.grid.num_errors < len(s.grid)
    }
    winner, best = min(bests.values(), key=lambda sb: sign * sb[1].metrics[cfg.tune.metric])
    run_ids = {k: v for s in searches for k, v in s.trial_runs.existing().items()}
    best_run = run_ids[best.metrics["trial_id"]]
    tracker.log(best_run, tags={"relay.best_trial": "true"})
    metrics = {
        k: float(v)
        for k, v in best.metrics.items()
        if k.startswith(("val_", "train_")) and isinstance(v, int | float)
    }
    hp = hyperparameters(best.config, winner.ctx)
    trained = sum(float((r.metrics or {}).get("trial_seconds", 0.0)) for r in grids)
    per_family = (
        {
            f"best_{cfg.tune.metric}_{family}": float(b.metrics[cfg.tune.metric])
            for family, (_, b) in bests.items()
        }
        if len(searches) > 1
        else {}
    )
    tracker.log(
        run_id,
        metrics={
            **{f"best_{k}": v for k, v in metrics.items()},
            **per_family,
            "trial_seconds_total": trained,
            "wall_seconds": wall,
            # wall time over the ideal: all training time spread over the trial slots
            "overhead_ratio": wall / max(trained / slots, 1e-9),  # 1.0 would be no overhead
        },
        tags={
            "relay.best_trial_run_id": best_run,
            "relay.best_hyperparameters": hp,
            "relay.best_family": winner.family,
            "relay.trials": len(grids),
            NOTE_TAG: f"{len(grids)} trials ({cfg.tune.search} search, {cfg.tune.scheduler} "
            f"scheduler); best {cfg.tune.metric} {best.metrics[cfg.tune.metric]:.4g} from the "
            f"{winner.family} trial {best_run} ({_settings(hp)}), the run the model was "
            f"trained in. {wall:.1f} s wall.",
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        histories = tracker.online(
            lambda: plots.histories_from(tracker.client, list(run_ids.values()), cfg.tune.metric)
        )
        png = plots.learning_curves(
            histories, best_run, cfg.tune.metric, Path(folder) / "learning_curves.png"
        )
        tracker.log_artifact(run_id, png)
    return TuneOutcome(
        run_id=run_id,
        best_run_id=best_run,
        hyperparameters=hp,
        metrics=metrics,
        checkpoint_path=checkpoint_uri(best, storage_root(cfg)),
        trials=len(grids),
        wall_seconds=wall,
        overhead_ratio=wall / max(trained / slots, 1e-9),
        family=winner.family,
    )


def _settings(hp: dict[str, Any]) -> str:
    """Hyper-parameters as a person reads them: `lr 0.003, depth 2`, not a dict's repr."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in hp.items())
