"""Feature statistics from the training split only, mergeable across files and batches.

They become the model spec's feature transform (`serving.features`), so training and serving
scale and encode identically, and nothing about the val/test rows leaks into training.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import AUTO, DEFAULT_MAX_CATEGORIES, Column, ColumnType, RelayConfig, Role
from cluster.errors import ConfigError, DataQualityError
from serving.features import OTHER, selected

# Column keys added after input schemas were first recorded: left out while unset, so an
# existing champion's schema still equals a new run's (gates.data.schema_change).
_OPTIONAL_KEYS = ("format", "parts", "max_categories")


def numeric_inputs(cfg: RelayConfig) -> list[dict[str, Any]]:
    """The numeric model inputs before scaling, as `serving.features.selected` reads them: each
    int, float or bool feature, each part of a timestamp feature, and a regression label."""
    inputs: list[dict[str, Any]] = []
    for c in cfg.data.by_role(Role.feature):
        if c.type == ColumnType.timestamp:
            inputs += [
                {"name": f"{c.name}.{p}", "column": c.name, "part": p, "format": c.format}
                for p in c.feature_parts
            ]
        elif c.type != ColumnType.category:
            inputs.append({"name": c.name})
    if cfg.model.task == "regression":
        inputs.append({"name": cfg.data.label.name})
    return inputs


def learned_columns(cfg: RelayConfig) -> list[str]:
    """Features and label declared `categories: auto`: their values are counted per split."""
    return [
        c.name
        for c in cfg.data.columns
        if c.categories == AUTO and c.role in (Role.feature, Role.label)
    ]


def moments(train: pa.Table, inputs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """count, sum and sum of squares per numeric input."""
    stats = {}
    for f in inputs:
        values = selected(train, f).cast(pa.float64())
        total = pc.sum(values).as_py() or 0.0
        squares = pc.sum(pc.multiply(values, values)).as_py() or 0.0
        stats[f["name"]] = [float(pc.count(values).as_py()), float(total), float(squares)]
    return stats


def add_moments(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for name, values in more.items():
        into[name] = [a + b for a, b in zip(into.get(name, [0.0, 0.0, 0.0]), values, strict=True)]


def count_values(into: dict[str, Counter[str]], chunk: pa.Table, names: list[str]) -> None:
    """Add each column's non-null value counts (exact, so merging is order-free)."""
    for name in names:
        counts = into.setdefault(name, Counter())
        for item in pc.value_counts(chunk.column(name)).to_pylist():
            if item["values"] is not None:
                counts[item["values"]] += item["counts"]


def add_counts(
    into: dict[str, dict[str, Counter[str]]], more: dict[str, dict[str, Counter[str]]]
) -> None:
    for split, columns in more.items():
        for name, counts in columns.items():
            into.setdefault(split, {}).setdefault(name, Counter()).update(counts)


def feature_spec(
    cfg: RelayConfig,
    merged: dict[str, list[float]],
    counts: dict[str, dict[str, Counter[str]]] | None = None,
) -> dict[str, Any]:
    """Scaling statistics per numeric input; vocabularies declared, or learned from the
    training split's value `counts` (per split, per column) for categories: auto."""
    counts = counts or {}
    train = counts.get("train", {})
    scaled: dict[str, dict[str, float]] = {}
    for f in numeric_inputs(cfg):
        count, total, squares = merged.get(f["name"], [0.0, 0.0, 0.0])
        mean = total / count if count else 0.0
        std = float(np.sqrt(max(squares / count - mean * mean, 0.0))) if count else 0.0
        scaled[f["name"]] = {**f, "mean": mean, "std": std if std > 1e-12 else 1.0}
    label = cfg.data.label
    return {
        "numeric": [f for name, f in scaled.items() if name != label.name],
        "categorical": [
            _vocabulary(c, train.get(c.name, Counter()))
            for c in cfg.data.by_role(Role.feature)
            if c.type == ColumnType.category
        ],
        "label": (
            {"name": label.name, "classes": _classes(cfg, counts)}
            if cfg.model.task == "classification"
            else scaled[label.name]
        ),
    }


def _ranked(counts: Counter[str]) -> list[str]:
    """Most frequent first, ties by value: the same order whatever the file layout."""
    return [value for value, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _vocabulary(column: Column, train: Counter[str]) -> dict[str, Any]:
    if column.categories != AUTO:
        return {"name": column.name, "vocab": list(column.categories or [])}
    ranked = _ranked(train)
    kept = ranked[: column.max_categories or DEFAULT_MAX_CATEGORIES]
    # the bucket is an input of its own only where training rows fill it
    bucket = [OTHER] if len(kept) < len(ranked) else []
    return {"name": column.name, "vocab": kept + bucket, "other": OTHER}


def _classes(cfg: RelayConfig, counts: dict[str, dict[str, Counter[str]]]) -> list[str]:
    """Declared classes, or every class of the training split (categories: auto)."""
    label = cfg.data.label
    if label.categories != AUTO:
        return list(label.categories or [])
    classes = _ranked(counts.get("train", {}).get(label.name, Counter()))
    unseen = sorted(
        {v for split in ("val", "test") for v in counts.get(split, {}).get(label.name, {})}
        - set(classes)
    )
    if unseen:
        raise DataQualityError(
            f"label {label.name!r} (categories: auto) has class(es) {unseen} outside the "
            f"training split only; the model cannot learn them. Declare the label's categories, "
            "or add training rows of those classes"
        )
    fair = cfg.gates.fairness
    if fair and fair.positive_class is not None and fair.positive_class not in classes:
        raise ConfigError(
            f"gates.fairness.positive_class: {fair.positive_class!r} is not a class of the "
            f"label seen in training; use one of {classes}"
        )
    return classes


def input_schema(cfg: RelayConfig) -> list[dict[str, Any]]:
    """What a caller of the served model must send: the feature columns, as declared."""
    return [
        c.model_dump(
            mode="json", exclude={"role", *(k for k in _OPTIONAL_KEYS if getattr(c, k) is None)}
        )
        for c in cfg.data.by_role(Role.feature)
    ]
