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

    params = {"v": GENERATOR_VERSION, "seed": seed, **source.model_dump()}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    final = root / f"synthetic-{key}"
    done = final / "_planted.json"
    if not done.exists():
        tmp = root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
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
    files = sorted(p for p in final.iterdir() if p.suffix in (".csv", ".parquet"))
    return files, json.loads(done.read_text())


def _write_part(
    folder: str, index: int, start: int, stop: int, seed: int, source: SyntheticSource
) -> dict[str, int]:
    table, planted = make_rows(
        start, stop, derive_seed(seed, "synthetic", index), source.bad_row_rate
    )
    path = Path(folder) / f"part-{index:05d}.{source.format}"
    if source.format == "csv":
        from pyarrow import csv

        csv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    return planted


def make_rows(
    start: int, stop: int, seed: int, bad_row_rate: float
) -> tuple[pa.Table, dict[str, int]]:
    """Rows start..stop-1 as raw strings (as a CSV landing zone holds them)."""
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

    columns: dict[str, list[str | None]] = {
        "customer_id": [f"C{i:010d}" for i in ids],
        "application_ts": [str(s) for s in stamps],
        "email": [f"{NAMES[f]}.{i}@example.com" for f, i in zip(first, ids, strict=True)],
        "gender": [GENDERS[g] for g in gender],
        "age": [str(a) for a in age],
        "income": [f"{x:.2f}" for x in income],
        "loan_amount": [f"{x:.2f}" for x in loan],
        "credit_score": [str(s) for s in score],
        "late_payments": [str(x) for x in late],
        "employment_years": [f"{x:.1f}" for x in employed],
        "region": [REGIONS[r] for r in region],
        "home_ownership": [HOMES[h] for h in home],
        "defaulted": [str(d) for d in defaulted],
    }
    # Legitimate missing values in nullable columns: not defects.
    for name, rate in (
        ("income", 0.02),
        ("credit_score", 0.01),
        ("employment_years", 0.01),
        ("email", 0.01),
    ):
        for row in np.nonzero(rng.random(n) < rate)[0]:
            columns[name][row] = None

    planted: Counter[str] = Counter()
    bad_rows = np.nonzero(rng.random(n) < bad_row_rate)[0]
    bad_rows = bad_rows[bad_rows > 0]  # row 0 stays clean: planted duplicates repeat its id
    kinds = rng.integers(0, len(DEFECTS), len(bad_rows))
    for row, kind in zip(bad_rows, kinds, strict=True):
        column, reason, value = DEFECTS[kind]
        if reason == "duplicate":
            value = columns[column][0]
        elif value is not None:
            value = value.format(id=ids[row])
        columns[column][row] = value
        planted[f"{column}:{reason}"] += 1
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})
    return table, dict(planted)
