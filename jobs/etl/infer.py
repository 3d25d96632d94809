"""A first data contract inferred from a sample of raw files, for `relay init`.

Every value is looked at as the text ETL will see (Parquet columns are cast to strings), so a
type proposed here is one ETL's row checks accept for every sampled value. Each column comes
with the reason it was classified so, one line a column: the user reviews a proposal, not a
guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import FileSource
from cluster.errors import ConfigError, DataQualityError
from jobs.data.sources import RawFile, batches, column_names, resolve_files
from jobs.etl import pii

SAMPLE_ROWS = 10_000
MAX_CATEGORIES = 20  # a text column with at most this many distinct values is a category
INT = re.compile(r"^[+-]?\d+$")
FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
BOOLS = {"true", "false", "yes", "no"}
# what ETL's default (ISO 8601) parser accepts: upper-case T and Z, at most 9 fraction digits
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$")
# strftime patterns tried in order; day-first only wins where month-first cannot parse
DATE_FORMATS = (
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
)
ID_NAME = re.compile(r"(^|[_\W])(id|key|uuid|guid)$", re.IGNORECASE)
TIME_NAME = re.compile(r"(time|date|ts|_at)$", re.IGNORECASE)
EPOCHS = {"epoch_s": (1e8, 4.1e9), "epoch_ms": (1e11, 4.1e12)}  # 1973..2100


@dataclass
class Proposal:
    """One column of the proposed `data.columns`, and why."""

    spec: dict[str, Any]
    reason: str
    comment: str = ""


@dataclass
class Sample:
    files: list[RawFile]
    table: pa.Table  # every column as strings


def read_sample(path: str, rows: int = SAMPLE_ROWS) -> Sample:
    """Up to `rows` rows from the first files the path names, as ETL reads them."""
    files = resolve_files(FileSource(kind="files", path=path))
    names = column_names(files[0])
    if not names:
        raise DataQualityError(f"{files[0].uri}: no columns found (an empty file?)")
    tables: list[pa.Table] = []
    for raw in files:
        tables += _head(raw, names, rows - sum(t.num_rows for t in tables))
        if sum(t.num_rows for t in tables) >= rows:
            break
    taken = sum(t.num_rows for t in tables)
    if not taken:
        raise DataQualityError(f"{files[0].uri}: the file has a header but no rows")
    return Sample(files=files, table=pa.concat_tables(tables).slice(0, rows))


def _head(raw: RawFile, names: list[str], rows: int) -> list[pa.Table]:
    """The file's first `rows` rows as text; Arrow first, the forgiving reader as ETL falls back."""
    for fast in (True, False):
        tables: list[pa.Table] = []
        try:
            for table in batches(raw, names, min(rows, 131_072), fast):
                tables.append(pa.table({n: _text(table.column(n)) for n in names}))
                if sum(t.num_rows for t in tables) >= rows:
                    break
            return tables
        except (pa.ArrowInvalid, UnicodeDecodeError):
            continue
    raise DataQualityError(f"{raw.uri}: not readable as {raw.format}")


def propose(sample: Sample, label: str, task: str | None) -> tuple[list[Proposal], str]:
    """Each column's proposal, and the task (from the label's values unless given)."""
    names = sample.table.column_names
    if label not in names:
        raise ConfigError(
            f"--label: {sample.files[0].uri} has no column {label!r}; its columns: "
            + ", ".join(names)
        )
    found = pii.scan(sample.table, names)
    proposals = []
    id_taken = False
    for name in names:
        values = sample.table.column(name)
        if name == label:
            proposal, task = _label(name, values, task)
        else:
            flagged = sorted(k.split(":", 1)[1] for k in found if k.split(":", 1)[0] == name)
            proposal = _column(name, values, flagged, id_taken)
            id_taken |= proposal.spec.get("role") == "id"
        proposals.append(proposal)
    assert task is not None
    return proposals, task


def _column(name: str, values: pa.ChunkedArray, pii_kinds: list[str], id_taken: bool) -> Proposal:
    present = _present(values)
    base: dict[str, Any] = {"name": name}
    nulls = len(values) - len(present)
    if not nulls:
        base["nullable"] = False
    if not len(present):
        return Proposal({**base, "type": "string", "role": "ignore"}, "no values in the sample")
    distinct = len(pc.unique(present))
    unique = distinct == len(present) and not nulls
    kind, extra, why = _kind(name, present)
    if pii_kinds and kind == "string":
        kinds = " and ".join(pii_kinds)
        return Proposal(
            {**base, "type": "string", "role": "pii"},
            f"values look like {kinds}: dropped by ETL (etl.pii: drop)",
        )
    if kind == "timestamp":
        parts = ["year", "month", "day", "day_of_week"] + (["hour"] if extra.pop("_time") else [])
        return Proposal(
            {**base, "type": "timestamp", **extra, "parts": parts},
            f"timestamp ({why}): a feature through its parts",
            "or role: timestamp with etl.split: {by: time} to test on the newest rows",
        )
    key_like = (kind == "string" and not pc.any(pc.match_substring(present, " ")).as_py()) or (
        kind == "int" and ID_NAME.search(name)
    )
    if unique and key_like and not id_taken:
        return Proposal(
            {"name": name, "type": kind, "role": "id", "nullable": False},
            f"{distinct} distinct non-null values in {len(present)} rows: the row key",
        )
    if kind in ("int", "float", "bool"):
        return Proposal({**base, "type": kind}, why)
    if distinct <= MAX_CATEGORIES and distinct * 2 <= len(present):
        return Proposal(
            {**base, "type": "category", "categories": "auto"},
            f"{distinct} distinct values: a category learned from the training split",
        )
    return Proposal(
        {**base, "type": "string", "role": "ignore"},
        f"free text ({distinct} distinct values in {len(present)} rows): not a model input",
    )


def _label(name: str, values: pa.ChunkedArray, task: str | None) -> tuple[Proposal, str]:
    present = _present(values)
    kind, _, why = _kind(name, present) if len(present) else ("string", {}, "empty")
    distinct = len(pc.unique(present))
    if task is None:
        few = distinct <= MAX_CATEGORIES
        task = "regression" if kind == "float" or (kind == "int" and not few) else "classification"
    spec: dict[str, Any] = {"name": name, "role": "label", "nullable": False}
    if task == "regression":
        if kind not in ("int", "float"):
            raise ConfigError(
                f"--task regression: the label {name!r} is not numeric ({why}); "
                "use --task classification"
            )
        return Proposal({**spec, "type": kind}, f"label, {why}: regression"), task
    note = f"rows without a label are quarantined ({len(values) - len(present)} in the sample)"
    return (
        Proposal(
            {**spec, "type": "category", "categories": "auto"},
            f"label, {distinct} classes in the sample: classification",
            note if len(present) < len(values) else "",
        ),
        task,
    )


def _kind(name: str, present: pa.Array) -> tuple[str, dict[str, Any], str]:
    """The narrowest type every sampled value parses as, with its `format` and the reason."""
    n = len(present)
    if pc.all(pc.match_substring_regex(present, INT.pattern)).as_py():
        numbers = pc.cast(present, pa.int64())
        low, high = pc.min(numbers).as_py(), pc.max(numbers).as_py()
        for fmt, (lo, hi) in EPOCHS.items():
            if TIME_NAME.search(name) and lo <= low and high <= hi:
                return "timestamp", {"format": fmt, "_time": True}, f"{fmt} by name and range"
        return "int", {}, f"all {n} values are integers ({low}..{high})"
    if pc.all(pc.match_substring_regex(present, FLOAT.pattern)).as_py():
        return "float", {}, f"all {n} values are numbers"
    if pc.all(pc.is_in(pc.utf8_lower(present), pa.array(sorted(BOOLS)))).as_py():
        return "bool", {}, "true/false or yes/no values"
    if pc.all(pc.match_substring_regex(present, ISO.pattern)).as_py():
        has_time = bool(pc.any(pc.greater(pc.utf8_length(present), 10)).as_py())
        return "timestamp", {"_time": has_time}, "ISO 8601 dates"
    for fmt in DATE_FORMATS:
        parsed = pc.strptime(present, format=fmt, unit="s", error_is_null=True)
        if not parsed.null_count:
            return "timestamp", {"format": fmt, "_time": "%H" in fmt}, f"every value is {fmt}"
    return "string", {}, "text"


def _present(values: pa.ChunkedArray) -> pa.Array:
    """The non-empty values, trimmed (CSV's empty field is a null to ETL)."""
    text = pc.utf8_trim_whitespace(values.combine_chunks())
    return text.filter(pc.and_(pc.is_valid(text), pc.not_equal(text, "")))


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else column.cast(pa.string())
