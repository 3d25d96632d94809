"""`relay validate`: a config is valid only if what can be checked offline holds, its data
paths included (no Ray, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli.app import app
from tests.conftest import ci_raw


def validate(tmp_path: Path, path: str | list[str]) -> tuple[int, str, str]:
    """`relay validate` on ci.yaml with a files source at `path`, run from tmp_path."""
    raw = ci_raw()
    raw["data"]["source"] = {"kind": "files", "path": path}
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", str(config)], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two CSV files under tmp_path/data; the current directory is tmp_path."""
    (tmp_path / "data").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp_path / "data" / name).write_text("id,age\n1,30\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def test_a_path_that_matches_no_file_is_invalid_naming_the_field(data: Path) -> None:
    code, _, err = validate(data.parent, "data/*.parquet")
    assert code == 2, err
    assert "data.source.path: data/*.parquet matches no csv, parquet or json file" in err
    assert f"read from the current directory, {data.parent}" in err and "fix the path" in err

    code, _, err = validate(data.parent, str(data.parent / "raw"))
    assert code == 2 and f"data.source.path: {data.parent / 'raw'} does not exist" in err


def test_one_entry_of_a_list_matching_nothing_is_invalid(data: Path) -> None:
    code, _, err = validate(data.parent, ["data/*.csv", "data/2026-*.csv"])
    assert code == 2 and "data/2026-*.csv matches no csv" in err


def test_a_valid_config_prints_the_files_each_path_matches(data: Path) -> None:
    code, out, err = validate(data.parent, ["data/*.csv", str(data / "a.csv")])
    assert code == 0, err
    assert "valid (pipeline 'credit-ci'" in out
    assert "data.source.path data/*.csv: 2 data files" in out
    assert f"data.source.path {data / 'a.csv'}: 1 data file\n" in out


def test_an_object_store_uri_is_reported_as_not_checked(data: Path) -> None:
    code, out, err = validate(data.parent, ["data/a.csv", "s3://bucket/raw/*.parquet"])
    assert code == 0, err
    assert "data.source.path s3://bucket/raw/*.parquet: not checked offline (remote)" in out


def test_a_synthetic_source_needs_no_data_check(tmp_path: Path) -> None:
    config = tmp_path / "ci.yaml"
    config.write_text(yaml.safe_dump(ci_raw()))
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stdout and "data.source.path" not in result.stdout


def test_brackets_in_paths_and_errors_are_printed_as_they_are(data: Path) -> None:
    """Rich markup is off: ``[/old]`` once crashed the error path, ``[a, b]`` vanished."""
    missing = "raw[/old]/*.csv"
    code, _, err = validate(data.parent, missing)
    assert code == 2 and f"data.source.path: {missing} matches no csv" in err, err

    kept = data.parent / "data [a, b]"
    kept.mkdir()
    (kept / "c.csv").write_text("id,age\n1,30\n")
    code, out, err = validate(data.parent, "data [a, b]")  # a folder that exists is no glob
    assert code == 0 and "data.source.path data [a, b]: 1 data file" in out, err

    raw = ci_raw()
    raw["data"]["source"] = {"kind": "files", "path": missing}
    config = data.parent / "relay.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", str(config)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and f"error: data.source.path: {missing}" in result.stderr
