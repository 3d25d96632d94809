"""Data with a learnable label for each task, and a CI config that trains on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import ci_raw, merge, write_csv


def write_with_signal(raw: Path, task: str, rows: int = 8000) -> None:
    """The synthetic rows, with home_ownership (multiclass) or loan_amount (regression) made a
    noisy function of age, late_payments and region: a label a model can learn."""
    from jobs.etl.synthetic import HOMES, make_rows

    rng = np.random.default_rng(5)
    raw.mkdir()
    for part, (low, high) in enumerate([(0, rows // 2), (rows // 2, rows)]):
        records = make_rows(low, high, seed=part, bad_row_rate=0.0)[0].to_pylist()
        for r in records:
            age, late, north = int(r["age"]), int(r["late_payments"]), r["region"] == "north"
            if task == "multiclass":
                home = (
                    "own"
                    if age >= 50
                    else "mortgage"
                    if r["region"] in ("north", "east")
                    else "rent"
                )
                r["home_ownership"] = home if rng.random() > 0.1 else str(rng.choice(HOMES))
            else:
                loan = 2000 + 800 * age + 5000 * late + 20000 * north + rng.normal(0, 3000)
                r["loan_amount"] = f"{min(max(loan, 100.0), 1_000_000.0):.2f}"
        write_csv(raw / f"part-{part}.csv", records)


def task_config(make_config: Any, tmp_path: Path, task: str, **override: Any) -> Any:
    """ci.yaml on `write_with_signal` rows: binary (the CI label), multiclass or regression."""
    if task == "binary":
        return make_config(**override)
    write_with_signal(tmp_path / "raw", task)
    columns = []
    for column in ci_raw()["data"]["columns"]:
        column = dict(column)
        if column["name"] == "defaulted":
            column["role"] = "ignore"
        if task == "multiclass" and column["name"] == "home_ownership":
            column["role"] = "label"
        if task == "regression" and column["name"] == "loan_amount":
            column["role"] = "label"
        columns.append(column)
    base = ci_raw()
    if task == "regression":
        base["gates"]["model"]["min"] = {"test_r2": 0.0}  # ci.yaml's floor is a binary one's
    if task == "multiclass":
        base["gates"]["model"]["min"] = {"test_accuracy": 0.5}  # no ROC AUC for 3 classes
    model = {"task": "regression" if task == "regression" else "classification"}
    return make_config(
        source={"kind": "files", "path": str(tmp_path / "raw")},
        base=base,
        data={"columns": columns},
        **merge({"model": model}, override),
    )
