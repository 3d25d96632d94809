"""Per-group metrics of a sensitive column, on plain arrays."""

from __future__ import annotations

import numpy as np

from jobs.metrics.groups import classification_groups


def test_classification_groups_compute_rates_per_group():
    groups = np.array(["f", "f", "f", "f", "m", "m", "m", "m"])
    truth = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    found = classification_groups(groups, truth, pred)
    assert found["f"] == {"n": 4, "tpr": 1.0, "fpr": 0.0, "accuracy": 1.0, "positive_rate": 0.5}
    assert found["m"] == {"n": 4, "tpr": 0.5, "fpr": 1.0, "accuracy": 0.25, "positive_rate": 0.75}
    no_positives = classification_groups(np.array(["x"]), np.array([False]), np.array([True]))
    assert no_positives["x"]["tpr"] is None and no_positives["x"]["fpr"] == 1.0
