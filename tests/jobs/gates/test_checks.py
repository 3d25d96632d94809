"""The gate functions on plain values: no Ray, no MLflow."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.gates import checks
from jobs.metrics.groups import regression_groups


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
