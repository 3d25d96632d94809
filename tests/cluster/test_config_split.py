"""The data contract's split keys: an optional id, a group, a time split, and what is refused."""

from __future__ import annotations

import copy

import pytest

from cluster.configfile import parse_config
from cluster.errors import ConfigError
from tests.conftest import ci_raw, merge

ID = {"name": "customer_id", "type": "string", "role": "id", "nullable": False}


def config(columns: list[dict] | None = None, **override: dict):
    raw = merge(ci_raw(), override)
    if columns is not None:
        raw["data"]["columns"] = columns
    return parse_config(raw, source="bad.yaml")


def ci_columns(**roles: str) -> list[dict]:
    """ci.yaml's columns, with the roles (and nullability) of some changed."""
    columns = copy.deepcopy(ci_raw()["data"]["columns"])
    for column in columns:
        if column["name"] in roles:
            column["role"] = roles[column["name"]]
    return columns


def error_for(columns: list[dict] | None = None, **override: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config(columns, **override)
    return str(info.value)


def without_id() -> list[dict]:
    return [c for c in ci_columns() if c["name"] != "customer_id"]


def test_the_split_key_is_the_group_else_the_id_else_the_row() -> None:
    no_id = config(without_id())
    assert no_id.data.id is None and no_id.data.split_key() == ("row", None)
    with_id = config()
    assert with_id.data.split_key() == ("id", with_id.data.id)
    grouped = config(ci_columns(region="group"))  # a group and an id: the group splits
    assert grouped.data.split_key()[0] == "group"
    assert grouped.data.split_key()[1].name == "region"
    assert config(etl={"duplicates": "keep"}).etl.duplicates == "keep"


def test_at_most_one_id_and_one_group() -> None:
    two_ids = [*ci_columns(), {**ID, "name": "other_id"}]
    assert "data: at most one column may have role 'id', found ['customer_id', 'other_id']" in (
        error_for(two_ids)
    )
    two_groups = ci_columns(region="group", home_ownership="group")
    assert "at most one column may have role 'group', found ['region', 'home_ownership']" in (
        error_for(two_groups)
    )
    # one role per column: a group that is also a feature (or the label) is the same name twice
    twice = [*ci_columns(region="group"), {**ci_columns()[10], "role": "feature"}]
    assert "data: duplicate column names: ['region']" in error_for(twice)
    assert "exactly one column needs role 'label', found 0" in error_for(
        ci_columns(defaulted="group")
    )


def test_bad_time_splits_name_the_field_and_the_fix() -> None:
    time = {"etl": {"split": {"by": "time"}}}
    assert config(**time).etl.split.by == "time"  # ci.yaml's application_ts, non-null
    no_stamp = ci_columns(application_ts="ignore")
    assert (
        "etl.split.by: time needs a timestamp column to order rows by: declare one with role: "
        "timestamp, or name one in etl.split.column" in error_for(no_stamp, **time)
    )
    second = {"name": "seen_ts", "type": "timestamp", "role": "timestamp", "nullable": False}
    assert "several with role timestamp ['application_ts', 'seen_ts'], name one in " in (
        error_for([*ci_columns(), second], **time)
    )
    assert config([*ci_columns(), second], etl={"split": {"by": "time", "column": "seen_ts"}})
    assert "etl.split.column: 'when' is not a declared column" in error_for(
        etl={"split": {"by": "time", "column": "when"}}
    )
    assert "etl.split.column: 'age' has type int; a time split orders by a column of type" in (
        error_for(etl={"split": {"by": "time", "column": "age"}})
    )
    nullable = [
        {**c, "nullable": True} if c.get("role") == "timestamp" else c for c in ci_columns()
    ]
    assert "etl.split.by: time needs a time on every row: set nullable: false on " in (
        error_for(nullable, **time)
    )
    assert "etl.split.by: time would spread the rows of a group ('region')" in error_for(
        ci_columns(region="group"), **time
    )
    assert "etl.split.column only applies to etl.split.by: time" in error_for(
        etl={"split": {"column": "application_ts"}}
    )
    assert "etl.split.by: Input should be 'hash' or 'time'" in error_for(
        etl={"split": {"by": "date"}}
    )
    assert "etl.duplicates: Input should be 'keep' or 'reject'" in error_for(
        etl={"duplicates": "drop"}
    )
