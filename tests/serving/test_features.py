"""The record front end of the feature transform equals the Arrow one, value for value; requests
are validated against the columns as declared (and learned)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from serving.features import OTHER, RecordEncoder, encode
from serving.schema import request_model
from serving.values import render

SPEC = {
    "numeric": [
        {"name": "age", "mean": 41.5, "std": 12.25},
        {"name": "income", "mean": 52_000.0, "std": 18_000.0},
        {"name": "member", "mean": 0.3, "std": 0.46},
    ],
    "categorical": [{"name": "region", "vocab": ["north", "south", "east", "west"]}],
}
TYPES = {"age": pa.int64(), "income": pa.float64(), "member": pa.bool_(), "region": pa.string()}

RECORDS = st.lists(
    st.fixed_dictionaries(
        {
            "age": st.none() | st.integers(18, 100),
            "income": st.none() | st.floats(0, 1e7, allow_nan=False),
            "member": st.none() | st.booleans(),
            "region": st.none() | st.sampled_from(["north", "south", "east", "west", "mars"]),
        }
    ),
    min_size=1,
    max_size=20,
)


def as_table(records: list[dict]) -> pa.Table:
    return pa.table({n: pa.array([r[n] for r in records], type=t) for n, t in TYPES.items()})


@settings(max_examples=200, deadline=None)
@given(records=RECORDS)
def test_records_encode_exactly_like_a_table(records):
    from_records = RecordEncoder(SPEC)(records)
    assert from_records.dtype == np.float32 and from_records.shape == (len(records), 7)
    np.testing.assert_array_equal(from_records, encode(SPEC, as_table(records)))


def test_nulls_take_the_mean_and_unknown_categories_no_column():
    (row,) = RecordEncoder(SPEC)([{"age": None, "income": 70_000.0, "region": "mars"}])
    assert row.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # member missing: null too


LEARNED = {
    "numeric": [
        {"name": f"when.{p}", "column": "when", "part": p, "format": "%m/%d/%Y %H:%M", **s}
        for p, s in (("year", {"mean": 2020.0, "std": 2.0}), ("hour", {"mean": 12.0, "std": 7.0}))
    ],
    "categorical": [{"name": "shop", "vocab": ["a", "b", OTHER], "other": OTHER}],
    "label": {"name": "y", "classes": ["0", "1"]},
}
STAMPS = st.none() | st.datetimes(datetime(1990, 1, 1), datetime(2030, 1, 1))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(STAMPS, st.none() | st.sampled_from("abcz")), min_size=1, max_size=9))
def test_timestamp_parts_and_learned_categories_encode_alike(rows):
    stamps = [None if t is None else t.replace(second=0, microsecond=0) for t, _ in rows]
    records = [
        {"when": render(t, "%m/%d/%Y %H:%M"), "shop": s}
        for t, (_, s) in zip(stamps, rows, strict=True)
    ]
    table = pa.table(
        {"when": pa.array(stamps, pa.timestamp("us")), "shop": pa.array([s for _, s in rows])}
    )
    np.testing.assert_array_equal(RecordEncoder(LEARNED)(records), encode(LEARNED, table))


def test_parts_are_standardised_and_unseen_values_fall_in_other():
    record = {"when": "03/01/2024 19:00", "shop": "never-seen"}
    assert RecordEncoder(LEARNED)([record])[0].tolist() == [2.0, 1.0, 0.0, 0.0, 1.0]
    empty = {"when": None, "shop": None}  # null: the mean, and no category at all
    assert RecordEncoder(LEARNED)([empty])[0].tolist() == [0.0] * 5
    no_bucket = {**LEARNED, "categorical": [{"name": "shop", "vocab": ["a"], "other": OTHER}]}
    assert RecordEncoder(no_bucket)([record])[0].tolist() == [2.0, 1.0, 0.0]  # nothing to fill


def test_requests_take_any_learned_value_and_a_timestamp_in_its_format():
    schema = [
        {"name": "when", "type": "timestamp", "nullable": False, "format": "%m/%d/%Y %H:%M"},
        {"name": "at", "type": "timestamp", "nullable": True, "format": "epoch_ms"},
        {"name": "shop", "type": "category", "nullable": True, "categories": "auto"},
        {"name": "size", "type": "category", "nullable": True, "categories": ["s", "m"]},
    ]
    model = request_model(schema, LEARNED)
    ok = model(when="03/01/2024 19:00", at=1709319600000, shop="never-seen", size="s")
    assert ok.model_dump()["shop"] == "never-seen"
    for bad in ({"when": "2024-03-01 19:00"}, {"when": "02/30/2024 10:00"}, {"size": "xl"}):
        with pytest.raises(ValidationError) as info:
            model(**{"when": "03/01/2024 19:00", **bad})
        assert info.value.errors()[0]["loc"] == (next(iter(bad)),)
    properties = model.model_json_schema()["properties"]
    assert "%m/%d/%Y %H:%M" in properties["when"]["description"]
    assert properties["shop"]["description"].startswith("Learned values ['a', 'b']; any other")


MIXED = {
    "numeric": [
        {"name": "age", "mean": 41.5, "std": 12.25},
        {"name": "when.hour", "column": "when", "part": "hour", "format": None, "mean": 12.0,
         "std": 7.0},
        {"name": "member", "mean": 0.3, "std": 0.46},
    ],
    "categorical": [
        {"name": "region", "vocab": ["north", "south"]},
        {"name": "shop", "vocab": ["a", OTHER], "other": OTHER},
    ],
}  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(18, 100),
            STAMPS,
            st.none() | st.booleans(),
            st.none() | st.sampled_from(["north", "south", "west"]),
            st.none() | st.sampled_from("abz"),
        ),
        min_size=0,
        max_size=9,
    )
)
def test_a_part_between_plain_numerics_and_two_vocabularies_keep_their_columns(rows):
    """The compiled encoder's column offsets: numerics in the spec's order (a timestamp part
    among them), then each vocabulary after the one before."""
    stamps = [None if r[1] is None else r[1].replace(microsecond=0) for r in rows]
    names = ("age", "when", "member", "region", "shop")
    records = [
        dict(zip(names, (r[0], render(t, None), *r[2:]), strict=True))
        for r, t in zip(rows, stamps, strict=True)
    ]
    table = pa.table(
        {
            "age": pa.array([r[0] for r in rows], pa.int64()),
            "when": pa.array(stamps, pa.timestamp("us")),
            "member": pa.array([r[2] for r in rows], pa.bool_()),
            "region": pa.array([r[3] for r in rows], pa.string()),
            "shop": pa.array([r[4] for r in rows], pa.string()),
        }
    )
    encoded = RecordEncoder(MIXED)(records)
    assert encoded.shape == (len(rows), 7) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, encode(MIXED, table))
