"""A live line while the search runs, for a person at a terminal: trials finished and running,
the best metric so far and an estimate of the time left.

Tune pickles its callbacks with the experiment, so the console is not inside the callback:
`showing(show)` installs where the line goes for the block, and `SearchProgress` writes there
when something is installed (`relay run` at a terminal, without --json) and stays silent
otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

EVERY_SECONDS = 0.5  # at most this often: Tune calls on_step_end many times a second
_SHOW: list[Callable[[str], None]] = []


@contextmanager
def showing(show: Callable[[str], None]) -> Iterator[None]:
    _SHOW.append(show)
    try:
        yield
    finally:
        _SHOW.remove(show)


def line(
    finished: int, running: int, total: int, metric: str, best: float | None, eta: float | None
) -> str:
    """`tune: 2/6 trials finished, 2 running, best val_loss 0.4123, ~8 s left`."""
    text = f"tune: {finished}/{total} trials finished, {running} running"
    if best is not None:
        text += f", best {metric} {best:.4g}"
    if eta is not None:
        text += f", ~{eta:.0f} s left"
    return text


class SearchProgress(Callback):
    """Counts the trials by state as the search goes (each step, result and end of a trial,
    at most every EVERY_SECONDS; the end of the search always), and reports the line."""

    def __init__(self, metric: str, mode: str, total: int):
        self.metric, self.mode, self.total = metric, mode, total
        self.began: float | None = None
        self.shown = 0.0
        self.best: float | None = None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._report(trials)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value = result.get(self.metric)
        if isinstance(value, int | float):
            value = float(value)
            better = self.best is None or (
                value < self.best if self.mode == "min" else value > self.best
            )
            self.best = value if better else self.best
        self._report(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._report(trials, force=True)

    def _report(self, trials: list, force: bool = False) -> None:
        if not _SHOW:
            return
        now = time.monotonic()
        self.began = self.began or now
        if not force and now - self.shown < EVERY_SECONDS:
            return
        self.shown = now
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        elapsed = now - self.began
        eta = elapsed / finished * (self.total - finished) if finished else None
        _SHOW[-1](line(finished, running, self.total, self.metric, self.best, eta))
