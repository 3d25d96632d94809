"""A split as encoded arrays, in content order: every family trains on the same matrix the
endpoint encodes, whatever the file layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from jobs.data.rowhash import row_hash, value_hash
from jobs.train.context import TrialContext
from serving.features import encode, encode_label


def load_arrays(ctx: TrialContext, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (n, k), labels: class index int64 or standardised float32)."""
    table = pq.read_table(Path(ctx.dataset_path) / split)
    # Rows in content order (by id hash, then row hash; rows without an id by row hash):
    # training sees the same sequence whatever the file layout. Rows tied on both are equal.
    keys = [row_hash(table, 1), row_hash(table, 0)]
    if ctx.id_column is not None:
        keys.append(value_hash(table.column(ctx.id_column)))
    table = table.take(np.lexsort(keys))
    return encode(ctx.features, table), encode_label(ctx.features, table)


def encoded_split(ctx: TrialContext, split: str) -> Any:
    """The split as a Ray Dataset of {x: float32[n_features], y: label}, encoded like serving."""
    import ray

    def to_tensors(table: Any) -> dict[str, Any]:
        return {"x": encode(ctx.features, table), "y": encode_label(ctx.features, table)}

    return ray.data.read_parquet(str(Path(ctx.dataset_path) / split)).map_batches(
        to_tensors, batch_format="pyarrow"
    )
