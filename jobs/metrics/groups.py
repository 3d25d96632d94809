"""Metrics per group of a sensitive column: what the fairness gates compare."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from cluster.config import RelayConfig, Role


def positive_class(cfg: RelayConfig, classes: list[str]) -> int:
    """Index of the class fairness treats as positive among the model's `classes` (declared or
    learned; default the last)."""
    chosen = cfg.gates.fairness.positive_class if cfg.gates.fairness else None
    return classes.index(chosen) if chosen else len(classes) - 1


def group_metrics(
    cfg: RelayConfig, spec: dict[str, Any], test: pa.Table, truth: np.ndarray, output: np.ndarray
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per sensitive column (kept in the dataset, never a feature) that `test` has: metrics
    per group."""
    out = {}
    for column in cfg.data.by_role(Role.sensitive):
        if column.name not in test.column_names:
            continue
        groups = np.array(
            ["(null)" if v is None else str(v) for v in test.column(column.name).to_pylist()]
        )
        if cfg.model.task == "classification":
            positive = positive_class(cfg, spec["features"]["label"]["classes"])
            out[column.name] = classification_groups(
                groups, truth == positive, output.argmax(axis=1) == positive
            )
        else:
            out[column.name] = regression_groups(groups, truth, output)
    return out


def group_table(groups: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, list[Any]]:
    """`group_metrics` as table columns: one row per (column, group), a column per metric."""
    names = sorted({k for by_group in groups.values() for v in by_group.values() for k in v})
    rows = [(c, g, v) for c, by_group in groups.items() for g, v in by_group.items()]
    table: dict[str, list[Any]] = {
        "column": [c for c, _, _ in rows],
        "group": [g for _, g, _ in rows],
    }
    for name in names:
        table[name] = [v.get(name) for _, _, v in rows]
    return table


def group_masks(groups: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(group, row mask) per group, in name order; values compared as text (None, categories)."""
    labels = np.array([str(g) for g in groups])
    return [(group, labels == group) for group in sorted(set(labels.tolist()))]


def classification_groups(
    groups: np.ndarray, truth_positive: np.ndarray, predicted_positive: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """Per group: rows, TPR, FPR, accuracy, share predicted positive (None where undefined)."""
    out: dict[str, dict[str, float | None]] = {}
    for group, mask in group_masks(groups):
        truth, pred = truth_positive[mask], predicted_positive[mask]
        out[group] = {
            "n": float(mask.sum()),
            "tpr": _mean(pred[truth]),
            "fpr": _mean(pred[~truth]),
            "accuracy": _mean(pred == truth),
            "positive_rate": _mean(pred),
        }
    return out


def regression_groups(
    groups: np.ndarray, truth: np.ndarray, prediction: np.ndarray
) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for group, mask in group_masks(groups):
        out[group] = {
            "n": float(mask.sum()),
            "mean_prediction": _mean(prediction[mask]),
            "mae": _mean(np.abs(prediction[mask] - truth[mask])),
        }
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None
