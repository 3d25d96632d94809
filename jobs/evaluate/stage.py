"""Evaluation: the best trial's weights on the held-out test split, through the serving code.

Predictions go through `serving.model.Predictor`, the same path the endpoint uses, so the
metrics describe the model exactly as it will be served.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.config import DriftGate, RelayConfig
from cluster.tracking.tracker import NOTE_TAG
from jobs.artifacts import Dataset, Evaluation, TuneOutcome
from jobs.metrics.groups import group_metrics, group_table
from jobs.metrics.task import metrics_of, true_values
from jobs.models import families
from jobs.progress import StageRuns
from serving import drift

SPEC_FORMAT = "relay.model/2"
GROUPS_TABLE = "groups.json"  # per sensitive column and group: n, tpr, positive rate, ...


def exported(
    cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The spec (everything needed to rebuild and feed the model, without the training code)
    and the weight files, from the best trial's checkpoint."""
    chosen = families.family(cfg, outcome.family)
    features = dataset.meta["features"]
    ctx = families.trial_context(cfg, dataset, outcome.family)
    architecture, files = chosen.export(outcome.checkpoint_path, outcome.hyperparameters, ctx)
    return {
        "format": SPEC_FORMAT,
        "family": chosen.name,
        "library": {"name": chosen.library, "version": library_version(chosen.library)},
        "task": cfg.model.task,
        "architecture": architecture,
        "features": features,
        "input_schema": dataset.meta["input_schema"],
        # a request may carry it (not a model input): the log keeps it for `relay feedback`
        **({"id_column": cfg.data.id.name} if cfg.data.id else {}),
        "hyperparameters": outcome.hyperparameters,
        "dataset_digest": dataset.digest,
        "trial_run_id": outcome.best_run_id,
        # the training split's distributions: a later run measures its drift against them
        "reference": drift.reference(dataset.split("train"), features, reference_bins(cfg)),
    }, files


def library_version(module: str) -> str:
    """The installed version of a family's library (xgboost-cpu and xgboost both import so)."""
    return str(importlib.import_module(module).__version__).split("+")[0]


def reference_bins(cfg: RelayConfig) -> int:
    drift_gate = cfg.gates.data.drift or DriftGate()
    return drift_gate.bins


def restore(
    cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome, recorded: dict[str, Any]
) -> Evaluation:
    """A finished evaluation, on resume: the same model and its recorded metrics, not re-scored."""
    evaluation = _model(cfg, dataset, outcome, recorded["run_id"])[0]
    evaluation.metrics, evaluation.groups = recorded["metrics"], recorded["groups"]
    return evaluation


def _model(
    cfg: RelayConfig, dataset: Dataset, outcome: TuneOutcome, run_id: str
) -> tuple[Evaluation, pa.Table, np.ndarray]:
    """The exported model, the test split and its answers to it; the spec keeps those answers'
    distribution, which live answers drift against (`relay monitor`)."""
    spec, files = exported(cfg, dataset, outcome)
    evaluation = Evaluation(run_id=run_id, metrics={}, spec=spec, files=files)
    test = dataset.split("test")
    output = evaluation.predictor().predict_table(test)
    spec["prediction_reference"] = drift.prediction_reference(spec, output, reference_bins(cfg))
    return evaluation, test, output


def run(cfg: RelayConfig, runs: StageRuns, dataset: Dataset, outcome: TuneOutcome) -> Evaluation:
    tracker = runs.tracker
    with runs.open("evaluate") as run_id:
        evaluation, test, output = _model(cfg, dataset, outcome, run_id)
        spec = evaluation.spec
        truth = true_values(spec, test)
        evaluation.metrics = metrics_of(spec, truth, output)
        evaluation.groups = group_metrics(cfg, spec, test, truth, output)
        tracker.log(
            run_id,
            metrics=evaluation.metrics,
            params={"dataset_digest": dataset.digest, "trial_run_id": outcome.best_run_id},
            tags={
                "relay.dataset_digest": dataset.digest,
                "relay.best_trial_run_id": outcome.best_run_id,
                NOTE_TAG: "The best trial's model on the held-out test split: "
                + ", ".join(f"{k} {v:.4g}" for k, v in evaluation.metrics.items())
                + ".",
            },
        )
        dataset.log_splits(tracker, run_id, {"test": "test"})
        if evaluation.groups:
            tracker.log_tables(run_id, {GROUPS_TABLE: group_table(evaluation.groups)})
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
