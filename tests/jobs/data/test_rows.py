"""Row validation on hand-built tables: every defect kind, CSV-style strings and typed input."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from cluster.config import Column
from jobs.data.rows import REASONS_COLUMN, ROW_COLUMN, check_rows, parse

COLUMNS = [
    Column(name="id", type="string", role="id", nullable=False),
    Column(name="age", type="int", nullable=False, min=18, max=100),
    Column(name="score", type="float", min=0),
    Column(name="region", type="category", nullable=False, categories=["north", "south"]),
    Column(name="at", type="timestamp"),
    Column(name="vip", type="bool"),
]


def table(rows: list[list[str | None]]) -> pa.Table:
    names = [c.name for c in COLUMNS]
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


def test_each_defect_kind_gets_its_reason_and_keeps_original_values() -> None:
    rows = [
        ["a", "30", "1.5", "north", "2024-01-02T03:04:05", "true"],  # good
        ["b", "thirty", "1.5", "north", None, None],  # age:type
        ["c", "17", "1.5", "south", None, None],  # age:range
        ["d", None, "1.5", "south", None, None],  # age:null
        ["e", "40", "-3", "west", None, None],  # score:range + region:set
        ["f", "40", " 2e3 ", "south", "2024-13-45", "maybe"],  # at:type + vip:type
        [None, "40", None, "north", "2024-01-02", "0"],  # id:null
    ]
    result = check_rows(table(rows), COLUMNS, source="x.csv")
    assert result.good.num_rows == 1
    assert result.good.column("age").to_pylist() == [30]
    assert result.good.column("vip").to_pylist() == [True]
    assert result.rejects.num_rows + result.good.num_rows == len(rows)
    reasons = dict(
        zip(
            result.rejects.column("id").to_pylist(),
            result.rejects.column(REASONS_COLUMN).to_pylist(),
            strict=True,
        )
    )
    assert reasons == {
        "b": "age:type",
        "c": "age:range",
        "d": "age:null",
        "e": "score:range;region:set",
        "f": "at:type;vip:type",
        None: "id:null",
    }
    assert result.rejects.column("age").to_pylist()[0] == "thirty"  # original value kept
    assert result.rejects.column(ROW_COLUMN).to_pylist() == [1, 2, 3, 4, 5, 6]
    assert result.reasons == {
        "age:type": 1,
        "age:range": 1,
        "age:null": 1,
        "score:range": 1,
        "region:set": 1,
        "at:type": 1,
        "vip:type": 1,
        "id:null": 1,
    }


def test_typed_input_is_checked_too() -> None:
    values, bad = parse(pa.array([1.0, 2.5, None]), "int")
    assert values.to_pylist() == [1, None, None]
    assert bad.tolist() == [False, True, False]
    values, bad = parse(pa.array([0, 1]), "category")
    assert values.to_pylist() == ["0", "1"] and not bad.any()
    values, bad = parse(pa.array([3, 4], pa.int32()), "float")
    assert values.type == pa.float64() and values.to_pylist() == [3.0, 4.0]


def test_a_timestamp_in_its_declared_format_and_one_matching_nothing() -> None:
    columns = [
        Column(name="when", type="timestamp", format="%d/%m/%Y"),
        Column(name="size", type="category", categories="auto"),
    ]
    raw = pa.table({"when": ["31/01/2024", "2024-01-31", None], "size": ["xl", "any", None]})
    result = check_rows(raw, columns, source="x.csv")
    assert result.good.column("when").to_pylist() == [datetime(2024, 1, 31), None]
    assert result.good.column("size").to_pylist() == ["xl", None]  # auto: no set check
    assert result.rejects.column(REASONS_COLUMN).to_pylist() == ["when:type"]
    assert result.unparsed == {}  # one value parsed: the format is right, that row is bad

    result = check_rows(raw.slice(1), columns, source="x.csv")
    assert result.unparsed == {"when": "2024-01-31"}  # none parsed: a sample for the error
