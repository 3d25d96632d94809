"""A deterministic synthetic credit-risk dataset, written as raw files by one Ray task per file.

The label depends on the features through a known logistic model, so a trained model has real
signal to find. A configured share of rows carries exactly one planted defect each, and the
generator returns how many of each kind it planted, so ETL's quarantine can be checked exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import SyntheticSource
from cluster.seeds import derive_seed

GENERATOR_VERSION = 2
REGIONS = ["north", "south", "east", "west"]
HOMES = ["rent", "own", "mortgage"]
GENDERS = ["female", "male", "other"]
NAMES = ["alex", "sam", "kim", "lee", "maria", "noah", "li", "omar", "ana", "yuki", "ivan", "zoe"]

# One planted defect per bad row: (column, reason code ETL must report, raw value written).
DEFECTS: list[tuple[str, str, str | None]] = [
    ("age", "type", "unknown"),
    ("income", "range", "-1200.5"),
    ("region", "set", "atlantis"),
    ("loan_amount", "null", None),
    ("credit_score", "range", "9999"),
    ("employment_years", "type", "ten"),
    ("defaulted", "null", None),
    ("customer_id", "regex", "legacy-{id}"),  # unique, so never a duplicate as well
    ("customer_id", "duplicate", None),  # takes the id of the file's first row
]


def generate(source: SyntheticSource, seed: int, root: Path) -> tuple[list[Path], dict[str, int]]:
    """Write (or reuse) the raw files; return them and the planted defect counts."""
    import ray

    final = folder(source, seed, root)
    done = final / "_planted.json"
    if not done.exists():
        tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        bounds = np.linspace(0, source.rows, source.files + 1).astype(np.int64)
        task = ray.remote(num_cpus=1)(_write_part)
        refs = [
            task.remote(str(tmp), i, int(bounds[i]), int(bounds[i + 1]), seed, source)
            for i in range(source.files)
        ]
        planted: Counter[str] = Counter()
        for counts in ray.get(refs):
            planted.update(counts)
        (tmp / "_planted.json").write_text(json.dumps(dict(sorted(planted.items()))))
        if final.exists():  # a concurrent run finished first: same content by construction
            shutil.rmtree(tmp)
        else:
            tmp.rename(final)
    return generated_files(source, seed, root), json.loads(done.read_text())


def folder(source: SyntheticSource, seed: int, root: Path) -> Path:
    """Where a generated dataset lives: named by everything that determines its content."""
    params = {"v": GENERATOR_VERSION, "seed": seed, **source.model_dump()}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"synthetic-{key}"


def generated_files(source: SyntheticSource, seed: int, root: Path) -> list[Path]:
    final = folder(source, seed, root)
    return sorted(p for p in final.iterdir() if p.suffix in (".csv", ".parquet"))


CHUNK_ROWS = 250_000


def _write_part(
    folder: str, index: int, start: int, stop: int, seed: int, source: SyntheticSource
) -> dict[str, int]:
    """One file, written chunk by chunk: memory stays flat however many rows it holds."""
    path = Path(folder) / f"part-{index:05d}.{source.format}"
    planted: Counter[str] = Counter()
    writer = None
    try:
        for chunk, low in enumerate(range(start, stop, CHUNK_ROWS)):
            high = min(low + CHUNK_ROWS, stop)
            chunk_seed = derive_seed(seed, "synthetic", index, chunk)
            table, counts = make_rows(low, high, chunk_seed, source.bad_row_rate, first_id=start)
            planted.update(counts)
            if writer is None:
                writer = _writer(path, source.format, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return dict(planted)


def _writer(path: Path, fmt: str, schema: pa.Schema):
    if fmt == "csv":
        from pyarrow import csv

        return csv.CSVWriter(str(path), schema)
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(path), schema)


def make_rows(
    start: int, stop: int, seed: int, bad_row_rate: float, first_id: int | None = None
) -> tuple[pa.Table, dict[str, int]]:
    """Rows start..stop-1 as raw strings (as a CSV landing zone holds them).

    Planted duplicates repeat the id of row `first_id` (default `start`), which stays clean.
    """
    first_id = start if first_id is None else first_id
    rng = np.random.default_rng(seed)
    n = stop - start
    ids = np.arange(start, stop)
    age = np.clip(rng.normal(41, 12, n), 18, 90).astype(np.int64)
    income = np.clip(rng.lognormal(10.8, 0.5, n), 5_000, 2_000_000)
    loan = np.clip(rng.lognormal(9.5, 0.8, n), 500, 500_000)
    score = np.clip(rng.normal(680, 60, n), 300, 850).astype(np.int64)
    late = np.clip(rng.poisson(0.6, n), 0, 30)
    employed = np.clip(rng.gamma(2.0, 3.5, n), 0, 50)
    region = rng.integers(0, len(REGIONS), n)
    home = rng.integers(0, len(HOMES), n)
    gender = rng.choice(len(GENDERS), n, p=[0.49, 0.49, 0.02])
    logit = (
        -1.2
        + 1.1 * np.log(loan / income * 10)
        - 0.012 * (score - 680)
        + 0.55 * late
        - 0.03 * (employed - 7)
        - 0.015 * (age - 41)
        + np.array([0.0, 0.35, -0.2, 0.1])[region]
        + np.array([0.3, -0.3, 0.0])[home]
    )
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    seconds = rng.integers(0, 2 * 365 * 86400, n)
    stamps = np.datetime64("2024-01-01T00:00:00") + seconds.astype("timedelta64[s]")
    first = rng.integers(0, len(NAMES), n)

    id_text = _ids(ids)
    columns: dict[str, pa.Array] = {
        "customer_id": id_text,
        "application_ts": pa.array(stamps, pa.timestamp("s")).cast(pa.string()),
        "email": pc.binary_join_element_wise(
            pa.array(NAMES).take(pa.array(first)),
            ".",
            pc.utf8_slice_codeunits(id_text, 1),
            "@example.com",
            "",
        ),
        "gender": pa.array(GENDERS).take(pa.array(gender)),
        "age": pa.array(age).cast(pa.string()),
        "income": _decimal(income, 2),
        "loan_amount": _decimal(loan, 2),
        "credit_score": pa.array(score).cast(pa.string()),
        "late_payments": pa.array(late).cast(pa.string()),
        "employment_years": _decimal(employed, 1),
        "region": pa.array(REGIONS).take(pa.array(region)),
        "home_ownership": pa.array(HOMES).take(pa.array(home)),
        "defaulted": pa.array(defaulted).cast(pa.string()),
    }
    # Legitimate missing values in nullable columns: not defects.
    for name, rate in (
        ("income", 0.02),
        ("credit_score", 0.01),
        ("employment_years", 0.01),
        ("email", 0.01),
    ):
        columns[name] = _set(columns[name], rng.random(n) < rate, None)

    planted: Counter[str] = Counter()
    bad = rng.random(n) < bad_row_rate
    bad[ids == first_id] = False
    kinds = rng.integers(0, len(DEFECTS), n)
    for kind, (column, reason, value) in enumerate(DEFECTS):
        mask = bad & (kinds == kind)
        if not mask.any():
            continue
        planted[f"{column}:{reason}"] += int(mask.sum())
        if reason == "duplicate":
            columns[column] = _set(columns[column], mask, f"C{first_id:010d}")
        elif reason == "regex":
            legacy = pc.binary_join_element_wise("legacy-", pa.array(ids).cast(pa.string()), "")
            columns[column] = pc.if_else(pa.array(mask), legacy, columns[column])
        else:
            columns[column] = _set(columns[column], mask, value)
    return pa.table(columns), dict(planted)


def _ids(ids: np.ndarray) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(ids).cast(pa.string()), 10, "0")
    return pc.binary_join_element_wise("C", digits, "")


def _decimal(values: np.ndarray, places: int) -> pa.Array:
    """Fixed decimals as text, as an export would write them (e.g. 1200.50)."""
    scaled = np.round(values * 10**places).astype(np.int64)
    whole = pa.array(scaled // 10**places).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(scaled % 10**places).cast(pa.string()), places, "0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _set(array: pa.Array, mask: np.ndarray, value: str | None) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(value, pa.string()), array)
