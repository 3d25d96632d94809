"""`relay init`'s proposal from a sample: types, formats, roles and the task (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError, DataQualityError
from jobs.etl import infer
from tests.conftest import write_csv


def mixed_rows(n: int = 300) -> list[dict]:
    return [
        {
            "store": ["north", "south", "east", "west"][i % 4],
            "day": f"2012/01/{i % 28 + 1:02d}",
            "us_time": f"{i % 12 + 1:02d}/{i % 28 + 1:02d}/2013 10:{i % 60:02d}",
            "iso": f"2014-02-{i % 28 + 1:02d}T10:00:00+02:00",
            "created_at": str(1_600_000_000 + i * 3600),
            "email": f"user{i}@example.com",
            "promo": "yes" if i % 3 else "no",
            "visits": str(i % 7),
            "basket": f"{(i * 37) % 101 / 7:.3f}",
            "comment": f"free text number {i}",
            "sku": f"S{i:05d}",
            "churned": ["a", "b", "c"][i % 3],
        }
        for i in range(n)
    ]


def proposals(path: Path, label: str, task: str | None = None):
    found, chosen = infer.propose(infer.read_sample(str(path)), label, task)
    return {p.spec["name"]: p.spec for p in found}, chosen


def test_each_kind_of_column_gets_its_type_format_and_role(tmp_path):
    write_csv(tmp_path / "shop.csv", mixed_rows())
    specs, task = proposals(tmp_path / "shop.csv", "churned")
    assert task == "classification"
    assert specs["store"] == {
        "name": "store",
        "nullable": False,
        "type": "category",
        "categories": "auto",
    }
    assert specs["day"]["format"] == "%Y/%m/%d" and specs["day"]["parts"] == [
        "year",
        "month",
        "day",
        "day_of_week",
    ]
    assert specs["us_time"]["format"] == "%m/%d/%Y %H:%M" and "hour" in specs["us_time"]["parts"]
    assert specs["iso"]["type"] == "timestamp" and "format" not in specs["iso"]  # ISO: default
    assert specs["created_at"]["format"] == "epoch_s"  # by its name and its range
    assert specs["email"]["role"] == "pii"
    assert specs["promo"]["type"] == "bool"
    assert specs["visits"]["type"] == "int" and specs["basket"]["type"] == "float"
    assert specs["comment"]["role"] == "ignore"  # unique, but text with spaces is no key
    assert specs["sku"] == {"name": "sku", "type": "string", "role": "id", "nullable": False}
    assert specs["churned"]["role"] == "label" and specs["churned"]["categories"] == "auto"


def test_nulls_in_the_sample_make_a_column_nullable_and_the_label_is_never(tmp_path):
    rows = mixed_rows(100)
    for row in rows[::10]:
        row["visits"] = ""
        row["churned"] = ""
    write_csv(tmp_path / "gaps.csv", rows)
    specs, _ = proposals(tmp_path / "gaps.csv", "churned")
    assert "nullable" not in specs["visits"]  # the schema's default: nullable
    assert specs["churned"]["nullable"] is False  # rows without one are quarantined


def test_a_numeric_label_with_many_values_is_regression_unless_told(tmp_path):
    rows = [{"x": str(i), "price": f"{i * 1.5:.2f}"} for i in range(100)]
    write_csv(tmp_path / "prices.csv", rows)
    assert proposals(tmp_path / "prices.csv", "price")[1] == "regression"
    write_csv(tmp_path / "grades.csv", [{"x": str(i), "grade": str(i % 5)} for i in range(100)])
    specs, task = proposals(tmp_path / "grades.csv", "grade")
    assert task == "classification" and specs["grade"]["type"] == "category"
    specs, task = proposals(tmp_path / "grades.csv", "grade", "regression")
    assert task == "regression" and specs["grade"]["type"] == "int"


def test_a_missing_label_an_empty_file_and_no_file_are_clear_errors(tmp_path):
    write_csv(tmp_path / "shop.csv", mixed_rows(10))
    with pytest.raises(ConfigError, match=r"--label: .*shop.csv has no column 'target'.*store"):
        proposals(tmp_path / "shop.csv", "target")
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(DataQualityError, match=r"empty.csv: the file has a header but no rows"):
        proposals(tmp_path / "empty.csv", "a")
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataQualityError, match=r"zero.csv: no columns found"):
        proposals(tmp_path / "zero.csv", "a")
    with pytest.raises(ConfigError, match=r"data.source.path: .*nothing.csv does not exist"):
        proposals(tmp_path / "nothing.csv", "a")
