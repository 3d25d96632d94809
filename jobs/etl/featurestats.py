"""Feature statistics from the training split only, mergeable across files and batches.

They become the model spec's feature transform (`serving.features`), so training and serving
scale and encode identically, and nothing about the val/test rows leaks into training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import NUMERIC_TYPES, ColumnType, RelayConfig, Role


def numeric_columns(cfg: RelayConfig) -> list[str]:
    cols = [
        c.name
        for c in cfg.data.by_role(Role.feature)
        if c.type in (*NUMERIC_TYPES, ColumnType.bool)
    ]
    if cfg.model.task == "regression":
        cols.append(cfg.data.label.name)
    return cols


def moments(train: pa.Table, names: list[str]) -> dict[str, list[float]]:
    """count, sum and sum of squares per numeric column."""
    stats = {}
    for name in names:
        values = train.column(name).cast(pa.float64())
        total = pc.sum(values).as_py() or 0.0
        squares = pc.sum(pc.multiply(values, values)).as_py() or 0.0
        stats[name] = [float(pc.count(values).as_py()), float(total), float(squares)]
    return stats


def add_moments(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for name, values in more.items():
        into[name] = [a + b for a, b in zip(into.get(name, [0.0, 0.0, 0.0]), values, strict=True)]


def feature_spec(cfg: RelayConfig, merged: dict[str, list[float]]) -> dict[str, Any]:
    """Scaling statistics per numeric feature, vocabularies from the declared categories."""
    scaled: dict[str, dict[str, float]] = {}
    for name in numeric_columns(cfg):
        count, total, squares = merged.get(name, [0.0, 0.0, 0.0])
        mean = total / count if count else 0.0
        std = float(np.sqrt(max(squares / count - mean * mean, 0.0))) if count else 0.0
        scaled[name] = {"mean": mean, "std": std if std > 1e-12 else 1.0}
    features = cfg.data.by_role(Role.feature)
    label = cfg.data.label
    return {
        "numeric": [
            {"name": c.name, **scaled[c.name]} for c in features if c.type != ColumnType.category
        ],
        "categorical": [
            {"name": c.name, "vocab": list(c.categories or [])}
            for c in features
            if c.type == ColumnType.category
        ],
        "label": (
            {"name": label.name, "classes": list(label.categories or [])}
            if cfg.model.task == "classification"
            else {"name": label.name, **scaled[label.name]}
        ),
    }


def input_schema(cfg: RelayConfig) -> list[dict[str, Any]]:
    """What a caller of the served model must send: the feature columns, as declared."""
    return [c.model_dump(mode="json", exclude={"role"}) for c in cfg.data.by_role(Role.feature)]
