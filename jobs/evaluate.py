"""Evaluation: the best trial's weights on the held-out test split, through the serving code.

Predictions go through `serving.model.Predictor`, the same path the endpoint uses, so the
metrics describe the model exactly as it will be served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cluster.config import RelayConfig
from jobs.etl import Dataset
from jobs.progress import StageRuns
from jobs.sources import filesystem
from jobs.train import CHECKPOINT_FILE, architecture, read_checkpoint
from jobs.tune import TuneOutcome
from serving.features import encode_label
from serving.model import Predictor

SPEC_FORMAT = "relay.mlp/1"


@dataclass
class Evaluation:
    run_id: str
    metrics: dict[str, float]
    spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    def predictor(self) -> Predictor:
        return Predictor(self.spec, self.state_dict)


def model_spec(cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome) -> dict[str, Any]:
    """Everything needed to rebuild and feed the model, without the training code."""
    features = dataset.meta["features"]
    return {
        "format": SPEC_FORMAT,
        "task": cfg.model.task,
        "architecture": architecture(features, cfg.model.task, outcome.hyperparameters),
        "features": features,
        "input_schema": dataset.meta["input_schema"],
        "hyperparameters": outcome.hyperparameters,
        "dataset_digest": dataset.digest,
        "trial_run_id": outcome.best_run_id,
    }


def load_checkpoint(location: str) -> dict[str, Any]:
    """The checkpoint file from a local folder or an object store, without pickle."""
    fs, path = filesystem(f"{location.rstrip('/')}/{CHECKPOINT_FILE}")
    with fs.open_input_file(path) as handle:
        return read_checkpoint(handle.read())


def run(cfg: RelayConfig, runs: StageRuns, dataset: Dataset, outcome: TuneOutcome) -> Evaluation:
    tracker = runs.tracker
    with runs.open("evaluate") as run_id:
        state = load_checkpoint(outcome.checkpoint_path)
        spec = model_spec(cfg, dataset, outcome)
        evaluation = Evaluation(run_id=run_id, metrics={}, spec=spec, state_dict=state["model"])
        test = dataset.split("test")
        output = evaluation.predictor().predict_table(test)
        truth = encode_label(spec["features"], test)
        if cfg.model.task == "classification":
            metrics = classification_metrics(truth, output)
        else:
            label = spec["features"]["label"]
            metrics = regression_metrics(truth * label["std"] + label["mean"], output)
        evaluation.metrics = {f"test_{k}": v for k, v in metrics.items()}
        evaluation.metrics["test_rows"] = float(test.num_rows)
        tracker.log(
            run_id,
            metrics=evaluation.metrics,
            params={"dataset_digest": dataset.digest, "trial_run_id": outcome.best_run_id},
            tags={
                "relay.dataset_digest": dataset.digest,
                "relay.best_trial_run_id": outcome.best_run_id,
            },
        )
    return evaluation


def classification_metrics(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    labels = list(range(proba.shape[1]))
    out = {
        "accuracy": float(metrics.accuracy_score(truth, proba.argmax(axis=1))),
        "log_loss": float(metrics.log_loss(truth, proba, labels=labels)),
    }
    if proba.shape[1] == 2 and len(np.unique(truth)) == 2:
        out["roc_auc"] = float(metrics.roc_auc_score(truth, proba[:, 1]))
        out["pr_auc"] = float(metrics.average_precision_score(truth, proba[:, 1]))
        out["f1"] = float(metrics.f1_score(truth, proba.argmax(axis=1)))
    return out


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(truth, pred))),
        "mae": float(metrics.mean_absolute_error(truth, pred)),
        "r2": float(metrics.r2_score(truth, pred)),
    }


def main(argv: list[str] | None = None) -> None:
    from jobs.pipeline import stage_main

    stage_main("evaluate", argv)


if __name__ == "__main__":
    main()
