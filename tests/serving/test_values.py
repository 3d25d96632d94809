"""Timestamp parsing: every declared format to the same UTC instants, bad values flagged."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from serving.values import parse, render, request_record

INSTANTS = [datetime(2012, 1, 31, 8, 5), datetime(2024, 2, 29, 23, 59), datetime(1999, 12, 31)]


def parsed(values: list, fmt: str | None) -> tuple[list, list[bool]]:
    typed, bad = parse(pa.array(values), "timestamp", fmt)
    assert typed.type == pa.timestamp("us")
    return typed.to_pylist(), bad.tolist()


@pytest.mark.parametrize(
    ("fmt", "values"),
    [
        # ISO 8601 without a format: Z, +HH:MM, -HH:MM and HHMM offsets, shifted to UTC
        (None, ["2012-01-31T08:05:00Z", "2024-03-01T01:59+02:00", "1999-12-30 20:00-0400"]),
        ("%Y/%m/%d %H:%M", ["2012/01/31 08:05", "2024/02/29 23:59", "1999/12/31 00:00"]),
        ("%m/%d/%Y %H:%M", ["1/31/2012 8:05", "02/29/2024 23:59", "12/31/1999 0:00"]),
        (
            "%d.%m.%Y %H:%M:%S %z",
            ["31.01.2012 10:05:00 +02:00", "29.02.2024 18:59:00 -0500", "31.12.1999 01:00:00 +01"],
        ),
        ("epoch_s", ["1327997100", "1709251140", "946598400.0"]),
        ("epoch_ms", [1327997100000, 1709251140000, 946598400000]),
    ],
)
def test_each_format_gives_the_same_utc_instants(fmt, values):
    assert parsed(values, fmt) == (INSTANTS, [False, False, False])


def test_todays_iso_values_parse_as_before():
    values = ["2024-01-02", "2024-01-02 03:04", "2024-01-02T03:04:05", "2024-01-02 03:04:05.25"]
    got, bad = parsed(values, None)
    assert got == [
        datetime(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4),
        datetime(2024, 1, 2, 3, 4, 5),
        datetime(2024, 1, 2, 3, 4, 5, 250000),
    ]
    assert bad == [False] * 4


@pytest.mark.parametrize(
    ("fmt", "values"),
    [
        (None, ["2024-02-30", "2024-13-01", "2024/01/02", "2024-01-02T03:04+2", "soon"]),
        ("%Y/%m/%d", ["2024/02/30", "2023/02/29", "2024/04/31", "2024-01-02", "2024/01/02 x"]),
        ("%Y-%m-%d %z", ["2024-02-30 +02:00", "2024-01-02", "2024-01-02 CET"]),
        ("epoch_s", ["1e20", "-1e15", "ten", "1.2.3"]),
    ],
)
def test_values_that_do_not_parse_are_flagged_never_rolled_over(fmt, values):
    got, bad = parsed([*values, None, "  "], fmt)
    assert got == [None] * (len(values) + 2)
    assert bad == [True] * len(values) + [False, False]  # empty is null, not a bad value


def test_month_starts_are_not_mistaken_for_rolled_over_days():
    got, bad = parsed(["2024/03/01", "2024/3/2", "2024/05/01"], "%Y/%m/%d")
    assert got == [datetime(2024, 3, 1), datetime(2024, 3, 2), datetime(2024, 5, 1)]
    assert bad == [False] * 3


def test_typed_input():
    stamps = pa.array([datetime(2024, 1, 2, 10)], pa.timestamp("ns", "Europe/Paris"))
    assert parse(stamps, "timestamp")[0].to_pylist() == [datetime(2024, 1, 2, 10)]  # the instant
    numbers = pa.array([20240102], pa.int64())  # a number is an instant only as an epoch
    assert parse(numbers, "timestamp")[1].tolist() == [True]
    epoch = parse(numbers, "timestamp", "epoch_s")[0].to_pylist()
    assert epoch == [datetime(1970, 1, 1) + timedelta(seconds=20240102)]


@pytest.mark.parametrize(
    "fmt", [None, "%Y/%m/%d %H:%M:%S", "%d.%m.%Y %H:%M:%S %z", "epoch_s", "epoch_ms"]
)
def test_a_rendered_instant_parses_back_to_itself(fmt):
    row = {"when": INSTANTS[0], "n": 3}
    record = request_record([{"name": "when", "type": "timestamp", "format": fmt}], row)
    assert record["n"] == 3
    assert parsed([record["when"]], fmt) == ([INSTANTS[0]], [False])
    assert render(None, fmt) is None
