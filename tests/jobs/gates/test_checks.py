"""The gate functions, drift scores and the report, on plain values: no Ray, no MLflow."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.gates import checks
from jobs.gates import report as gatereport
from jobs.metrics import drift
from jobs.metrics.groups import classification_groups, regression_groups


def test_reject_rate_passes_at_the_limit_and_fails_above_it():
    assert checks.reject_rate(0.05, 0.05).passed
    failed = checks.reject_rate(0.0501, 0.05)
    assert not failed.passed and failed.value == 0.0501 and failed.threshold == 0.05
    assert "0.0501 > 0.05" in failed.reason


def test_null_rate_uses_per_column_limits_and_names_the_offenders():
    rates = {"income": 0.12, "email": 0.3, "age": 0.0}
    result = checks.null_rate(rates, default=0.1, per_column={"email": 0.5})
    assert not result.passed
    assert result.value == 0.12 and result.threshold == 0.1  # income is the worst offender
    assert "income 12.00% > 10.00%" in result.reason and "email" not in result.reason
    assert checks.null_rate(rates, 0.1, {"email": 0.5, "income": 0.2}).passed
    assert checks.null_rate({}, 0.1, {}).passed


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


def test_drift_gate_reports_every_feature_over_the_limit_and_first_model_passes():
    result = checks.drift({"age": 0.05, "income": 0.9, "score": 0.3}, "psi", 0.2)
    assert not result.passed and result.value == 0.9
    assert result.reason == "psi over 0.2: income 0.900, score 0.300"
    assert result.detail["age"] == 0.05
    assert checks.drift({"age": 0.05}, "ks", 0.2).passed
    first = checks.drift(None, "psi", 0.2)
    assert first.passed and first.value is None and "no champion" in first.reason


def test_schema_change_fails_or_warns_and_names_the_columns():
    old = [{"name": "age", "type": "int"}, {"name": "region", "type": "category"}]
    new = [{"name": "age", "type": "float"}, {"name": "income", "type": "float"}]
    failed = checks.schema_change(old, new, "fail")
    assert not failed.passed and failed.value == 3
    assert failed.reason == "input schema changed: +income, -region, ~age"
    warned = checks.schema_change(old, new, "warn")
    assert warned.passed and warned.warning
    assert checks.schema_change(old, old, "fail").passed
    assert checks.schema_change(None, new, "fail").passed


def test_metric_bounds_check_floors_ceilings_and_missing_metrics():
    metrics = {"test_roc_auc": 0.71, "test_log_loss": 0.6}
    results = checks.metric_bounds(
        metrics, {"test_roc_auc": 0.75, "test_f1": 0.1}, {"test_log_loss": 0.7}
    )
    by_gate = {r.gate: r for r in results}
    assert not by_gate["model.min.test_roc_auc"].passed
    assert "0.71 < 0.75" in by_gate["model.min.test_roc_auc"].reason
    assert not by_gate["model.min.test_f1"].passed  # not computed is not a pass
    assert by_gate["model.max.test_log_loss"].passed


def test_beat_champion_by_margin_in_both_directions_first_model_and_not_comparable():
    worse = checks.beat_champion("test_roc_auc", 0.70, 0.75, 0.0, higher_is_better=True)
    assert not worse.passed and worse.value == pytest.approx(-0.05)
    assert "improvement -0.0500 < margin +0.0000" in worse.reason
    assert checks.beat_champion("test_roc_auc", 0.75, 0.75, 0.0, True).passed  # not worse
    assert not checks.beat_champion("test_roc_auc", 0.76, 0.75, 0.02, True).passed
    assert checks.beat_champion("test_roc_auc", 0.74, 0.75, -0.02, True).passed  # tolerance
    assert checks.beat_champion("test_rmse", 1.0, 1.2, 0.1, higher_is_better=False).passed
    assert not checks.beat_champion("test_rmse", 1.2, 1.0, 0.0, False).passed
    first = checks.beat_champion("test_roc_auc", 0.6, None, 0.0, True)
    assert first.passed and "first model" in first.reason
    other = checks.beat_champion("test_roc_auc", 0.6, None, 0.0, True, comparable=False)
    assert other.passed and other.warning and "not comparable" in other.reason


def test_classification_groups_compute_rates_per_group():
    groups = np.array(["f", "f", "f", "f", "m", "m", "m", "m"])
    truth = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    found = classification_groups(groups, truth, pred)
    assert found["f"] == {"n": 4, "tpr": 1.0, "fpr": 0.0, "accuracy": 1.0, "positive_rate": 0.5}
    assert found["m"] == {"n": 4, "tpr": 0.5, "fpr": 1.0, "accuracy": 0.25, "positive_rate": 0.75}
    no_positives = classification_groups(np.array(["x"]), np.array([False]), np.array([True]))
    assert no_positives["x"]["tpr"] is None and no_positives["x"]["fpr"] == 1.0


def test_group_gap_over_large_enough_groups():
    groups = {
        "female": {"n": 400, "tpr": 0.8, "positive_rate": 0.3},
        "male": {"n": 420, "tpr": 0.5, "positive_rate": 0.28},
        "other": {"n": 12, "tpr": 0.0, "positive_rate": 0.0},
    }
    gap = checks.group_gap("gender", groups, "tpr", 0.2, min_size=30)
    assert gap.gate == "fairness.gender.tpr_gap"
    assert not gap.passed and gap.value == pytest.approx(0.3)
    assert "other under 30 rows: not gated" in gap.reason
    parity = checks.group_gap("gender", groups, "positive_rate", 0.1, 30, name="parity_difference")
    assert parity.gate == "fairness.gender.parity_difference"
    assert parity.passed and parity.value == pytest.approx(0.02)


def test_group_gap_with_a_single_or_empty_group_passes_and_says_so():
    single = checks.group_gap("g", {"a": {"n": 100, "tpr": 0.4}}, "tpr", 0.1, 30)
    assert single.passed and single.value == 0.0 and "fewer than two groups" in single.reason
    undefined = {"a": {"n": 100, "tpr": None}, "b": {"n": 100, "tpr": 0.9}}
    assert checks.group_gap("g", undefined, "tpr", 0.1, 30).passed
    assert checks.group_gap("g", {}, "tpr", 0.1, 30).passed


def test_regression_gap_is_scaled_by_the_label_std():
    found = regression_groups(
        np.array(["a", "a", "b", "b"]), np.zeros(4), np.array([1.0, 1.0, 3.0, 3.0])
    )
    assert found["a"]["mean_prediction"] == 1.0 and found["b"]["mae"] == 3.0
    gap = checks.group_gap("g", found, "mean_prediction", 0.5, min_size=1, scale=4.0)
    assert gap.value == pytest.approx(0.5) and gap.passed


def test_pii_gates_fail_on_findings_and_on_pii_inputs():
    clean = checks.pii_findings({})
    assert clean.passed and clean.value == 0
    found = checks.pii_findings({"referrer:email": 40, "notes:phone": 2})
    assert not found.passed and found.value == 42
    assert found.reason == "undeclared PII: notes:phone (2 values), referrer:email (40 values)"
    inputs = checks.pii_input_schema(["age", "referrer"], {"referrer", "email"})
    assert not inputs.passed and "referrer" in inputs.reason
    assert checks.pii_input_schema(["age"], {"email"}).passed


def test_reports_put_failures_first_with_values_and_thresholds():
    results = [
        checks.reject_rate(0.01, 0.05),
        checks.drift({"income": 0.9}, "psi", 0.2),
        checks.schema_change([{"name": "a"}], [{"name": "b"}], "warn"),
    ]
    record = gatereport.record("m", 3, False, 1, results)
    assert record["champion_version"] == 1 and record["previous_champion_version"] == 1
    text = gatereport.text(record)
    lines = text.splitlines()
    assert lines[0] == "m version 3 NOT promoted: 1 of 3 gates failed (champion stays version 1)"
    assert lines[1].split()[:2] == ["FAIL", "data.drift.psi"] and "income 0.900" in lines[1]
    assert len(lines) == 4
    md = gatereport.markdown(record)
    assert md.startswith("### ❌ relay: m version 3 NOT promoted")
    assert "| ❌ | `data.drift.psi` | 0.9 | 0.2 |" in md and "⚠️" in md
    promoted = gatereport.record("m", 4, True, 3, results[:1])
    assert promoted["champion_version"] == 4
    assert gatereport.headline(promoted) == "m version 4 promoted: all 1 gates passed"
