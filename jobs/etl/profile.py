"""Column profiles that merge across files and batches, independent of how rows are laid out.

Counts, nulls, min, max and sums merge exactly; category/bool value counts are exact; quantiles
come from a bottom-k sample chosen by row hash (the same rows whatever the file layout).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_ROWS = 20_000
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _counted(t: pa.DataType) -> bool:
    return pa.types.is_boolean(t)


class Profile:
    """Accumulates one table's worth of column profiles at a time."""

    def __init__(self, schema: pa.Schema, top_columns: set[str]):
        self.schema = schema
        self.top_columns = top_columns
        self.columns: dict[str, dict[str, Any]] = {
            f.name: {
                "type": str(f.type),
                "count": 0,
                "nulls": 0,
                "min": None,
                "max": None,
                "sum": 0.0,
                "top": {},
            }
            for f in schema
        }
        self.sample_keys = np.empty(0, dtype=np.uint64)
        self.sample: dict[str, np.ndarray] = {
            f.name: np.empty(0) for f in schema if _numeric(f.type)
        }

    def add(self, table: pa.Table, keys: np.ndarray) -> None:
        for field in self.schema:
            column = table.column(field.name)
            p = self.columns[field.name]
            p["nulls"] += column.null_count
            p["count"] += len(column) - column.null_count
            if len(column) == column.null_count:
                continue
            if _numeric(field.type) or pa.types.is_timestamp(field.type):
                bounds = pc.min_max(column)
                low, high = bounds["min"].as_py(), bounds["max"].as_py()
                p["min"] = low if p["min"] is None else min(p["min"], low)
                p["max"] = high if p["max"] is None else max(p["max"], high)
            if _numeric(field.type):
                p["sum"] += float(pc.sum(column.cast(pa.float64())).as_py() or 0.0)
            if field.name in self.top_columns or _counted(field.type):
                for item in pc.value_counts(column).to_pylist():
                    key = str(item["values"])
                    p["top"][key] = p["top"].get(key, 0) + item["counts"]
        self._sample(table, keys)

    def _sample(self, table: pa.Table, keys: np.ndarray) -> None:
        fresh = {
            name: pc.fill_null(table.column(name).cast(pa.float64()), np.nan).to_numpy(
                zero_copy_only=False
            )
            for name in self.sample
        }
        self._keep_lowest(keys, fresh)

    def _keep_lowest(self, keys: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Bottom-k by row hash over the current sample plus new rows: order-independent."""
        merged = np.concatenate([self.sample_keys, keys])
        keep = np.argsort(merged, kind="stable")[:SAMPLE_ROWS]
        self.sample_keys = merged[keep]
        for name in self.sample:
            self.sample[name] = np.concatenate([self.sample[name], values[name]])[keep]

    def merge(self, other: Profile) -> None:
        for name, p in self.columns.items():
            q = other.columns[name]
            p["count"] += q["count"]
            p["nulls"] += q["nulls"]
            p["sum"] += q["sum"]
            for bound, pick in (("min", min), ("max", max)):
                values = [v for v in (p[bound], q[bound]) if v is not None]
                p[bound] = pick(values) if values else None
            for key, count in q["top"].items():
                p["top"][key] = p["top"].get(key, 0) + count
        self._keep_lowest(other.sample_keys, other.sample)

    def report(self) -> dict[str, Any]:
        out = {}
        for name, p in self.columns.items():
            entry = {k: p[k] for k in ("type", "count", "nulls", "min", "max")}
            if entry["min"] is not None and not isinstance(entry["min"], int | float):
                entry["min"], entry["max"] = str(entry["min"]), str(entry["max"])
            if name in self.sample:
                entry["mean"] = p["sum"] / p["count"] if p["count"] else None
                values = self.sample[name][~np.isnan(self.sample[name])]
                entry["quantiles"] = (
                    {
                        str(q): float(v)
                        for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
                    }
                    if len(values)
                    else {}
                )
            if p["top"]:
                top = sorted(p["top"].items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                entry["top"] = dict(top)
            out[name] = entry
        return out
