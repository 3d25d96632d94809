"""Raw values to declared types, in Arrow: one parser for ETL's row checks, batch scoring and the
endpoint's timestamps, so a value means the same wherever it arrives.

Timestamps come out as timestamp[us] holding UTC. A column's `format` is a strftime pattern
(Arrow's vectorised strptime), `epoch_s` or `epoch_ms` (numbers), or absent: ISO 8601,
`YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]]` with an optional `Z` or `±HH:MM` offset; text without
an offset is taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import EPOCH_FORMATS, ColumnType

_INTEGER = r"^[-+]?\d+$"
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
_ZONE = r"(Z|[+-]\d{2}:?\d{2})$"
_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_US = pa.timestamp("us")
_US_UTC = pa.timestamp("us", "UTC")
_EPOCH = datetime(1970, 1, 1)
_PER_UNIT = {"epoch_s": 1_000_000, "epoch_ms": 1_000}  # microseconds per epoch unit
_FIRST_US, _LAST_US = -62_135_596_800e6, 253_402_300_799e6  # years 1 to 9999


def parse(raw: pa.Array, kind: ColumnType, fmt: str | None = None) -> tuple[pa.Array, np.ndarray]:
    """(typed values with nulls where parsing failed, mask of values that failed to parse).

    `fmt` is a timestamp column's declared format (None: ISO 8601).
    """
    n = len(raw)
    none = np.zeros(n, dtype=bool)
    if kind in (ColumnType.string, ColumnType.category):
        if pa.types.is_floating(raw.type):  # 1.0 in a float column means the category "1"
            raw = raw.cast(pa.int64()) if _integral(raw) else raw
        return raw.cast(pa.string()), none
    if kind == ColumnType.timestamp:
        if pa.types.is_timestamp(raw.type) or pa.types.is_date(raw.type):
            return raw.cast(_US), none  # a zoned timestamp keeps its instant: UTC
        if fmt in EPOCH_FORMATS:
            numbers, bad = parse(raw, ColumnType.float)
            values, outside = _from_epoch(numbers, _PER_UNIT[fmt])
            return values, bad | outside
    target = {
        ColumnType.int: pa.int64(),
        ColumnType.float: pa.float64(),
        ColumnType.timestamp: _US,
        ColumnType.bool: pa.bool_(),
    }[kind]
    if not (pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type)):
        if kind == ColumnType.int and pa.types.is_floating(raw.type) and not _integral(raw):
            fractional = as_mask(pc.not_equal(raw, pc.floor(raw)))
            return pc.if_else(pa.array(fractional), None, raw).cast(target), fractional
        try:
            if kind != ColumnType.timestamp:  # a number is an instant only as epoch_s/_ms
                return raw.cast(target), none
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        raw = raw.cast(pa.string())
    text = pc.utf8_trim_whitespace(raw)
    text = pc.if_else(pc.equal(text, ""), None, text)
    if kind == ColumnType.bool:
        lowered = pc.utf8_lower(text)
        ok = pc.is_in(lowered, value_set=pa.array(list(_BOOLS)))
        bad = ~as_mask(ok) & as_mask(pc.is_valid(text))
        values = pa.array([_BOOLS.get(v) for v in lowered.to_pylist()], type=pa.bool_())
        return values, bad
    if kind == ColumnType.timestamp and fmt is not None:
        return _strptime(text, fmt)
    pattern = {
        ColumnType.int: _INTEGER,
        ColumnType.float: _NUMBER,
        ColumnType.timestamp: _ISO,
    }[kind]
    ok = as_mask(pc.match_substring_regex(text, pattern))
    bad = ~ok & as_mask(pc.is_valid(text))
    clean = pc.if_else(pa.array(ok), text, None)
    try:
        return clean.cast(target), bad
    except (pa.ArrowInvalid, OverflowError):
        if kind != ColumnType.timestamp:
            return _cast_each(clean, target, bad)
    # ISO with offsets (or an impossible date such as Feb 30): the zoned values apart
    zoned = pa.array(as_mask(pc.match_substring_regex(clean, _ZONE)))
    local, bad = _cast(pc.if_else(zoned, None, clean), _US, bad)
    shifted, bad = _cast(pc.if_else(zoned, clean, None), _US_UTC, bad)
    return pc.if_else(zoned, shifted.cast(_US), local), bad


def describe(fmt: str | None) -> str:
    """A timestamp format in words, for error messages and the OpenAPI document."""
    if fmt is None:
        return "ISO 8601 (YYYY-MM-DD[THH:MM[:SS]] with an optional Z or ±HH:MM offset)"
    if fmt in EPOCH_FORMATS:
        unit = "seconds" if fmt == "epoch_s" else "milliseconds"
        return f"{fmt} (a number: {unit} since 1970-01-01 UTC)"
    return f"the strftime format {fmt!r}"


def render(value: datetime | None, fmt: str | None) -> str | int | float | None:
    """A stored instant (naive UTC) as a request carries it: text in `fmt`, or an epoch number."""
    if value is None:
        return None
    if fmt in EPOCH_FORMATS:
        micros = (value - _EPOCH) // timedelta(microseconds=1)
        unit = _PER_UNIT[fmt]
        return micros // unit if micros % unit == 0 else micros / unit
    return value.isoformat() if fmt is None else value.replace(tzinfo=UTC).strftime(fmt)


def request_record(input_schema: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """A stored row of the model's input columns as a request sends it: timestamps rendered
    in their column's format."""
    formats = {c["name"]: c.get("format") for c in input_schema if c["type"] == "timestamp"}
    return {k: render(v, formats[k]) if k in formats else v for k, v in row.items()}


def as_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean array -> numpy, null counted as False."""
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)


def _from_epoch(numbers: pa.Array, per_unit: int) -> tuple[pa.Array, np.ndarray]:
    micros = pc.round(pc.multiply(numbers, float(per_unit)))
    inside = pc.and_(
        pc.is_finite(micros),
        pc.and_(pc.greater_equal(micros, _FIRST_US), pc.less_equal(micros, _LAST_US)),
    )
    outside = ~as_mask(inside) & as_mask(pc.is_valid(numbers))
    kept = pc.if_else(pa.array(outside), None, micros)
    return kept.cast(pa.int64()).cast(_US), outside


def _strptime(text: pa.Array, fmt: str) -> tuple[pa.Array, np.ndarray]:
    """Arrow's strptime; with %z the instant is shifted to UTC (the local time, parsed with %Z
    consuming the offset, is what the day check compares)."""
    local = pc.strptime(text, format=fmt.replace("%z", "%Z"), unit="us", error_is_null=True)
    values = (
        pc.strptime(text, format=fmt, unit="us", error_is_null=True).cast(_US)
        if "%z" in fmt
        else local
    )
    bad = as_mask(pc.is_valid(text)) & ~as_mask(pc.is_valid(values))
    bad |= _rolled_over(text, local, fmt)
    return pc.if_else(pa.array(bad), None, values), bad


def _rolled_over(text: pa.Array, local: pa.Array, fmt: str) -> np.ndarray:
    """Arrow's strptime carries a day past its month's end into the next month (Feb 30 ->
    Mar 1) where the ISO cast refuses it. Such a value lands on day 1 to 3: only those rows'
    written day is compared with the parsed one."""
    out = np.zeros(len(text), dtype=bool)
    pattern = _day_pattern(fmt)
    if pattern is None:
        return out
    rows = np.nonzero(as_mask(pc.less_equal(pc.day(local), 3)))[0]
    if rows.size:
        taken = pa.array(rows)
        found = pc.extract_regex(text.take(taken), pattern)
        written = pc.struct_field(found, "day").cast(pa.int64())  # null where no match
        out[rows] = as_mask(pc.not_equal(written, pc.day(local.take(taken))))
    return out


_COMPOSITE = {"T": "%H:%M:%S", "R": "%H:%M", "D": "%m/%d/%y", "F": "%Y-%m-%d"}
_NUMERIC = {"Y": 4, "G": 4, "j": 3, "u": 1, "w": 1, **dict.fromkeys("mdeHIMSyCUVWgkl", 2)}
_WORDS = set("aAbBhpZ")
_OTHER = {"z": r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)", "n": r"\s*", "t": r"\s*", "%": "%"}


@lru_cache(maxsize=64)
def _day_pattern(fmt: str) -> str | None:
    """A regex locating the day of month (group `day`) in text of `fmt`; None without one, or
    with a directive this check does not know (Arrow alone decides those)."""
    for short, long in _COMPOSITE.items():
        fmt = fmt.replace(f"%{short}", long)
    out, day = ["^"], False
    for literal, directive in re.findall(r"([^%]*)(?:%(.?))?", fmt):
        out += [r"\s*" if char.isspace() else re.escape(char) for char in literal]
        if directive in ("d", "e") and not day:
            out.append(r"\s*(?P<day>\d{1,2})")
            day = True
        elif directive in _NUMERIC:
            out.append(rf"\s*\d{{1,{_NUMERIC[directive]}}}")
        elif directive in _WORDS:
            out.append(r"\s*[A-Za-z]+")
        elif directive in _OTHER:
            out.append(_OTHER[directive])
        elif directive:
            return None
    return "".join(out) + "$" if day else None


def _cast(values: pa.Array, target: pa.DataType, bad: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    try:
        return values.cast(target), bad
    except (pa.ArrowInvalid, OverflowError):
        return _cast_each(values, target, bad)


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


def _integral(raw: pa.Array) -> bool:
    return not np.any(as_mask(pc.not_equal(raw, pc.floor(raw))))
