"""The search's live line: counts, best metric and time left from the trials Tune passes to
its callbacks (plain objects here: no search runs)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from jobs.tune import progress
from jobs.tune.progress import SearchProgress


@dataclass
class Trial:
    status: str
    last_result: dict[str, Any] = field(default_factory=dict)


def test_the_line_counts_trials_and_shows_the_best_so_far_and_the_time_left(monkeypatch):
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    shown: list[str] = []
    watcher = SearchProgress("val_loss", "min", total=6)
    trials = [
        Trial("TERMINATED", {"val_loss": 0.52}),
        Trial("RUNNING", {"val_loss": 0.41}),
        Trial("RUNNING"),
        Trial("PENDING"),
    ]
    with progress.showing(shown.append):
        watcher.on_step_end(0, trials[:0])  # t=100: the search starts, nothing finished yet
        watcher.on_step_end(1, trials)  # t=110: 1 of 6 done in 10 s: ~50 s for the other 5
    assert shown == [
        "tune: 0/6 trials finished, 0 running",
        "tune: 1/6 trials finished, 2 running, best val_loss 0.41, ~50 s left",
    ]


def test_a_maximised_metric_shows_its_highest_and_nothing_shows_without_a_terminal():
    watcher = SearchProgress("val_roc_auc", "max", total=2)
    trials = [Trial("TERMINATED", {"val_roc_auc": 0.7}), Trial("ERROR", {"val_roc_auc": 0.9})]
    watcher.on_step_end(0, trials)  # nobody showing: silent
    shown: list[str] = []
    with progress.showing(shown.append):
        watcher.on_step_end(1, trials)
    assert shown == ["tune: 2/2 trials finished, 0 running, best val_roc_auc 0.9, ~0 s left"]
    assert pickle.loads(pickle.dumps(watcher)).total == 2  # Tune pickles its callbacks
