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
from serving.values import as_mask, parse

REASONS_COLUMN = "_reasons"
ROW_COLUMN = "_row"
SOURCE_COLUMN = "_source"


@dataclass
class CheckedRows:
    good: pa.Table
    rejects: pa.Table
    reasons: Counter[str]
    unparsed: dict[str, str]  # timestamp column -> a sample value, where none of them parsed


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
    unparsed: dict[str, str] = {}
    for column in columns:
        raw = table.column(column.name).combine_chunks()
        values, type_bad = parse(raw, column.type, column.format)
        typed[column.name] = values
        checks.append((f"{column.name}:type", type_bad))
        if (
            column.type == ColumnType.timestamp
            and type_bad.any()
            and not values.is_valid().true_count
        ):
            unparsed[column.name] = str(raw[int(np.argmax(type_bad))].as_py())
        is_null = as_mask(values.is_null()) & ~type_bad
        if not column.nullable:
            checks.append((f"{column.name}:null", is_null))
        if column.min is not None or column.max is not None:
            low = pc.less(values, column.min) if column.min is not None else None
            high = pc.greater(values, column.max) if column.max is not None else None
            out = np.zeros(len(values), dtype=bool)
            for part in (low, high):
                if part is not None:
                    out |= as_mask(part)
            checks.append((f"{column.name}:range", out))
        if column.pattern is not None:
            full = f"^(?:{column.pattern})$"
            matched = as_mask(pc.match_substring_regex(values, full))
            checks.append((f"{column.name}:regex", ~matched & ~is_null & ~type_bad))
        if isinstance(column.categories, list):  # auto: every value is allowed
            allowed = pc.is_in(values, value_set=pa.array(column.categories))
            checks.append((f"{column.name}:set", ~as_mask(allowed) & ~is_null & ~type_bad))

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
    return CheckedRows(good=good, rejects=rejects, reasons=counts, unparsed=unparsed)
