"""Evaluation: the best trial's weights on the held-out test split, through the serving code.

Predictions go through `serving.model.Predictor`, the same path the endpoint uses, so the
metrics describe the model exactly as it will be served.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cluster.config import DriftGate, RelayConfig, Role
from jobs import drift, gates
from jobs.etl import Dataset
from jobs.progress import StageRuns
from jobs.sources import filesystem
from jobs.train import CHECKPOINT_FILE, architecture, read_checkpoint
from jobs.tune import TuneOutcome
from serving.features import encode_label
from serving.model import Predictor

SPEC_FORMAT = "relay.mlp/1"
METRIC_UNSAFE = re.compile(r"[^\w\-. /]")  # group values are data: MLflow refuses other characters


@dataclass
class Evaluation:
    run_id: str
    metrics: dict[str, float]
    spec: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    groups: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)

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
        # the training split's distributions: a later run measures its drift against them
        "reference": drift.reference(dataset.split("train"), features, reference_bins(cfg)),
    }


def reference_bins(cfg: RelayConfig) -> int:
    drift_gate = cfg.gates.data.drift or DriftGate()
    return drift_gate.bins


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
        truth = true_values(spec, test)
        evaluation.metrics = metrics_of(spec, truth, output)
        evaluation.groups = group_metrics(cfg, test, truth, output)
        tracker.log(
            run_id,
            metrics={
                **evaluation.metrics,
                **{
                    f"group.{column}.{METRIC_UNSAFE.sub('_', group)}.{k}": v
                    for column, by_group in evaluation.groups.items()
                    for group, values in by_group.items()
                    for k, v in values.items()
                    if v is not None
                },
            },
            params={"dataset_digest": dataset.digest, "trial_run_id": outcome.best_run_id},
            tags={
                "relay.dataset_digest": dataset.digest,
                "relay.best_trial_run_id": outcome.best_run_id,
            },
        )
        with tempfile.TemporaryDirectory(prefix="relay-plots-") as tmp:
            tracker.log_artifacts(
                run_id, draw_plots(spec, truth, output, Path(tmp)), artifact_path="plots"
            )
    return evaluation


def draw_plots(spec: dict[str, Any], truth: np.ndarray, output: np.ndarray, folder: Path) -> Path:
    """ROC, calibration and confusion matrix (binary/multiclass), or residuals: PNG files."""
    from jobs import plots

    if spec["task"] == "regression":
        plots.residuals(truth, output, folder / "residuals.png")
        return folder
    classes = spec["features"]["label"]["classes"]
    plots.confusion(truth, output.argmax(axis=1), classes, folder / "confusion_matrix.png")
    if output.shape[1] == 2 and len(np.unique(truth)) == 2:
        plots.roc(truth, output[:, 1], folder / "roc.png")
        plots.calibration(truth, output[:, 1], folder / "calibration.png")
    return folder


def true_values(spec: dict[str, Any], test: pa.Table) -> np.ndarray:
    """Class indices, or label values in the label's own units."""
    truth = encode_label(spec["features"], test)
    if spec["task"] == "classification":
        return truth
    label = spec["features"]["label"]
    return truth * label["std"] + label["mean"]


def metrics_of(spec: dict[str, Any], truth: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """The task's metrics, named test_<metric> (the names gates.model refers to)."""
    if spec["task"] == "classification":
        metrics = classification_metrics(truth, output)
    else:
        metrics = regression_metrics(truth, output)
    return {**{f"test_{k}": v for k, v in metrics.items()}, "test_rows": float(len(truth))}


def classification_metrics(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    labels = list(range(proba.shape[1]))
    out = {
        "accuracy": float(metrics.accuracy_score(truth, proba.argmax(axis=1))),
        "log_loss": float(metrics.log_loss(truth, proba, labels=labels)),
    }
    out["ece"] = expected_calibration_error(truth, proba)
    if proba.shape[1] == 2 and len(np.unique(truth)) == 2:
        out["roc_auc"] = float(metrics.roc_auc_score(truth, proba[:, 1]))
        out["pr_auc"] = float(metrics.average_precision_score(truth, proba[:, 1]))
        out["f1"] = float(metrics.f1_score(truth, proba.argmax(axis=1)))
        out["brier"] = float(metrics.brier_score_loss(truth, proba[:, 1]))
    return out


def expected_calibration_error(truth: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Row-weighted gap between confidence and accuracy over equal-width confidence bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        mask = which == b
        total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / max(len(truth), 1))


def positive_class(cfg: RelayConfig) -> int:
    """Index of the class fairness treats as positive (default: the label's last category)."""
    classes = list(cfg.data.label.categories or [])
    chosen = cfg.gates.fairness.positive_class if cfg.gates.fairness else None
    return classes.index(chosen) if chosen else len(classes) - 1


def group_metrics(
    cfg: RelayConfig, test: pa.Table, truth: np.ndarray, output: np.ndarray
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per sensitive column (kept in the dataset, never a feature): metrics per group."""
    out = {}
    for column in cfg.data.by_role(Role.sensitive):
        groups = np.array(
            ["(null)" if v is None else str(v) for v in test.column(column.name).to_pylist()]
        )
        if cfg.model.task == "classification":
            positive = positive_class(cfg)
            out[column.name] = gates.classification_groups(
                groups, truth == positive, output.argmax(axis=1) == positive
            )
        else:
            out[column.name] = gates.regression_groups(groups, truth, output)
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
