"""The task's metrics on held-out rows: what evaluate reports and the gates compare.

One implementation for the evaluation of a new model and the re-scoring of the champion
(`jobs.gates.decide`), so both are measured the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from serving.features import encode_label


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


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(truth, pred))),
        "mae": float(metrics.mean_absolute_error(truth, pred)),
        "r2": float(metrics.r2_score(truth, pred)),
    }
