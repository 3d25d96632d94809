"""Drift of a dataset against a model's training data, without that data's files.

A model's spec carries a reference of its training split: per numeric feature the interior
quantile edges and the share of rows in each bin, per categorical feature the share of each
category. A later run bins its own training split on the same edges and compares shares
(PSI, or the largest gap between the two binned CDFs as a KS statistic).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from serving.features import OTHER, selected

EPSILON = 1e-4  # floor for empty bins: PSI stays finite when a bin is new or vanished


def numeric_reference(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Interior quantile edges (deduplicated: a constant feature has one bin) and shares."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return {"edges": [], "shares": [1.0]}
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    return {"edges": edges.tolist(), "shares": numeric_shares(values, edges.tolist()).tolist()}


def numeric_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of non-null values in each bin; bin i holds edges[i-1] < v <= edges[i]."""
    values = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def category_reference(values: list[Any]) -> dict[str, Any]:
    return {"shares": category_shares(values)}


def category_shares(values: list[Any]) -> dict[str, float]:
    seen = [str(v) for v in values if v is not None]
    keys, counts = np.unique(np.array(seen, dtype=object), return_counts=True)
    return {str(k): float(c) / max(len(seen), 1) for k, c in zip(keys, counts, strict=True)}


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: sum((a - e) * ln(a / e)); 0 when the shares are equal."""
    e = np.clip(np.asarray(expected, dtype=float), EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest gap between the two cumulative shares (KS statistic on the reference's bins)."""
    gaps = np.cumsum(np.asarray(actual, dtype=float)) - np.cumsum(np.asarray(expected, dtype=float))
    return float(np.max(np.abs(gaps))) if gaps.size else 0.0


SCORES = {"psi": psi, "ks": ks}


def reference(table: pa.Table, features: dict[str, Any], bins: int) -> dict[str, Any]:
    """The reference of a training split for the spec's numeric and categorical features.

    A timestamp part keeps its column and part; a learned (categories: auto) feature its
    vocabulary, so that a later table's other values fall in the same `__other__` share.
    """
    return {
        "bins": bins,
        "numeric": {
            f["name"]: {
                **numeric_reference(_floats(table, f), bins),
                **{k: f[k] for k in ("column", "part") if k in f},
            }
            for f in features["numeric"]
        },
        "categorical": {
            f["name"]: {
                **category_reference(
                    _categories(table, f["name"], f["vocab"] if "other" in f else None)
                ),
                **({"vocab": f["vocab"]} if "other" in f else {}),
            }
            for f in features["categorical"]
        },
    }


def prediction_reference(spec: dict[str, Any], output: np.ndarray, bins: int) -> dict[str, Any]:
    """A model's answers to held-out rows, shaped like a feature reference: the predicted
    class's shares (and the binary positive probability's bins), or the predicted values'
    bins, under the names the inference log gives them, so live answers drift against it."""
    if spec["task"] == "regression":
        values = np.asarray(output, dtype=float)
        return {"bins": bins, "numeric": {"prediction": numeric_reference(values, bins)}}
    classes = spec["features"]["label"]["classes"]
    numeric = {}
    if len(classes) == 2:
        positive = np.asarray(output[:, 1], dtype=float)
        numeric[f"probability_{classes[1]}"] = numeric_reference(positive, bins)
    predicted = [classes[i] for i in np.argmax(output, axis=1)]
    return {
        "bins": bins,
        "numeric": numeric,
        "categorical": {"prediction": category_reference(predicted)},
    }


def scores(ref: dict[str, Any], table: pa.Table, method: str) -> dict[str, float]:
    """Per feature of the reference that the table still has: its drift score."""
    score = SCORES[method]
    out: dict[str, float] = {}
    for name, entry in ref["numeric"].items():
        if entry.get("column", name) in table.column_names:
            shares = numeric_shares(_floats(table, {"name": name, **entry}), entry["edges"])
            out[name] = score(np.array(entry["shares"]), shares)
    for name, entry in ref.get("categorical", {}).items():
        if name in table.column_names:
            now = category_shares(_categories(table, name, entry.get("vocab")))
            keys = sorted(set(entry["shares"]) | set(now))
            expected = np.array([entry["shares"].get(k, 0.0) for k in keys])
            out[name] = score(expected, np.array([now.get(k, 0.0) for k in keys]))
    return out


def _floats(table: pa.Table, f: dict[str, Any]) -> np.ndarray:
    column = selected(table, f).cast(pa.float64())
    return column.to_numpy(zero_copy_only=False).astype(float)


def _categories(table: pa.Table, name: str, learned: list[str] | None) -> list[Any]:
    """The column's values; with a learned vocabulary, each other value as `__other__`."""
    values = table.column(name).to_pylist()
    if learned is None:
        return values
    known = set(learned)
    return [v if v is None or v in known else OTHER for v in values]
