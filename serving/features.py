"""The feature transform, one implementation for training, evaluation and serving.

The statistics come from the training split (computed by ETL) and travel inside the model
spec, so a served model applies exactly the transform it was trained with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def feature_names(spec: dict[str, Any]) -> list[str]:
    names = [f["name"] for f in spec["numeric"]]
    for f in spec["categorical"]:
        names += [f"{f['name']}={v}" for v in f["vocab"]]
    return names


def encode(spec: dict[str, Any], table: pa.Table) -> np.ndarray:
    """Standardise numerics (nulls -> the training mean) and one-hot categoricals (unknown -> 0)."""
    parts = []
    for f in spec["numeric"]:
        values = _as_float(table.column(f["name"]))
        values = (values - f["mean"]) / f["std"]
        parts.append(np.nan_to_num(values, nan=0.0)[:, None])
    for f in spec["categorical"]:
        index = pc.index_in(table.column(f["name"]).cast(pa.string()), pa.array(f["vocab"]))
        codes = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
        onehot = np.zeros((len(codes), len(f["vocab"])), dtype=np.float32)
        known = codes >= 0
        onehot[np.nonzero(known)[0], codes[known]] = 1.0
        parts.append(onehot)
    if not parts:
        return np.zeros((table.num_rows, 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def encode_label(spec: dict[str, Any], table: pa.Table) -> np.ndarray:
    """Class indices for classification, standardised values for regression."""
    label = spec["label"]
    column = table.column(label["name"])
    if "classes" in label:
        index = pc.index_in(column.cast(pa.string()), pa.array(label["classes"]))
        if index.null_count:
            raise ValueError(f"label {label['name']} has values outside {label['classes']}")
        return index.to_numpy(zero_copy_only=False).astype(np.int64)
    return ((_as_float(column) - label["mean"]) / label["std"]).astype(np.float32)


def _as_float(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int8())
    as_float = column.cast(pa.float64())
    return pc.fill_null(as_float, float("nan")).to_numpy(zero_copy_only=False)
