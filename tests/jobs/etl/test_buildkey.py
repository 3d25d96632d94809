"""The dataset cache is keyed on everything that shapes a dataset *and* its metadata.

Each case below keeps the rows (and so the content digest) equal while changing what the
metadata says: a cache keyed on the digest alone returns the earlier build's metadata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from jobs.etl.stage import build
from jobs.pipeline import runner
from tests.conftest import write_csv

COLUMNS = [
    {"name": "row_id", "type": "string", "role": "id", "nullable": False},
    {"name": "x", "type": "float", "nullable": False},
    {"name": "color", "type": "category", "categories": ["red", "blue"]},
    {"name": "note", "type": "string", "role": "ignore"},
    {"name": "gender", "type": "category", "role": "sensitive", "categories": ["f", "m"]},
    {"name": "y", "type": "category", "role": "label", "nullable": False, "categories": ["0", "1"]},
]
EMAILS = 20  # rows whose free-text note holds an (undeclared) e-mail address


def rows(start: int, stop: int) -> list[dict]:
    return [
        {
            "row_id": f"r{i}",
            "x": str(i % 17 / 3),
            "color": "red" if i % 3 else "blue",
            "note": f"reach me at person{i}@example.com" if i < EMAILS else "no comment",
            "gender": "f" if i % 2 else "m",
            "y": str(i % 2),
        }
        for i in range(start, stop)
    ]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    write_csv(folder / "a.csv", rows(0, 200))
    write_csv(folder / "b.csv", rows(200, 400))
    return folder


@pytest.fixture
def files_config(make_config, raw):
    def make(folder: Path = raw, columns: list[dict] = COLUMNS, **etl):
        return make_config(
            source={"kind": "files", "path": str(folder / "*.csv")},
            data={"columns": columns},
            etl={"pii_scan": "off", **etl},
        )

    return make


def feature_names(meta: dict) -> set[str]:
    return {c["name"] for c in meta["input_schema"]}


def test_an_unchanged_rebuild_is_reused_and_a_changed_byte_is_not(ray_cluster, files_config, raw):
    first = build(files_config())
    second = build(files_config())
    assert not first.reused and second.reused
    assert second.path == first.path and second.meta == first.meta

    edited = rows(200, 400)
    edited[5]["x"] = "99.5"  # one value in one file
    write_csv(raw / "b.csv", edited)
    third = build(files_config())
    assert not third.reused and third.path != first.path
    assert third.digest != first.digest
    before = {m["path"]: m["sha256"] for m in first.meta["manifest"]}
    after = {m["path"]: m["sha256"] for m in third.meta["manifest"]}
    assert after[str(raw / "a.csv")] == before[str(raw / "a.csv")]
    assert after[str(raw / "b.csv")] != before[str(raw / "b.csv")]


def test_a_role_change_rebuilds_the_metadata_though_the_rows_are_equal(ray_cluster, files_config):
    first = build(files_config())
    sensitive = [{**c, "role": "sensitive"} if c["name"] == "color" else c for c in COLUMNS]
    second = build(files_config(columns=sensitive))
    assert second.digest == first.digest  # the same rows and column types
    assert "color" in feature_names(first.meta)
    assert feature_names(second.meta) == {"x"}  # no longer served or trained on
    assert not second.reused and second.path != first.path


def test_turning_the_pii_scan_on_reports_what_a_fresh_build_finds(ray_cluster, files_config):
    quiet = build(files_config(pii_scan="off"))
    scanned = build(files_config(pii_scan="warn"))
    assert scanned.digest == quiet.digest  # `note` is ignored: not in the dataset
    assert quiet.meta["pii_findings"] == {}
    assert scanned.meta["pii_findings"] == {"note:email": EMAILS}


def test_moved_raw_files_are_recorded_where_they_are_now(ray_cluster, files_config, raw):
    first = build(files_config())
    moved = raw.parent / "moved"
    shutil.copytree(raw, moved)
    second = build(files_config(folder=moved))
    assert second.digest == first.digest
    assert {m["path"] for m in second.meta["manifest"]} == {
        str(moved / "a.csv"),
        str(moved / "b.csv"),
    }
    assert [m["sha256"] for m in second.meta["manifest"]] == [
        m["sha256"] for m in first.meta["manifest"]
    ]


def test_the_summary_and_the_etl_run_say_when_etl_was_skipped(ray_cluster, files_config):
    cfg = files_config()
    first = runner.run(cfg, until="etl")
    second = runner.run(cfg, until="etl")
    assert first["dataset_reused"] is False and second["dataset_reused"] is True
    assert second["dataset_path"] == first["dataset_path"]
    assert second["input_columns"] == ["x", "color"]  # the features, in declared order
    client = MlflowClient(cfg.tracking.uri)
    (etl_run,) = client.search_runs(
        [second["experiment_id"]],
        f"tags.mlflow.parentRunId = '{second['pipeline_run_id']}'",
    )
    assert etl_run.data.tags["relay.etl_reused"] == "true"
    assert "Reused" in etl_run.data.tags["mlflow.note.content"]
    assert etl_run.data.metrics["rows_out"] == 400  # the reused dataset's counts, recorded again
