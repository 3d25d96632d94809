"""One raw file through ETL, streamed batch by batch inside a Ray task.

Validates, quarantines, applies the PII policy, splits (`jobs.etl.splits`) and appends each
batch to that file's share of every split. Returns only mergeable summaries (counts, moments,
row-hash sums, a profile), never rows, so the driver's memory does not grow with the data.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.compute.runtime import node_id
from cluster.config import ColumnType, RelayConfig, Role
from cluster.errors import DataQualityError
from jobs.data.rowhash import row_hash
from jobs.data.rows import REASONS_COLUMN, ROW_COLUMN, SOURCE_COLUMN, check_rows
from jobs.data.sources import RawFile, batches
from jobs.etl import dedupe, featurestats, pii, splits
from jobs.etl.profile import Profile
from serving.values import describe

SPLITS = ("train", "val", "test")
REJECTS = "rejects"
SAMPLE_REJECTS = 3
_ARROW_TYPES = {
    ColumnType.int: pa.int64(),
    ColumnType.float: pa.float64(),
    ColumnType.string: pa.string(),
    ColumnType.category: pa.string(),
    ColumnType.timestamp: pa.timestamp("us"),
    ColumnType.bool: pa.bool_(),
}


def output_schema(cfg: RelayConfig) -> pa.Schema:
    """The clean dataset's columns: declared order, PII dropped or hashed, `ignore` dropped."""
    fields = []
    for column in cfg.data.columns:
        if column.role == Role.ignore or (column.role == Role.pii and cfg.etl.pii == "drop"):
            continue
        kind = pa.string() if column.role == Role.pii else _ARROW_TYPES[column.type]
        fields.append(pa.field(column.name, kind))
    return pa.schema(fields)


def rejects_schema(cfg: RelayConfig) -> pa.Schema:
    names = [(c.name, pa.string()) for c in cfg.data.columns]
    return pa.schema(
        [
            *names,
            (REASONS_COLUMN, pa.string()),
            (ROW_COLUMN, pa.int64()),
            (SOURCE_COLUMN, pa.string()),
        ]
    )


@dataclass
class FilePart:
    """What one file contributes to the dataset summary."""

    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    moments: dict[str, list[float]] = field(default_factory=dict)
    category_counts: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # auto
    hashes: dict[str, list[int]] = field(default_factory=dict)  # split -> [rows, lane0, lane1]
    pii: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    profile: Profile | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    undeclared: list[str] = field(default_factory=list)
    slow_path: str | None = None
    node_id: str = ""  # where the task ran (lineage: the spread over a cluster's nodes)

    def add_hashes(self, name: str, lane0: np.ndarray, lane1: np.ndarray) -> None:
        """Order-free content sums: the digest does not depend on file or batch layout."""
        rows, sum0, sum1 = self.hashes.get(name, [0, 0, 0])
        self.hashes[name] = [
            rows + len(lane0),
            (sum0 + int(lane0.sum(dtype=np.uint64))) % (1 << 64),
            (sum1 + int(lane1.sum(dtype=np.uint64))) % (1 << 64),
        ]


def process_file(
    raw: RawFile,
    index: int,
    out: str,
    cfg: RelayConfig,
    pii_key: bytes | None,
    duplicates: np.ndarray,
    undeclared: list[str],
    bounds: splits.Boundaries | None = None,
) -> FilePart:
    """The Ray task. Outputs are overwritten whole, so a retried task leaves no trace."""
    args = (raw, index, Path(out), cfg, pii_key, duplicates, bounds)
    try:
        part = _stream(*args, fast=True)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:  # not parseable by Arrow: go slow
        part = _stream(*args, fast=False)
        part.slow_path = str(exc).splitlines()[0][:200]
    part.undeclared = undeclared
    part.manifest = {
        "path": raw.uri,
        "format": raw.format,
        "bytes": raw.size,
        "sha256": raw.sha256,
        "rows": part.counts["rows_in"],
    }
    part.node_id = node_id()
    return part


def _stream(
    raw: RawFile,
    index: int,
    out: Path,
    cfg: RelayConfig,
    pii_key: bytes | None,
    duplicates: np.ndarray,
    bounds: splits.Boundaries | None,
    fast: bool,
) -> FilePart:
    part = FilePart()
    schema = output_schema(cfg)
    numeric = featurestats.numeric_inputs(cfg)
    learned = featurestats.learned_columns(cfg)
    scanned = pii.scanned_columns(cfg.data.columns) if cfg.etl.pii_scan != "off" else []
    reject_duplicates = dedupe.policy(cfg) == "reject"
    part.profile = Profile(
        schema, top_columns={c.name for c in cfg.data.columns if c.type == ColumnType.category}
    )
    name = f"part-{index:05d}.parquet"
    writers = {s: pq.ParquetWriter(out / s / name, schema) for s in SPLITS}
    writers[REJECTS] = pq.ParquetWriter(out / REJECTS / name, rejects_schema(cfg))
    offset = 0
    try:
        for table in batches(raw, [c.name for c in cfg.data.columns], cfg.etl.batch_rows, fast):
            rows = np.arange(offset, offset + table.num_rows)
            dup = np.isin(rows, duplicates, assume_unique=True)
            checked = check_rows(
                table,
                cfg.data.columns,
                source=raw.name,
                first_row=offset,
                extra=[(dedupe.reason(cfg), dup)] if reject_duplicates and dup.any() else [],
            )
            if not offset and checked.unparsed:
                raise unparsed_error(raw, cfg, checked.unparsed, table.num_rows)
            offset += table.num_rows
            part.counts["rows_in"] += table.num_rows
            part.counts["duplicate_rows"] += int(dup.sum())
            part.counts["rows_rejected"] += checked.rejects.num_rows
            part.reasons.update(checked.reasons)
            part.pii.update(pii.scan(table, scanned))
            if len(part.samples) < SAMPLE_REJECTS:
                part.samples += checked.rejects.slice(0, SAMPLE_REJECTS).to_pylist()
            writers[REJECTS].write_table(checked.rejects)
            content = checked.rejects.drop_columns([ROW_COLUMN, SOURCE_COLUMN])
            part.add_hashes(REJECTS, row_hash(content, 0), row_hash(content, 1))

            good = _apply_pii(checked.good, cfg, pii_key).select(schema.names).cast(schema)
            part.counts["rows_out"] += good.num_rows
            lane0, lane1 = row_hash(good, 0), row_hash(good, 1)
            part.profile.add(good, lane0)
            for split, mask in splits.masks(checked.good, cfg, bounds).items():
                chunk = good.filter(pa.array(mask))
                writers[split].write_table(chunk)
                part.counts[f"rows_{split}"] += chunk.num_rows
                part.add_hashes(split, lane0[mask], lane1[mask])
                featurestats.count_values(
                    part.category_counts.setdefault(split, {}), chunk, learned
                )
                if split == "train":
                    featurestats.add_moments(part.moments, featurestats.moments(chunk, numeric))
    finally:
        for writer in writers.values():
            writer.close()
    part.samples = part.samples[:SAMPLE_REJECTS]
    for split in (*SPLITS, REJECTS):
        part.hashes.setdefault(split, [0, 0, 0])
    return part


def unparsed_error(
    raw: RawFile, cfg: RelayConfig, unparsed: dict[str, str], rows: int
) -> DataQualityError:
    """A timestamp column none of whose values in a file's first batch parse: its format is
    wrong, and quarantining the whole file would hide that."""
    formats = {c.name: c.format for c in cfg.data.columns}
    lines = [
        f"  - {name}: e.g. {sample!r} is not {describe(formats[name])}"
        for name, sample in unparsed.items()
    ]
    return DataQualityError(
        f"{raw.uri}: no value of timestamp column(s) {sorted(unparsed)} in the first {rows} "
        "rows parses:\n" + "\n".join(lines) + "\nSet data.columns[].format to the values' "
        "strftime pattern (e.g. '%m/%d/%Y %H:%M'), or epoch_s / epoch_ms"
    )


def _apply_pii(table: pa.Table, cfg: RelayConfig, key: bytes | None) -> pa.Table:
    """Drop or keyed-hash (HMAC-SHA256) every `pii` column; a bare sha would be reversible."""
    for column in cfg.data.by_role(Role.pii):
        if cfg.etl.pii == "drop":
            table = table.drop_columns([column.name])
            continue
        assert key is not None  # checked on the driver before any task starts
        hashed = [
            None if v is None else hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()
            for v in table.column(column.name).to_pylist()
        ]
        position = table.column_names.index(column.name)
        table = table.set_column(position, column.name, pa.array(hashed, type=pa.string()))
    return table
