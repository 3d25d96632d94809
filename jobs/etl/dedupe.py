"""Duplicates across all raw files, in bounded memory: a sharded pass over the duplicate key.

The key is the id when one is declared, else the whole row: all declared values as read (so
text `1.0` and `1` differ; both still land in the same split, which hashes parsed values).
Each file's key hashes (128 bits, two lanes) are spread over shard files on disk by hash; one
task per shard then finds every repeat, so no process ever holds more than one shard. The first
occurrence in (file, row) order is the original, whatever the scheduling; `etl.duplicates`
says what happens to the later ones: rejected as `<id>:duplicate` / `row:duplicate`, or kept.
Either way they are counted. A 128-bit hash makes a false duplicate practically impossible.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from cluster.config import RelayConfig
from jobs.data.rowhash import row_hash, value_hash
from jobs.data.sources import RawFile, batches

SHARD_BYTES = 64 << 20  # raw bytes per shard: ~15 MB of keys per shard task
_ROW_BITS = 40  # rows per file < 2**40; the file index takes the bits above


def policy(cfg: RelayConfig) -> str:
    """`etl.duplicates` resolved: unless set, an id must be unique and rows may repeat."""
    return cfg.etl.duplicates or ("reject" if cfg.data.id is not None else "keep")


def reason(cfg: RelayConfig) -> str:
    """The reject reason of a duplicate: `<id>:duplicate`, or `row:duplicate` without an id."""
    return f"{cfg.data.id.name if cfg.data.id is not None else 'row'}:duplicate"


def duplicate_rows(files: list[RawFile], cfg: RelayConfig, work: Path) -> list[np.ndarray]:
    """Per file, the sorted row numbers whose key already appeared earlier."""
    import ray

    shards = shard_count(files)
    hash_task = ray.remote(num_cpus=1, max_retries=3)(write_keys)
    ray.get([hash_task.remote(f, i, cfg, shards, str(work)) for i, f in enumerate(files)])
    find = ray.remote(num_cpus=1, max_retries=3)(repeats)
    found = ray.get([find.remote(str(work / f"shard-{s:03d}")) for s in range(shards)])
    shutil.rmtree(work, ignore_errors=True)
    return per_file(found, len(files))


def per_file(found: list[dict[int, np.ndarray]], files: int) -> list[np.ndarray]:
    """Shard results -> for each file, its sorted duplicate row numbers."""
    rows: list[list[np.ndarray]] = [[] for _ in range(files)]
    for shard in found:
        for file_index, positions in shard.items():
            rows[file_index].append(positions)
    return [np.sort(np.concatenate(r)) if r else np.empty(0, np.int64) for r in rows]


def shard_count(files: list[RawFile]) -> int:
    return int(min(256, max(1, sum(f.size for f in files) // SHARD_BYTES + 1)))


def write_keys(raw: RawFile, index: int, cfg: RelayConfig, shards: int, work: str) -> int:
    try:
        keys = _hash_keys(raw, index, cfg, fast=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):  # the same fallback as the main pass
        keys = _hash_keys(raw, index, cfg, fast=False)
    shard_of = keys[:, 0] % np.uint64(shards)
    for s in range(shards):
        folder = Path(work) / f"shard-{s:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"file-{index:05d}.npy", keys[shard_of == s])
    return len(keys)


def _hash_keys(raw: RawFile, index: int, cfg: RelayConfig, fast: bool) -> np.ndarray:
    """(lane 0, lane 1, file << 40 | row) per non-null id, or per row without an id, streamed
    batch by batch (a null id is no key: that row is rejected as `<id>:null` anyway)."""
    id_column = cfg.data.id
    names = [id_column.name] if id_column is not None else [c.name for c in cfg.data.columns]
    parts, offset = [], 0
    for table in batches(raw, names, cfg.etl.batch_rows, fast=fast):
        rows = np.arange(offset, offset + table.num_rows, dtype=np.uint64)
        if id_column is not None:
            ids = table.column(id_column.name)
            valid = np.asarray(ids.is_valid())
            ids, rows = ids.filter(pa.array(valid)), rows[valid]
            lanes = value_hash(ids, 0), value_hash(ids, 1)
        else:
            values = table.select(names)  # declared order, whatever order the file has
            lanes = row_hash(values, 0), row_hash(values, 1)
        where = (np.uint64(index) << np.uint64(_ROW_BITS)) | rows
        parts.append(np.stack([*lanes, where], axis=1))
        offset += table.num_rows
    return np.concatenate(parts) if parts else np.empty((0, 3), np.uint64)


def repeats(folder: str) -> dict[int, np.ndarray]:
    files = sorted(Path(folder).glob("file-*.npy"))
    keys = np.concatenate([np.load(f) for f in files]) if files else np.empty((0, 3), np.uint64)
    if not len(keys):
        return {}
    ordered = keys[np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))]
    same = (ordered[1:, 0] == ordered[:-1, 0]) & (ordered[1:, 1] == ordered[:-1, 1])
    where = ordered[1:, 2][same]
    file_of = (where >> np.uint64(_ROW_BITS)).astype(np.int64)
    row_of = (where & np.uint64((1 << _ROW_BITS) - 1)).astype(np.int64)
    return {int(f): row_of[file_of == f] for f in np.unique(file_of)}
