"""A real dataset without an id, end to end: scikit-learn's bundled iris CSV through every stage.

Iris has no key and one exact duplicate row (kept and counted). Its measurements are grouped by
sepal length (a stand-in for "the same plant"), so the group decides the split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import sklearn
from mlflow.tracking import MlflowClient

from cluster.configfile import parse_config
from jobs.artifacts import Dataset
from jobs.etl.file import SPLITS
from jobs.pipeline import runner
from tests.conftest import ci_raw, free_port, merge, write_csv

IRIS = Path(sklearn.__file__).parent / "datasets" / "data" / "iris.csv"
MEASURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]


def iris_rows() -> list[dict]:
    """The bundled file's rows under named columns (its first line is a count, not a header)."""
    with IRIS.open() as handle:
        lines = list(csv.reader(handle))[1:]
    rows = []
    for *values, target in lines:
        row = dict(zip(MEASURES, values, strict=True))
        row["collector"] = f"c{round(float(row['sepal_length']) * 10)}"
        rows.append({**row, "species": SPECIES[int(target)]})
    return rows


def test_iris_without_an_id_with_a_group_runs_and_serves_what_was_evaluated(ray_cluster, tmp_path):
    from ray import serve

    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    rows = iris_rows()
    write_csv(raw_dir / "iris-a.csv", rows[:80])
    write_csv(raw_dir / "iris-b.csv", rows[80:])
    state = tmp_path / "state"
    raw = merge(
        ci_raw(),
        {
            "name": "iris",
            "data": {
                "columns": [
                    *({"name": m, "type": "float", "nullable": False} for m in MEASURES),
                    {"name": "collector", "type": "string", "role": "group"},
                    {
                        "name": "species",
                        "type": "category",
                        "role": "label",
                        "nullable": False,
                        "categories": SPECIES,
                    },
                ],
            },
            "model": {"name": "iris-any-dataset"},
            "tune": {"num_samples": 1},
            "train": {"epochs": 20, "batch_size": 32},
            "serve": {"port": free_port(), "route_prefix": "/iris"},
            "runtime": {"state_dir": str(state)},
            "tracking": {"uri": f"sqlite:///{state / 'mlflow.db'}"},
        },
    )
    raw["data"]["source"] = {"kind": "files", "path": str(raw_dir)}
    raw["gates"]["model"]["min"] = {}  # three classes: no roc_auc to bound
    cfg = parse_config(raw)
    try:
        summary = runner.run(cfg, keep_serving=True)  # the session's Ray: Serve stays up
    finally:
        serve.shutdown()
    assert summary["prediction"]["matches_offline"] is True
    assert summary["model_version"] == 1
    assert summary["rows"]["rows_out"] == 150 and summary["rows"]["duplicate_rows"] == 1
    dataset = Dataset.open(Path(summary["dataset_path"]))
    assert dataset.meta["id_column"] is None
    where: dict[str, set[str]] = {}
    for split in SPLITS:
        for collector in dataset.split(split).column("collector").to_pylist():
            where.setdefault(collector, set()).add(split)
    assert all(len(s) == 1 for s in where.values())  # no group in two splits

    client = MlflowClient(cfg.tracking.uri)
    (etl_run,) = client.search_runs(
        [summary["experiment_id"]],
        f"tags.mlflow.parentRunId = '{summary['pipeline_run_id']}' and tags.`relay.stage` = 'etl'",
    )
    assert etl_run.data.params["split_key"] == "group:collector"
    assert etl_run.data.params["duplicates"] == "keep"
    card = client.get_model_version(cfg.model.name, "1").description
    assert "Splits by group hash (`collector`)" in card
