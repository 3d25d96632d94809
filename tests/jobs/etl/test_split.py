"""Split keys on a real Ray: no id (row hash), a group, a time split; duplicates kept or rejected.

Each property holds whatever the file layout: the same rows in one file or shuffled over three
give the same digest, the same split of every row and the same recorded boundaries.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

from cluster.errors import DataQualityError
from jobs.artifacts import Dataset
from jobs.etl import buildkey
from jobs.etl.file import REJECTS, SPLITS
from jobs.etl.stage import DIGEST_FORMAT, build
from jobs.pipeline import runner
from tests.conftest import write_csv

START = datetime(2024, 3, 1)
DISTINCT = 240
REPEATS = 60  # exact copies of earlier rows, in the other file


def columns(name_role: str = "ignore", with_id: bool = False) -> list[dict]:
    declared = [
        {"name": "name", "type": "string", "role": name_role},
        {"name": "ts", "type": "timestamp", "role": "timestamp", "nullable": False},
        {"name": "x", "type": "float", "nullable": False},
        {"name": "color", "type": "category", "categories": ["red", "blue", "green"]},
        {"name": "y", "type": "category", "role": "label", "nullable": False},
    ]
    declared[-1]["categories"] = ["0", "1"]
    if with_id:
        declared.insert(0, {"name": "row_id", "type": "string", "role": "id", "nullable": False})
    return declared


def make_rows(count: int = DISTINCT) -> list[dict]:
    """Distinct rows; 37 names repeat over them, and timestamps tie in pairs (whole hours)."""
    return [
        {
            "name": f"n{i % 37}",
            "ts": (START + timedelta(hours=(i * 7919 % count) // 2)).strftime("%Y-%m-%d %H:%M"),
            "x": f"{i / 7:.3f}",
            "color": ("red", "blue", "green")[i % 3],
            "y": str(i % 2),
        }
        for i in range(count)
    ]


def with_repeats(rows: list[dict]) -> list[dict]:
    return rows + [dict(r) for r in rows[:REPEATS]]


def write_layout(folder: Path, rows: list[dict], files: int, seed: int) -> Path:
    """The rows in their order in one CSV file, or shuffled and dealt over `files` files."""
    folder.mkdir()
    if files == 1:
        write_csv(folder / "all.csv", rows)
        return folder
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    for n in range(files):
        write_csv(folder / f"p{n}.csv", shuffled[n::files])
    return folder


def files_config(make_config, folder: Path, declared: list[dict], **etl):
    return make_config(
        source={"kind": "files", "path": str(folder)},
        data={"columns": declared},
        etl={"pii_scan": "off", "max_reject_rate": 0.5, **etl},
    )


def tuples(table: pa.Table, names: list[str]) -> list[tuple]:
    return sorted(zip(*(table.column(n).to_pylist() for n in names), strict=True), key=str)


def splits_of(dataset: Dataset, names: list[str]) -> dict[tuple, set[str]]:
    found: dict[tuple, set[str]] = defaultdict(set)
    for split in SPLITS:
        for row in tuples(dataset.split(split), names):
            found[row].add(split)
    return found


VALUES = ["ts", "x", "color", "y"]


def test_without_an_id_identical_rows_share_a_split_and_repeats_are_kept_and_counted(
    ray_cluster, make_config, tmp_path, caplog
):
    raw = write_layout(tmp_path / "raw", with_repeats(make_rows()), files=2, seed=1)
    with caplog.at_level(logging.INFO, logger="jobs.etl.stage"):
        dataset = build(files_config(make_config, raw, columns()))
    meta = dataset.meta
    assert meta["id_column"] is None and meta["duplicates"] == "keep"
    assert meta["split"]["key"] == "row" and meta["split"]["key_column"] is None
    counts = meta["counts"]
    assert counts["duplicate_rows"] == REPEATS and counts["rows_rejected"] == 0
    assert counts["rows_out"] == DISTINCT + REPEATS
    placed = splits_of(dataset, VALUES)
    assert len(placed) == DISTINCT and all(len(s) == 1 for s in placed.values())
    assert sum(len(dataset.split(s)) for s in SPLITS) == DISTINCT + REPEATS
    assert f"{REPEATS} duplicate rows kept (etl.duplicates: keep)" in caplog.text


def test_without_an_id_repeats_can_be_rejected(ray_cluster, make_config, tmp_path):
    raw = write_layout(tmp_path / "raw", with_repeats(make_rows()), files=2, seed=1)
    dataset = build(files_config(make_config, raw, columns(), duplicates="reject"))
    assert dataset.meta["reasons"] == {"row:duplicate": REPEATS}
    assert dataset.meta["counts"]["duplicate_rows"] == REPEATS
    kept = pa.concat_tables(dataset.split(s) for s in SPLITS)
    assert kept.num_rows == DISTINCT and len(set(tuples(kept, VALUES))) == DISTINCT


def test_a_group_keeps_its_rows_in_one_split_and_is_no_duplicate(
    ray_cluster, make_config, tmp_path
):
    rows = [{"row_id": f"r{i}", **row} for i, row in enumerate(make_rows())]
    rows.append({**rows[5], "row_id": "r7", "x": "99"})  # a repeated id: the id still dedupes
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "a.csv", rows)
    dataset = build(files_config(make_config, raw, columns("group", with_id=True)))
    assert dataset.meta["reasons"] == {"row_id:duplicate": 1}  # never name:duplicate
    assert dataset.meta["split"]["key"] == "group"
    assert dataset.meta["split"]["key_column"] == "name"  # the group, not the id, splits
    placed = splits_of(dataset, ["name"])
    assert len(placed) == 37 and all(len(s) == 1 for s in placed.values())
    assert {s for splits in placed.values() for s in splits} == set(SPLITS)


@pytest.mark.parametrize(
    ("declared", "etl"),
    [
        (columns(), {}),
        (columns(), {"duplicates": "reject"}),
        (columns("group"), {}),
        (columns(), {"split": {"by": "time"}}),
    ],
    ids=["row-keep", "row-reject", "group", "time"],
)
def test_digest_and_split_do_not_depend_on_the_file_layout(
    ray_cluster, make_config, tmp_path, declared, etl
):
    rows = with_repeats(make_rows())
    one = build(
        files_config(make_config, write_layout(tmp_path / "one", rows, 1, 0), declared, **etl)
    )
    three = build(
        files_config(make_config, write_layout(tmp_path / "three", rows, 3, 7), declared, **etl)
    )
    assert one.digest == three.digest
    assert one.meta["split"] == three.meta["split"]
    assert one.meta["counts"] == three.meta["counts"]
    names = [c["name"] for c in declared if c.get("role") != "ignore"]
    for split in (*SPLITS, REJECTS):
        assert tuples(one.split(split), names) == tuples(three.split(split), names)


def test_a_time_split_puts_the_oldest_rows_in_train_and_records_its_boundaries(
    ray_cluster, make_config, tmp_path
):
    raw = write_layout(tmp_path / "raw", make_rows(300) + make_rows(300)[:REPEATS], 3, seed=2)
    cfg = files_config(make_config, raw, columns(), split={"by": "time"})
    summary = runner.run(cfg, until="etl")
    dataset = Dataset.open(Path(summary["dataset_path"]))
    stamps = {s: sorted(dataset.split(s).column("ts").to_pylist()) for s in SPLITS}
    assert stamps["train"][-1] < stamps["val"][0] <= stamps["val"][-1] < stamps["test"][0]
    split = dataset.meta["split"]
    assert (split["by"], split["column"], split["key"]) == ("time", "ts", "time")
    iso = {s: stamps[s][0].replace(tzinfo=UTC).isoformat() for s in ("val", "test")}
    assert (split["val_from"], split["test_from"]) == (iso["val"], iso["test"])
    # the boundary is the timestamp at rank floor(share * n); its ties went to the later split
    every = sorted(s for values in stamps.values() for s in values)
    for share, split_name in ((0.7, "val"), (0.7 + 0.15, "test")):
        assert every[math.floor(share * len(every) + 1e-9)] == stamps[split_name][0]

    client = MlflowClient(cfg.tracking.uri)
    (etl_run,) = client.search_runs(
        [summary["experiment_id"]], f"tags.mlflow.parentRunId = '{summary['pipeline_run_id']}'"
    )
    params = etl_run.data.params
    assert params["split_by"] == "time" and params["split_key"] == "time:ts"
    assert (params["split_val_from"], params["split_test_from"]) == (iso["val"], iso["test"])


def test_a_time_split_with_too_few_distinct_times_fails_naming_the_field(
    ray_cluster, make_config, tmp_path
):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_csv(raw / "a.csv", [dict(r, ts="2024-01-01 00:00") for r in make_rows()])
    cfg = files_config(make_config, raw, columns(), split={"by": "time"})
    with pytest.raises(DataQualityError, match=r"etl\.split\.by: time: the train split would be"):
        build(cfg)
    leftovers = list((Path(cfg.runtime.state_dir) / "datasets" / cfg.name).iterdir())
    assert leftovers == []  # the half-built folder is gone


def test_the_build_key_covers_the_new_settings(make_config):
    """cfg.etl and cfg.data.columns enter the key whole: each new setting builds anew."""
    variants = [
        make_config(),
        make_config(etl={"duplicates": "keep"}),
        make_config(etl={"split": {"by": "time"}}),
        files_config(make_config, Path("/unused"), columns()),
        files_config(make_config, Path("/unused"), columns("group")),
    ]
    keys = {buildkey.build_key(buildkey.key_input(c, [], None, DIGEST_FORMAT)) for c in variants}
    assert len(keys) == len(variants)
