"""The record front end of the feature transform equals the Arrow one, value for value."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.features import encode, encode_records

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
    from_records = encode_records(SPEC, records)
    assert from_records.dtype == np.float32 and from_records.shape == (len(records), 7)
    np.testing.assert_array_equal(from_records, encode(SPEC, as_table(records)))


def test_nulls_take_the_mean_and_unknown_categories_no_column():
    (row,) = encode_records(SPEC, [{"age": None, "income": 70_000.0, "region": "mars"}])
    assert row.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # member missing: null too
