"""Resolving sources (paths, globs, lists, file:// URIs) and streaming files, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.config import FileSource
from cluster.errors import ConfigError, DataQualityError
from jobs.data.sources import batches, check_columns, resolve_files


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a.csv").write_text("id,x\n1,2\n3,4\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"id": "5", "x": 6}\n')
    pq.write_table(pa.table({"id": ["7"], "x": [8]}), tmp_path / "sub" / "c.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("hello")
    return tmp_path


def names(source: FileSource) -> list[str]:
    return [Path(f.uri).name for f in resolve_files(source)]


def test_directory_glob_list_and_file_uri(folder: Path) -> None:
    assert names(FileSource(kind="files", path=str(folder))) == ["a.csv", "b.jsonl", "c.parquet"]
    assert names(FileSource(kind="files", path=str(folder / "**" / "*.jsonl"))) == ["b.jsonl"]
    listed = FileSource(kind="files", path=[str(folder / "a.csv"), folder.as_uri() + "/sub"])
    assert names(listed) == ["a.csv", "b.jsonl", "c.parquet"]
    files = resolve_files(FileSource(kind="files", path=(folder / "a.csv").as_uri()))
    assert files[0].format == "csv" and files[0].size == len("id,x\n1,2\n3,4\n")


def test_missing_and_unknown_formats_are_config_errors(folder: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_files(FileSource(kind="files", path=str(folder / "nope")))
    with pytest.raises(ConfigError, match="cannot infer the format"):
        resolve_files(FileSource(kind="files", path=str(folder / "notes.txt")))
    with pytest.raises(ConfigError, match="cannot open"):
        resolve_files(FileSource(kind="files", path="nosuchscheme://bucket/x.csv"))
    listed = [str(folder / "a.csv"), str(folder / "sub" / "*.csv")]  # sub holds no CSV
    with pytest.raises(ConfigError, match=r"sub/\*\.csv matches no csv, parquet or json file"):
        resolve_files(FileSource(kind="files", path=listed))


def test_column_checks_name_missing_and_undeclared(folder: Path) -> None:
    csv_file = resolve_files(FileSource(kind="files", path=str(folder / "a.csv")))[0]
    with pytest.raises(DataQualityError, match=r"declared column\(s\) \['y'\] are missing"):
        check_columns(csv_file, ["id", "x", "y"], "error")
    with pytest.raises(DataQualityError, match=r"column\(s\) \['x'\] are not declared"):
        check_columns(csv_file, ["id"], "error")
    assert check_columns(csv_file, ["id"], "ignore") == ["x"]


def test_streaming_batches_are_strings_and_bounded(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 2}\n" for i in range(30000))
    (tmp_path / "big.csv").write_text("id,x\n" + rows)
    raw = resolve_files(FileSource(kind="files", path=str(tmp_path / "big.csv")))[0]
    parts = list(batches(raw, ["id", "x"], batch_rows=1024))
    assert sum(p.num_rows for p in parts) == 30000
    assert len(parts) > 1 and all(p.schema.field("x").type == pa.string() for p in parts)


def test_mixed_json_types_fall_back_to_the_forgiving_reader(tmp_path: Path) -> None:
    lines = [{"id": str(i), "x": i} for i in range(3)] + [
        {"id": "9", "x": {"nested": 1}},
        "not json at all",
    ]
    (tmp_path / "m.jsonl").write_text(
        "\n".join(json.dumps(r) if isinstance(r, dict) else r for r in lines) + "\n"
    )
    raw = resolve_files(FileSource(kind="files", path=str(tmp_path / "m.jsonl")))[0]
    with pytest.raises(pa.ArrowInvalid):
        list(batches(raw, ["id", "x"], 1024))
    table = pa.concat_tables(batches(raw, ["id", "x"], 1024, fast=False))
    assert table.column("x").to_pylist() == ["0", "1", "2", '{"nested": 1}', None]
    assert table.column("id").to_pylist() == ["0", "1", "2", "9", None]
