"""The search's live line: counts, best metric and time left from the trials Tune passes to
its callbacks (plain objects here: no search runs)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from jobs.tune import progress
from jobs.tune.progress import SearchProgress


@dataclass
class Trial:
    status: str


def test_the_line_counts_trials_and_shows_the_best_so_far_and_the_time_left(monkeypatch):
    clock = iter([100.0, 101.0, 110.0, 110.2])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    shown: list[str] = []
    watcher = SearchProgress("val_loss", "min", total=6)
    trials = [Trial("TERMINATED"), Trial("RUNNING"), Trial("RUNNING"), Trial("PENDING")]
    with progress.showing(shown.append):
        watcher.on_step_end(0, [])  # t=100: the search starts, nothing finished yet
        watcher.on_trial_result(1, trials, trials[1], {"val_loss": 0.52})  # t=101
        watcher.on_trial_result(2, trials, trials[0], {"val_loss": 0.41})  # t=110: 1 of 6 in 10 s
        watcher.on_trial_result(3, trials, trials[2], {"val_loss": 0.47})  # t=110.2: throttled
    assert shown == [
        "tune: 0/6 trials finished, 0 running",
        "tune: 1/6 trials finished, 2 running, best val_loss 0.52, ~5 s left",
        "tune: 1/6 trials finished, 2 running, best val_loss 0.41, ~50 s left",
    ]


def test_a_maximised_metric_shows_its_highest_the_end_always_shows_and_no_terminal_no_line():
    watcher = SearchProgress("val_roc_auc", "max", total=2)
    trials = [Trial("TERMINATED"), Trial("ERROR")]
    watcher.on_trial_result(0, trials, trials[0], {"val_roc_auc": 0.7})  # nobody showing
    shown: list[str] = []
    with progress.showing(shown.append):
        watcher.on_trial_result(1, trials, trials[1], {"val_roc_auc": 0.9})
        watcher.on_experiment_end(trials)  # within the throttle window, shown all the same
    assert shown == ["tune: 2/2 trials finished, 0 running, best val_roc_auc 0.9, ~0 s left"] * 2
    assert pickle.loads(pickle.dumps(watcher)).total == 2  # Tune pickles its callbacks
