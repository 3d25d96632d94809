"""Drift scores (PSI, KS) and the training reference they compare against, on plain values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from serving import drift


def test_psi_and_ks_are_zero_for_equal_shares_and_grow_with_shift():
    shares = np.array([0.25, 0.25, 0.25, 0.25])
    assert drift.psi(shares, shares) == 0.0 and drift.ks(shares, shares) == 0.0
    shifted = np.array([0.1, 0.2, 0.3, 0.4])
    assert drift.psi(shares, shifted) == pytest.approx(
        sum((a - e) * np.log(a / e) for e, a in zip(shares, shifted, strict=True))
    )
    assert drift.ks(shares, shifted) == pytest.approx(0.2)
    # a bin that empties stays finite (floored), and is a large drift
    assert 1 < drift.psi(shares, np.array([0.5, 0.5, 0.0, 0.0])) < 100


def test_numeric_reference_bins_new_values_on_the_reference_edges():
    rng = np.random.default_rng(0)
    old = rng.normal(0, 1, 5000)
    ref = drift.numeric_reference(old, bins=10)
    assert len(ref["edges"]) == 9 and sum(ref["shares"]) == pytest.approx(1.0)
    assert ref["shares"] == pytest.approx([0.1] * 10, abs=0.002)
    same = drift.numeric_shares(rng.normal(0, 1, 5000), ref["edges"])
    moved = drift.numeric_shares(rng.normal(1, 1, 5000), ref["edges"])
    assert drift.psi(np.array(ref["shares"]), same) < 0.02
    assert drift.psi(np.array(ref["shares"]), moved) > 0.5


def test_constant_and_empty_features_have_one_bin():
    constant = drift.numeric_reference(np.full(100, 7.0), bins=10)
    assert constant["edges"] == [7.0] and constant["shares"] == [1.0, 0.0]
    assert drift.numeric_reference(np.array([np.nan, np.nan]), 10) == {
        "edges": [],
        "shares": [1.0],
    }
    assert drift.numeric_shares(np.full(10, 7.0), [7.0]).tolist() == [1.0, 0.0]


def test_table_drift_covers_numeric_and_categorical_features_and_new_categories():
    features = {"numeric": [{"name": "x"}], "categorical": [{"name": "c"}]}
    old = pa.table({"x": np.arange(1000.0), "c": ["a", "b"] * 500})
    ref = drift.reference(old, features, bins=4)
    assert ref["categorical"]["c"]["shares"] == {"a": 0.5, "b": 0.5}
    assert drift.scores(ref, old, "psi") == {"x": 0.0, "c": 0.0}
    new = pa.table({"x": np.arange(1000.0) + 800, "c": ["a", "z"] * 500})
    scores = drift.scores(ref, new, "psi")
    assert scores["x"] > 1 and scores["c"] > 1  # 'z' was never seen: expected share floored
    assert drift.scores(ref, new.drop_columns(["c"]), "ks").keys() == {"x"}
