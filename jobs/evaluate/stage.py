"""Evaluation: the best trial's weights on the held-out test split, through the serving code.

Predictions go through `serving.model.Predictor`, the same path the endpoint uses, so the
metrics describe the model exactly as it will be served.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cluster.config import DriftGate, RelayConfig
from jobs.artifacts import Dataset, Evaluation, TuneOutcome
from jobs.data.sources import filesystem
from jobs.metrics import drift
from jobs.metrics.groups import group_metrics
from jobs.metrics.task import metrics_of, true_values
from jobs.progress import StageRuns
from jobs.train.loop import CHECKPOINT_FILE, architecture, read_checkpoint

SPEC_FORMAT = "relay.mlp/1"
METRIC_UNSAFE = re.compile(r"[^\w\-. /]")  # group values are data: MLflow refuses other characters


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


def restore(
    cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome, recorded: dict[str, Any]
) -> Evaluation:
    """A finished evaluation, on resume: the same model and its recorded metrics, not re-scored."""
    evaluation = _model(cfg, dataset, outcome, recorded["run_id"])
    evaluation.metrics, evaluation.groups = recorded["metrics"], recorded["groups"]
    return evaluation


def _model(cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome, run_id: str) -> Evaluation:
    state = load_checkpoint(outcome.checkpoint_path)
    spec = model_spec(cfg, dataset, outcome)
    return Evaluation(run_id=run_id, metrics={}, spec=spec, state_dict=state["model"])


def run(cfg: RelayConfig, runs: StageRuns, dataset: Dataset, outcome: TuneOutcome) -> Evaluation:
    tracker = runs.tracker
    with runs.open("evaluate") as run_id:
        evaluation = _model(cfg, dataset, outcome, run_id)
        spec = evaluation.spec
        test = dataset.split("test")
        output = evaluation.predictor().predict_table(test)
        truth = true_values(spec, test)
        evaluation.metrics = metrics_of(spec, truth, output)
        evaluation.groups = group_metrics(cfg, spec, test, truth, output)
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
    from jobs.metrics import plots

    if spec["task"] == "regression":
        plots.residuals(truth, output, folder / "residuals.png")
        return folder
    classes = spec["features"]["label"]["classes"]
    plots.confusion(truth, output.argmax(axis=1), classes, folder / "confusion_matrix.png")
    if output.shape[1] == 2 and len(np.unique(truth)) == 2:
        plots.roc(truth, output[:, 1], folder / "roc.png")
        plots.calibration(truth, output[:, 1], folder / "calibration.png")
    return folder
