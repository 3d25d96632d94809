"""Vectorised 64-bit hashes of Arrow values and rows, stable across processes and machines.

They make the dataset digest independent of file and batch layout (an order-free sum of row
hashes) and give every split key (id, group or row) a uniform split bucket, at numpy speed
rather than a Python loop.
Not cryptographic: the digest feeds their sums into sha256.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_U64 = np.uint64
_MULTIPLIERS = (_U64(0x100000001B3), _U64(0x9E3779B97F4A7C15))
_NULL = _U64(0x6A09E667F3BCC908)
_POWERS: dict[int, np.ndarray] = {}


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: every input bit affects every output bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def value_hash(array: pa.Array | pa.ChunkedArray, lane: int = 0) -> np.ndarray:
    """One uint64 per value; nulls hash to a constant, equal values to equal hashes."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        hashed = _bytes_hash(array, lane)
    else:
        if pa.types.is_floating(kind):
            values = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        else:  # integers, booleans, timestamps and dates hash by their integer value
            as_int = array.cast(pa.int8()) if pa.types.is_boolean(kind) else array
            values = pc.fill_null(as_int.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        with np.errstate(over="ignore"):
            hashed = mix(values.view(_U64) * _MULTIPLIERS[lane] + _U64(lane + 1))
    if array.null_count:
        hashed[~pc.is_valid(array).to_numpy(zero_copy_only=False)] = _NULL
    return hashed


def row_hash(table: pa.Table, lane: int = 0) -> np.ndarray:
    """Combine the value hashes of every column (in the table's column order) per row."""
    out = np.full(table.num_rows, _U64(lane + 7), dtype=_U64)
    with np.errstate(over="ignore"):
        for column in table.columns:
            out = mix(out * _MULTIPLIERS[lane] + value_hash(column, lane))
    return out


def unit_interval(array: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uniform float in [0, 1) per value, keyed by `seed`."""
    return unit_of(value_hash(array), seed)


def unit_of(hashes: np.ndarray, seed: int) -> np.ndarray:
    """A uniform float in [0, 1) per 64-bit hash (of a value or a row), keyed by `seed`."""
    with np.errstate(over="ignore"):
        keyed = mix(hashes ^ mix(np.array([seed], dtype=_U64)))
    return (keyed >> _U64(11)).astype(np.float64) / float(1 << 53)


def _bytes_hash(array: pa.Array, lane: int) -> np.ndarray:
    """Polynomial hash of each value's bytes: sum(byte_j * m^j), then length-mixed."""
    array = array.cast(pa.large_binary())
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + n + 1]
    data = array.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    sums = np.zeros(n, dtype=_U64)
    nonempty = np.nonzero(lengths)[0]
    if len(nonempty):
        begin, end = int(offsets[0]), int(offsets[-1])
        region = raw[begin:end].astype(_U64) + _U64(1)
        position = np.arange(end - begin, dtype=np.int64) - np.repeat(starts - begin, lengths)
        with np.errstate(over="ignore"):
            weighted = region * _powers(int(lengths.max()), lane)[position]
        sums[nonempty] = np.add.reduceat(weighted, (starts - begin)[nonempty])
    with np.errstate(over="ignore"):
        return mix((sums ^ (lengths.astype(_U64) * _MULTIPLIERS[1 - lane])) + _U64(lane + 3))


def _powers(length: int, lane: int) -> np.ndarray:
    """m**0 .. m**(size-1) modulo 2**64 (uint64 products wrap), cached per size and lane."""
    size = 1 << max(length - 1, 1).bit_length()
    key = size * 2 + lane
    if key not in _POWERS:
        with np.errstate(over="ignore"):
            steps = np.full(size, _MULTIPLIERS[lane], dtype=_U64)
            steps[0] = 1
            _POWERS[key] = np.cumprod(steps, dtype=_U64)
    return _POWERS[key]
