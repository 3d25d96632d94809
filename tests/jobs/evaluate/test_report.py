"""Evaluation report pieces on plain arrays: calibration, plots and the model card (no Ray)."""

from __future__ import annotations

import numpy as np

from cluster.configfile import parse_config
from jobs.evaluate.stage import draw_plots
from jobs.gates import checks
from jobs.gates import report as gatereport
from jobs.metrics.task import classification_metrics, expected_calibration_error
from jobs.register import modelcard
from tests.conftest import ci_raw, merge


def binary(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p1 = rng.random(n)
    truth = (rng.random(n) < p1).astype(int)  # calibrated by construction
    return truth, np.column_stack([1 - p1, p1])


def test_expected_calibration_error_is_small_when_calibrated_and_large_when_not():
    truth, proba = binary(4000)
    assert expected_calibration_error(truth, proba) < 0.03
    overconfident = np.where(proba > 0.5, 0.99, 0.01)
    assert expected_calibration_error(truth, overconfident) > 0.2
    metrics = classification_metrics(truth, proba)
    assert {"ece", "brier", "roc_auc", "pr_auc", "f1", "accuracy", "log_loss"} <= set(metrics)


def test_plots_are_written_as_png_for_each_task(tmp_path):
    truth, proba = binary()
    spec = {"task": "classification", "features": {"label": {"classes": ["0", "1"]}}}
    folder = draw_plots(spec, truth, proba, tmp_path)
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["calibration.png", "confusion_matrix.png", "roc.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in folder.iterdir())
    regression = tmp_path / "regression"
    regression.mkdir()
    draw_plots({"task": "regression"}, truth * 1.0, proba[:, 1], regression)
    assert [p.name for p in regression.iterdir()] == ["residuals.png"]


def test_model_card_states_data_lineage_metrics_groups_gates_and_limitations():
    cfg = parse_config(merge(ci_raw(), {}))
    meta = {
        "digest": "ab" * 32,
        "counts": {"rows_in": 6000, "rows_rejected": 120, "rows_train": 4100, "rows_test": 880},
        "reject_rate": 0.02,
        "pii_findings": {},
        "split": {"by": "hash", "key": "id", "key_column": "customer_id"},
    }
    spec = {
        "task": "classification",
        "features": {"label": {"name": "defaulted"}},
        "input_schema": [{"name": "age"}, {"name": "income"}],
        "hyperparameters": {"lr": 0.0031234, "batch_size": 256, "widths": [64, 32]},
        "architecture": {"depth": 1, "activation": "relu"},
    }
    groups = {
        "gender": {
            "female": {"n": 14540.0, "tpr": 0.7},
            "other": {"n": 12.0, "tpr": None},
        }
    }
    record = gatereport.record("credit", 2, False, 1, [checks.reject_rate(0.02, 0.01)])
    card = modelcard.render(
        cfg, meta, spec, {"test_roc_auc": 0.78}, groups, record, {"pipeline_run_id": "p1"}, "7"
    )
    assert card.startswith("# Model card: credit version 2\n")
    assert "**Status:** rejected (not served)" in card
    assert "6,000 rows in, 120 quarantined (2.00%)" in card
    assert "Splits by id hash (`customer_id`): train 4,100" in card
    assert "declared PII columns `email` are dropped" in card
    assert "Sensitive columns (kept out of the inputs, used to measure fairness): `gender`" in card
    assert (
        "- pipeline_run_id: [`p1`](#/experiments/7/runs/p1?workflowType=machine_learning)" in card
    )
    assert "- Hyper-parameters: `lr` 0.003123, `batch_size` 256, `widths` [64, 32]" in card
    assert "- Architecture: `depth` 1, `activation` relu" in card
    assert "| female | 14,540 | 0.7 |" in card  # a count, not 1.454e+04
    assert "| roc_auc | 0.78 |" in card
    assert "| other | 12 | - |" in card
    assert "| ❌ | `data.reject_rate` |" in card
    assert "not gated: gender=other" in card and "synthetic data" in card
