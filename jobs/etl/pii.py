"""Scan for personal data nobody declared: emails, phone numbers and payment card numbers.

Runs on the raw string values of every column that is not already declared `pii` (or the
`id`), vectorised with Arrow regexes; card candidates must also pass the Luhn check.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import Column, ColumnType, Role

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE = r"^\+?\d[\d ().-]{7,18}\d$"
CARD = r"^\d(?:[ -]?\d){12,18}$"
_SCANNED = (ColumnType.string, ColumnType.category)


def scanned_columns(columns: list[Column]) -> list[str]:
    return [c.name for c in columns if c.type in _SCANNED and c.role not in (Role.pii, Role.id)]


def scan(table: pa.Table, names: list[str]) -> Counter[str]:
    """Counts of `<column>:<kind>` for values that look like undeclared PII.

    Each distinct value is checked once and weighted by how often it occurs, so low-cardinality
    columns cost almost nothing; the regexes are anchored or pre-filtered to fail fast.
    """
    found: Counter[str] = Counter()
    for name in names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        distinct = pc.value_counts(column)
        text = pc.utf8_trim_whitespace(distinct.field("values"))
        counts = distinct.field("counts")
        found[f"{name}:email"] += _weighted(
            pc.and_(pc.match_substring(text, "@"), pc.match_substring_regex(text, EMAIL)), counts
        )
        digits = pc.utf8_length(pc.replace_substring_regex(text, r"\D", ""))
        plausible = pc.and_(pc.greater_equal(digits, 9), pc.less_equal(digits, 15))  # E.164
        found[f"{name}:phone"] += _weighted(
            pc.and_(pc.match_substring_regex(text, PHONE), plausible), counts
        )
        cards = pc.fill_null(pc.match_substring_regex(text, CARD), False)
        found[f"{name}:card"] += sum(
            n
            for v, n in zip(
                text.filter(cards).to_pylist(), counts.filter(cards).to_pylist(), strict=True
            )
            if luhn(v)
        )
    return Counter({k: v for k, v in found.items() if v})


def luhn(value: str) -> bool:
    digits = [int(ch) for ch in value if ch.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _weighted(mask: pa.Array, counts: pa.Array) -> int:
    """How many rows the matching distinct values stand for."""
    return int(pc.sum(counts.filter(pc.fill_null(mask, False))).as_py() or 0)
