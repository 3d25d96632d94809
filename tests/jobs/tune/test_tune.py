"""Tuning: GPU decisions, determinism, and the other task types, on a real Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from cluster.compute.runtime import RayInfo
from cluster.errors import ConfigError
from cluster.tracking.tracker import Tracker
from jobs.pipeline import runner
from jobs.tune.stage import DDP_DRIVER_RESOURCES, trial_resources, trial_slots, use_gpu
from tests.conftest import ROOT, ProcessKiller, ci_raw, merge
from tests.jobs.train.undisturbed import undisturbed
from tests.tasks import task_config


@pytest.mark.parametrize(
    ("setting", "gpus", "expected"),
    [("auto", 1, True), ("auto", 0, False), ("false", 2, False), ("true", 1, True)],
)
def test_use_gpu_decision(make_config, setting, gpus, expected):
    cfg = make_config(train={"use_gpu": setting})
    assert use_gpu(cfg, RayInfo("x", True, {"CPU": 2.0, "GPU": float(gpus)})) is expected


def test_use_gpu_true_without_gpus_is_refused(make_config):
    cfg = make_config(train={"use_gpu": "true"})
    with pytest.raises(ConfigError, match=r"train\.use_gpu is true but the Ray cluster has no GPU"):
        use_gpu(cfg, RayInfo("x", True, {"CPU": 2.0}))


def test_declared_gpu_is_placed_and_falls_back_to_cpu(tmp_path):
    """The GPU is mocked: the embedded Ray *declares* one (runtime.num_gpus), torch has no CUDA.

    Trials must be given GPU 0 by Ray (placement) and then train on the CPU (fallback).
    """
    raw = merge(ci_raw(), {"runtime": {"num_gpus": 1}, "tune": {"num_samples": 2}})
    config = tmp_path / "gpu.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", str(config), "--until", "tune", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
    runs = tracker.client.search_runs([summary["experiment_id"]])
    tune_run = next(r for r in runs if r.data.tags.get("relay.stage") == "tune")
    assert tune_run.data.params["use_gpu"] == "true"  # non-text values are written as JSON
    trials = [r for r in runs if r.data.tags.get("relay.stage") == "trial"]
    assert len(trials) == 2
    assert {t.data.tags["relay.gpu_ids"] for t in trials} == {"0"}
    assert {t.data.tags["relay.device"] for t in trials} == {"cpu"}


def test_same_config_and_data_give_the_same_best_trial(ray_cluster, make_config):
    """FIFO keeps the comparison exact; ASHA's stop decisions depend on arrival order."""
    outcomes = []
    for _ in range(2):
        cfg = make_config(tune={"scheduler": "fifo"})
        summary = runner.run(cfg, until="tune")
        outcomes.append(summary)
    first, second = outcomes
    assert first["dataset_digest"] == second["dataset_digest"]
    assert first["best_hyperparameters"] == second["best_hyperparameters"]
    for key, value in first["best_val"].items():
        assert second["best_val"][key] == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_train_and_evaluate(ray_cluster, make_config, task, tmp_path):
    """A label with signal, and a bound only a model that learned it reaches: above the
    majority class's accuracy, or an R^2 well above the mean predictor's 0.

    Regression also keeps its checkpoints under a storage URI (file:// stands in for s3://).
    """
    tune_cfg = {"num_samples": 1, "metric": "val_loss"}
    if task == "regression":
        tune_cfg["storage_path"] = f"file://{tmp_path}/checkpoints"
    cfg = task_config(make_config, tmp_path, task, tune=tune_cfg)
    summary = runner.run(cfg, until="evaluate")
    metrics = summary["test_metrics"]
    test = pq.read_table(Path(summary["dataset_path"]) / "test")
    if task == "multiclass":
        assert set(metrics) >= {"test_accuracy", "test_log_loss"}
        labels = test.column("home_ownership").to_pylist()
        majority = max(labels.count(c) for c in set(labels)) / len(labels)  # ~0.4 here
        assert metrics["test_accuracy"] > majority + 0.2, (metrics, majority)
    else:
        assert set(metrics) >= {"test_rmse", "test_mae", "test_r2"}
        truth = np.asarray(test.column("loan_amount").to_pylist(), dtype=float)
        mean_rmse = float(np.sqrt(np.mean((truth - truth.mean()) ** 2)))  # the mean predictor's
        assert metrics["test_r2"] > 0.5 and metrics["test_rmse"] < 0.7 * mean_rmse, metrics
        assert list((tmp_path / "checkpoints").glob("*/torch_trial_*/checkpoint_*/checkpoint.pt"))


def test_killed_trial_resumes_from_its_checkpoint(ray_cluster, make_config):
    """SIGKILL a running trial's process after its second checkpoint; FailureConfig restores it.

    The driver logs each epoch once whatever the trial replays, so only what the trial itself
    reports shows a restore: the epoch its checkpoint gave back, and losses equal to an
    undisturbed run's after the restart (restored weights and optimizer, not fresh ones).
    """
    cfg = make_config(
        data={"source": {"rows": 60000}},
        tune={"num_samples": 1, "scheduler": "fifo"},
        train={"epochs": 6, "batch_size": 64},
    )
    tune_root = Path(cfg.runtime.state_dir) / "tune"

    def ready() -> bool:
        """The driver has registered the second checkpoint: it deleted the first (num_to_keep=1).

        The folder alone is not enough: the trial writes it before the driver takes the report,
        and a kill in between restores from the first checkpoint.
        """
        seconds = list(tune_root.glob("*/*/checkpoint_000001"))
        return any(not (c.parent / "checkpoint_000000").exists() for c in seconds)

    with ProcessKiller(b"ray::ImplicitFunc", ready) as killer:
        summary = runner.run(cfg, until="tune")
    assert killer.killed, "the trial was never seen running"
    tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
    trials = [
        r
        for r in tracker.client.search_runs([summary["experiment_id"]])
        if r.data.tags.get("relay.stage") == "trial"
    ]
    assert len(trials) == 1  # the restored trial kept its MLflow run: no duplicate
    (trial,) = trials
    tags = trial.data.tags
    assert tags["relay.trial_status"] == "completed" and tags["relay.trial_failures"] == "1"
    resumed = int(tags["relay.resumed_from_epoch"])  # the restarted trial's own report
    assert 2 <= resumed < cfg.train.epochs  # it trained only the epochs after its checkpoint
    history = tracker.client.get_metric_history(trial.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]  # each epoch logged once
    reference = undisturbed(summary["dataset_path"], trial.data.params, cfg.train.epochs, cfg.seed)
    logged = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert logged == pytest.approx([r["val_loss"] for r in reference], rel=1e-6)


@pytest.mark.parametrize(
    ("train", "gpus", "message"),
    [
        ({"cpus_per_trial": 3}, 0, r"train\.cpus_per_trial is 3\.0 but the Ray cluster has 2 CPUs"),
        (
            {"workers_per_trial": 2, "cpus_per_trial": 2, "use_gpu": "true"},
            1,
            r"train\.workers_per_trial is 2 with a GPU each but the Ray cluster has 1 GPUs",
        ),
    ],
)
def test_unplaceable_trials_are_refused_not_left_waiting(make_config, train, gpus, message):
    cfg = make_config(train=train)
    info = RayInfo("x", True, {"CPU": 2.0, "GPU": float(gpus)})
    with pytest.raises(ConfigError, match=message):
        trial_resources(cfg, info, use_gpu(cfg, info))


def test_trial_resources_per_execution_shape(make_config):
    info = RayInfo("x", True, {"CPU": 2.0, "GPU": 2.0})
    plain = make_config(train={"use_gpu": "auto"})
    assert trial_resources(plain, info, True) == {"CPU": 1.0, "GPU": 1}
    ddp = make_config(train={"workers_per_trial": 2, "cpus_per_trial": 2})
    # the trial's own process holds no CPU: its TorchTrainer workers hold them
    assert trial_resources(ddp, info, False) == DDP_DRIVER_RESOURCES
    assert trial_slots(ddp, info, False) == 1.0


def test_ddp_trials_run_torchtrainer_workers_over_ray_data(ray_cluster, make_config):
    """workers_per_trial 2: each trial is a 2-worker DDP run; its checkpoint feeds evaluation."""
    cfg = make_config(
        tune={"num_samples": 1, "scheduler": "fifo"},
        train={"workers_per_trial": 2, "cpus_per_trial": 2, "epochs": 2},
    )
    summary = runner.run(cfg, until="evaluate")
    assert summary["test_metrics"]["test_roc_auc"] > 0.55
    tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
    runs = tracker.client.search_runs([summary["experiment_id"]])
    tune_run = next(r for r in runs if r.data.tags.get("relay.stage") == "tune")
    assert tune_run.data.params["workers_per_trial"] == "2"
    (trial,) = [r for r in runs if r.data.tags.get("relay.stage") == "trial"]
    assert trial.data.tags["relay.trial_status"] == "completed"
    steps = [m.step for m in tracker.client.get_metric_history(trial.info.run_id, "val_loss")]
    assert steps == [1, 2]
    # the Train run, named after the trial, kept rank 0's checkpoint
    train_runs = list((Path(cfg.runtime.state_dir) / "tune" / "train").iterdir())
    assert len(train_runs) == 1 and train_runs[0].name.startswith(cfg.name)
    assert list(train_runs[0].glob("checkpoint_*/checkpoint.pt"))


def test_optuna_search_samples_the_configured_space(ray_cluster, make_config):
    """Optuna ran: Tune saved its searcher's study, a TPE study whose trials are exactly the
    trials relay logged, told each trial's final val_loss (random search saves no study)."""
    import pickle

    import optuna

    cfg = make_config(tune={"search": "optuna", "num_samples": 3, "scheduler": "fifo"})
    summary = runner.run(cfg, until="tune")
    tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
    runs = tracker.client.search_runs([summary["experiment_id"]])
    trials = [r for r in runs if r.data.tags.get("relay.stage") == "trial"]
    assert len(trials) == 3
    for t in trials:
        assert 0.001 <= float(t.data.params["lr"]) <= 0.03
        assert t.data.params["hidden_size"] in {"32", "64"}
    assert summary["best_hyperparameters"]["depth"] in {1, 2}

    (state,) = (Path(cfg.runtime.state_dir) / "tune").glob(f"{cfg.name}-*/searcher-state-*.pkl")
    study = pickle.loads(state.read_bytes())["_ot_study"]
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    space = list(cfg.tune.search_space)
    sampled = sorted(tuple(float(t.params[k]) for k in space) for t in study.trials)
    logged = sorted(tuple(float(r.data.params[k]) for k in space) for r in trials)
    assert sampled == logged
    told = sorted(t.value for t in study.trials)
    assert told == pytest.approx(sorted(r.data.metrics["val_loss"] for r in trials))
