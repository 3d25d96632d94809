"""Row checks against the declared schema: every row passes or is rejected with reasons.

Values that do not parse become reason ``<column>:type`` rather than failing the whole file;
other reasons are ``null``, ``range`` and ``set``. A rejected row keeps its original values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import Column, ColumnType

_INTEGER = r"^[-+]?\d+$"
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}

REASONS_COLUMN = "_reasons"
ROW_COLUMN = "_row"
SOURCE_COLUMN = "_source"


@dataclass
class CheckedRows:
    good: pa.Table
    rejects: pa.Table
    reasons: Counter[str]


def check_rows(
    table: pa.Table,
    columns: list[Column],
    source: str,
    first_row: int = 0,
    extra: list[tuple[str, np.ndarray]] = (),
) -> CheckedRows:
    """Split `table` into typed good rows and rejected rows (original values + reasons).

    `first_row` numbers the rows of a batch within its file; `extra` adds checks computed
    elsewhere (duplicate ids), as (reason code, mask) pairs.
    """
    typed: dict[str, pa.Array] = {}
    checks: list[tuple[str, np.ndarray]] = list(extra)
    for column in columns:
        raw = table.column(column.name).combine_chunks()
        values, type_bad = parse(raw, column.type)
        typed[column.name] = values
        checks.append((f"{column.name}:type", type_bad))
        is_null = _mask(values.is_null()) & ~type_bad
        if not column.nullable:
            checks.append((f"{column.name}:null", is_null))
        if column.min is not None or column.max is not None:
            low = pc.less(values, column.min) if column.min is not None else None
            high = pc.greater(values, column.max) if column.max is not None else None
            out = np.zeros(len(values), dtype=bool)
            for part in (low, high):
                if part is not None:
                    out |= _mask(part)
            checks.append((f"{column.name}:range", out))
        if column.pattern is not None:
            full = f"^(?:{column.pattern})$"
            matched = _mask(pc.match_substring_regex(values, full))
            checks.append((f"{column.name}:regex", ~matched & ~is_null & ~type_bad))
        if column.categories is not None:
            allowed = pc.is_in(values, value_set=pa.array(column.categories))
            checks.append((f"{column.name}:set", ~_mask(allowed) & ~is_null & ~type_bad))

    bad = np.zeros(table.num_rows, dtype=bool)
    for _, mask in checks:
        bad |= mask
    bad_rows = np.nonzero(bad)[0]
    reasons: list[list[str]] = [[] for _ in bad_rows]
    counts: Counter[str] = Counter()
    for code, mask in checks:
        hits = np.nonzero(mask[bad_rows])[0]
        counts[code] += len(hits)
        for j in hits:
            reasons[j].append(code)
    counts = Counter({k: v for k, v in counts.items() if v})

    keep = pa.array(~bad)
    good = pa.table(typed).filter(keep)
    taken = pa.array(bad_rows, type=pa.int64())
    rejects = pa.table(
        {
            **{c.name: table.column(c.name).cast(pa.string()).take(taken) for c in columns},
            REASONS_COLUMN: pa.array([";".join(r) for r in reasons], type=pa.string()),
            ROW_COLUMN: pc.add(taken, first_row),
            SOURCE_COLUMN: pa.array([source] * len(bad_rows), type=pa.string()),
        }
    )
    return CheckedRows(good=good, rejects=rejects, reasons=counts)


def parse(raw: pa.Array, kind: ColumnType) -> tuple[pa.Array, np.ndarray]:
    """(typed values with nulls where parsing failed, mask of values that failed to parse)."""
    n = len(raw)
    none = np.zeros(n, dtype=bool)
    if kind in (ColumnType.string, ColumnType.category):
        if pa.types.is_floating(raw.type):  # 1.0 in a float column means the category "1"
            raw = raw.cast(pa.int64()) if _integral(raw) else raw
        return raw.cast(pa.string()), none
    target = {
        ColumnType.int: pa.int64(),
        ColumnType.float: pa.float64(),
        ColumnType.timestamp: pa.timestamp("us"),
        ColumnType.bool: pa.bool_(),
    }[kind]
    if not (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
        if kind == ColumnType.int and pa.types.is_floating(raw.type) and not _integral(raw):
            fractional = _mask(pc.not_equal(raw, pc.floor(raw)))
            return pc.if_else(pa.array(fractional), None, raw).cast(target), fractional
        try:
            return raw.cast(target), none
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raw = raw.cast(pa.string())
    text = pc.utf8_trim_whitespace(raw)
    text = pc.if_else(pc.equal(text, ""), None, text)
    if kind == ColumnType.bool:
        lowered = pc.utf8_lower(text)
        ok = pc.is_in(lowered, value_set=pa.array(list(_BOOLS)))
        bad = ~_mask(ok) & _mask(pc.is_valid(text))
        values = pa.array([_BOOLS.get(v) for v in lowered.to_pylist()], type=pa.bool_())
        return values, bad
    pattern = {
        ColumnType.int: _INTEGER,
        ColumnType.float: _NUMBER,
        ColumnType.timestamp: _TIMESTAMP,
    }[kind]
    ok = _mask(pc.match_substring_regex(text, pattern))
    bad = ~ok & _mask(pc.is_valid(text))
    clean = pc.if_else(pa.array(ok), text, None)
    try:
        return clean.cast(target), bad
    except (pa.ArrowInvalid, OverflowError):
        return _cast_each(clean, target, bad)


def _cast_each(
    clean: pa.Array, target: pa.DataType, bad: np.ndarray
) -> tuple[pa.Array, np.ndarray]:
    """Slow path for the rare file where a well-formed value still fails (month 13, overflow)."""
    values = []
    bad = bad.copy()
    for i, item in enumerate(clean.to_pylist()):
        try:
            values.append(pa.array([item], type=pa.string()).cast(target)[0].as_py())
        except (pa.ArrowInvalid, OverflowError):
            values.append(None)
            bad[i] = True
    return pa.array(values, type=target), bad


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean array -> numpy, null counted as False."""
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)


def _integral(raw: pa.Array) -> bool:
    return not np.any(_mask(pc.not_equal(raw, pc.floor(raw))))
