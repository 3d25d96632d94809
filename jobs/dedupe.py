"""Duplicate ids across all raw files, with bounded memory: a sharded pass over the id column.

Each file's id hashes (128 bits, two lanes) are split into shards by hash; one task per shard
finds every repeat. The first occurrence in (file, row) order is kept, so the result does not
depend on scheduling; later ones are rejected as `<id>:duplicate`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from cluster.config import RelayConfig
from jobs.rowhash import value_hash
from jobs.sources import RawFile, batches


def duplicate_rows(files: list[RawFile], cfg: RelayConfig) -> list[np.ndarray]:
    """Per file, the sorted row numbers whose id already appeared earlier."""
    import ray

    shards = max(1, min(len(files), 32))
    hash_task = ray.remote(num_cpus=1)(_id_hashes).options(num_returns=shards)
    refs = [hash_task.remote(f, i, cfg, shards) for i, f in enumerate(files)]
    if shards == 1:
        refs = [[r] for r in refs]
    find = ray.remote(num_cpus=1)(_repeats)
    found = ray.get([find.remote(*[r[s] for r in refs]) for s in range(shards)])
    rows: list[list[np.ndarray]] = [[] for _ in files]
    for shard in found:
        for file_index, positions in shard.items():
            rows[file_index].append(positions)
    return [np.sort(np.concatenate(r)) if r else np.empty(0, np.int64) for r in rows]


def _id_hashes(raw: RawFile, index: int, cfg: RelayConfig, shards: int) -> list[np.ndarray]:
    try:
        keys = _hash_ids(raw, index, cfg, fast=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):  # the same fallback as the main pass
        keys = _hash_ids(raw, index, cfg, fast=False)
    shard_of = keys[0] % np.uint64(shards)
    out = [keys[:, shard_of == s] for s in range(shards)]
    return out if shards > 1 else out[0]


def _hash_ids(raw: RawFile, index: int, cfg: RelayConfig, fast: bool) -> np.ndarray:
    """(lane 0, lane 1, file index, row) per non-null id, streamed batch by batch."""
    id_name = cfg.data.id.name
    parts, offset = [], 0
    for table in batches(raw, [id_name], cfg.etl.batch_rows, fast=fast):
        ids = table.column(id_name)
        valid = np.asarray(ids.is_valid())
        rows = np.arange(offset, offset + len(ids))[valid]
        ids = ids.filter(pa.array(valid))
        parts.append(
            np.stack(
                [
                    value_hash(ids, 0),
                    value_hash(ids, 1),
                    np.full(len(rows), index, np.uint64),
                    rows.astype(np.uint64),
                ]
            )
        )
        offset += table.num_rows
    return np.concatenate(parts, axis=1) if parts else np.empty((4, 0), np.uint64)


def _repeats(*parts: np.ndarray) -> dict[int, np.ndarray]:
    keys = np.concatenate(parts, axis=1)
    if not keys.shape[1]:
        return {}
    order = np.lexsort((keys[3], keys[2], keys[1], keys[0]))
    ordered = keys[:, order]
    same = (ordered[0, 1:] == ordered[0, :-1]) & (ordered[1, 1:] == ordered[1, :-1])
    repeats = ordered[:, 1:][:, same]
    return {int(f): repeats[3, repeats[2] == f].astype(np.int64) for f in np.unique(repeats[2])}
