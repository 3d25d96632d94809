"""Which split each row goes to: a seeded hash of its split key, or its place in time.

`etl.split.by: hash` (the default) hashes the split key, `DataConfig.split_key`: the group
column when declared (all rows of a customer together), else the id, else the whole row (all
declared values, parsed: identical rows land together, so duplicates cannot leak from train into
test). A row whose group is null has no group: its own row decides.

`etl.split.by: time` needs global boundaries, while ETL runs one task per file. A first pass
(one task per file) parses only the timestamp column, exactly as the main pass does, and writes
its sorted int64 microseconds (8 bytes a row) to disk; the boundaries are then exact order
statistics, found by a binary search over the value range against the memory-mapped files, so
no process holds more than one file's column. Exact, not a quantile sketch: a sketch's answer
depends on how its pieces were merged, and the split must be identical on every re-run whatever
the file layout. The boundaries are the timestamps of rank floor(train * n) and
floor((train + val) * n) among the n parseable timestamps read (0-based, ascending); a split
begins at its boundary, so rows tied at a boundary all go to the later split.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import Column, RelayConfig
from cluster.errors import DataQualityError
from jobs.data.rowhash import row_hash, unit_of, value_hash
from jobs.data.rows import check_rows
from jobs.data.sources import RawFile, batches

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Boundaries:
    """Where val and test begin, in microseconds since the epoch (UTC)."""

    column: str
    val: int
    test: int

    def masks(self, typed: pa.Table) -> dict[str, np.ndarray]:
        stamps = _micros(typed.column(self.column))
        return {
            "train": stamps < self.val,
            "val": (stamps >= self.val) & (stamps < self.test),
            "test": stamps >= self.test,
        }


def masks(typed: pa.Table, cfg: RelayConfig, bounds: Boundaries | None) -> dict[str, np.ndarray]:
    """Split membership of each row of `typed` (the parsed declared columns of good rows)."""
    if bounds is not None:
        return bounds.masks(typed)
    kind, column = cfg.data.split_key()
    if column is None:
        keys = row_hash(typed)
    else:
        values = typed.column(column.name)
        keys = value_hash(values)
        if kind == "group" and values.null_count:
            missing = ~pc.is_valid(values).to_numpy(zero_copy_only=False)
            keys[missing] = row_hash(typed.filter(pa.array(missing)))
    bucket = unit_of(keys, cfg.seed)
    first, second = np.cumsum([cfg.etl.split.train, cfg.etl.split.val])
    return {
        "train": bucket < first,
        "val": (bucket >= first) & (bucket < second),
        "test": bucket >= second,
    }


def record(cfg: RelayConfig, bounds: Boundaries | None) -> dict[str, Any]:
    """The split as recorded in dataset.json and the ETL run: shares, key, time boundaries."""
    split = cfg.etl.split.model_dump(mode="json")
    if bounds is None:
        kind, column = cfg.data.split_key()
        return {**split, "key": kind, "key_column": column.name if column else None}
    return {
        **split,
        "column": bounds.column,
        "key": "time",
        "key_column": bounds.column,
        "val_from": _iso(bounds.val),
        "test_from": _iso(bounds.test),
    }


def time_boundaries(files: list[RawFile], cfg: RelayConfig, work: Path) -> Boundaries | None:
    """The boundaries of a time split (None for a hash split), from a pass over one column."""
    import ray

    if cfg.etl.split.by != "time":
        return None
    column = cfg.data.timestamp_column(cfg.etl.split.column)
    assert column is not None  # the config validator checked it
    work.mkdir(parents=True, exist_ok=True)
    task = ray.remote(num_cpus=1, max_retries=3)(_write_times)
    ray.get([task.remote(f, i, column, cfg.etl.batch_rows, str(work)) for i, f in enumerate(files)])
    stamps = [np.load(work / f"times-{i:05d}.npy", mmap_mode="r") for i in range(len(files))]
    try:
        return _boundaries(stamps, column.name, cfg)
    finally:
        del stamps
        shutil.rmtree(work, ignore_errors=True)


def _boundaries(stamps: list[np.ndarray], column: str, cfg: RelayConfig) -> Boundaries:
    total = sum(len(s) for s in stamps)
    if not total:
        raise DataQualityError(
            f"etl.split.by: time: no row has a valid timestamp in column {column!r}"
        )
    split = cfg.etl.split
    shares = (split.train, split.train + split.val)
    ranks = [min(total - 1, math.floor(share * total + 1e-9)) for share in shares]
    val, test = (_kth(stamps, rank) for rank in ranks)
    train_rows = _count_below(stamps, val)
    val_rows = _count_below(stamps, test) - train_rows
    if not train_rows or not val_rows:
        empty = "train" if not train_rows else "val"
        raise DataQualityError(
            f"etl.split.by: time: the {empty} split would be empty: {total} timestamps of "
            f"{column!r} but val begins at {_iso(val)} and test at {_iso(test)} (rows tied at "
            "a boundary go to the later split); widen etl.split.train/val or use by: hash"
        )
    return Boundaries(column=column, val=val, test=test)


def _kth(stamps: list[np.ndarray], rank: int) -> int:
    """The `rank`-th smallest value (0-based) over all sorted arrays: the least x with more
    than `rank` values <= x, by bisection on the value range (64 steps at most)."""
    low = min(int(s[0]) for s in stamps if len(s))
    high = max(int(s[-1]) for s in stamps if len(s))
    while low < high:
        middle = low + (high - low) // 2
        if sum(int(np.searchsorted(s, middle, side="right")) for s in stamps) > rank:
            high = middle
        else:
            low = middle + 1
    return low


def _count_below(stamps: list[np.ndarray], value: int) -> int:
    return sum(int(np.searchsorted(s, value, side="left")) for s in stamps)


def _write_times(raw: RawFile, index: int, column: Column, batch_rows: int, work: str) -> int:
    try:
        values = _times(raw, column, batch_rows, fast=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):  # the same fallback as the main pass
        values = _times(raw, column, batch_rows, fast=False)
    values.sort()
    np.save(Path(work) / f"times-{index:05d}.npy", values)
    return len(values)


def _times(raw: RawFile, column: Column, batch_rows: int, fast: bool) -> np.ndarray:
    """The column's parseable values, parsed by the main pass's own checks."""
    parts = [
        _micros(check_rows(table, [column], source=raw.name).good.column(column.name))
        for table in batches(raw, [column.name], batch_rows, fast=fast)
    ]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _micros(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    micros = values.cast(pa.timestamp("us", values.type.tz)).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False)


def _iso(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()
