"""Champion against challenger in one window, and what the evidence says to do with the latter.

In shadow mode both answered the same mirrored requests: the share of records they answered
differently (the label, for a classifier; the mean absolute difference, for a regressor) and
their live metrics on the same labelled records. In split mode each answered its own share,
so the live metrics are each on its own labelled records. The decision (`decide`) follows
the gates' own comparison (`checks.beat_champion`, on live instead of test metrics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import PRIMARY_METRIC, TASK_METRICS, RelayConfig
from jobs.gates import checks
from jobs.gates.checks import GateResult
from jobs.monitor.feedback import KEYS
from jobs.monitor.judge import VersionReport, live_metrics

PROMOTE, ROLLBACK, HOLD = "promote", "rollback", "hold"


@dataclass
class Comparison:
    champion: int
    challenger: int
    mode: str  # shadow: the same requests; split: each its own share
    metric: str  # a live metric name (the test metric's, without test_)
    paired: int = 0  # records both answered (shadow)
    disagreement: float | None = None  # share of paired records labelled differently
    mean_abs_difference: float | None = None  # regression: between the paired answers
    labelled: dict[str, int] = field(default_factory=dict)  # role -> records with outcomes
    live: dict[str, float | None] = field(default_factory=dict)  # role -> the metric's value
    beat: GateResult | None = None  # the challenger against the champion, live

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "beat"}
        return out | {"beat": self.beat.as_dict() if self.beat else None}


def compare(
    cfg: RelayConfig,
    champion: tuple[int, pa.Table, dict[str, Any]],
    challenger: tuple[int, pa.Table, dict[str, Any]],
    outcomes: pa.Table | None,
) -> Comparison:
    """(version, its window's rows, its spec) of each; outcomes from `relay feedback`."""
    (old, old_rows, old_spec), (new, new_rows, new_spec) = champion, challenger
    task = cfg.model.task
    test_metric = cfg.serve.rollout.metric or _beat_metric(cfg) or PRIMARY_METRIC[task]
    shadow = new_rows.filter(pc.equal(new_rows["role"], "shadow"))
    mode = "shadow" if shadow.num_rows else "split"
    found = Comparison(old, new, mode, test_metric.removeprefix("test_"))
    if mode == "shadow":
        answered = old_rows.filter(pc.equal(old_rows["role"], "champion"))
        pairs = answered.select([*KEYS, "prediction"]).join(
            shadow.select([*KEYS, "prediction"]), keys=KEYS, right_suffix="_challenger"
        )
        pairs = pairs.filter(pc.is_valid(pairs["prediction_challenger"]))
        found.paired = pairs.num_rows
        if pairs.num_rows and task == "classification":
            differ = pc.not_equal(pairs["prediction"], pairs["prediction_challenger"])
            found.disagreement = pc.sum(differ).as_py() / pairs.num_rows
        elif pairs.num_rows:
            gap = pairs["prediction"].to_numpy() - pairs["prediction_challenger"].to_numpy()
            found.mean_abs_difference = float(np.mean(np.abs(gap)))
        keys = pairs.select(KEYS)  # both sides on exactly the records both answered
        old_rows = _on(answered, keys)
        new_rows = _on(shadow, keys)
    for role, rows, spec in (("champion", old_rows, old_spec), ("challenger", new_rows, new_spec)):
        found.labelled[role], live, _ = live_metrics(rows, outcomes, spec)
        found.live[role] = live.get(found.metric)
    new_live, old_live = found.live["challenger"], found.live["champion"]
    if new_live is not None and old_live is not None:
        margin = _margin(cfg)
        higher = TASK_METRICS[task][test_metric]
        beat = checks.beat_champion(f"live {found.metric}", new_live, old_live, margin, higher)
        found.beat = dataclasses.replace(beat, gate="rollout.beat_champion")
    return found


def decide(
    cfg: RelayConfig,
    comparison: Comparison,
    challenger: VersionReport,
    window_alerts: Sequence[GateResult] = (),
) -> tuple[str, str]:
    """(promote | rollback | hold, why). A failed monitor check rolls the challenger back at
    once; a promotion needs `min_labelled` outcomes on each side and the live margin; with
    that evidence, a live gain below both zero and the margin rolls it back too. While the
    log itself fails a check (drops, refusals), nothing is promoted on its evidence."""
    if challenger.alerts:
        failed = "; ".join(f"{r.gate}: {r.reason}" for r in challenger.alerts)
        return ROLLBACK, f"version {challenger.version} failed monitor check(s): {failed}"
    if window_alerts:
        failed = "; ".join(f"{r.gate}: {r.reason}" for r in window_alerts)
        return HOLD, f"the window's evidence is in doubt: {failed}"
    needed = cfg.serve.rollout.min_labelled or cfg.monitor.min_predictions
    fewest = min(comparison.labelled.values(), default=0)
    if fewest < needed:
        return HOLD, f"{fewest} of {needed} predictions with outcomes on each side: waiting"
    if comparison.beat is None:
        return HOLD, f"live {comparison.metric} could not be computed on {fewest} outcomes"
    beat = comparison.beat
    if beat.passed:
        return PROMOTE, beat.reason
    if beat.value is not None and beat.value < min(0.0, beat.threshold):
        return ROLLBACK, beat.reason
    return HOLD, beat.reason


def _on(rows: pa.Table, keys: pa.Table) -> pa.Table:
    """The rows (their answer columns: a join takes no struct) of these keys."""
    answers = [c for c in rows.column_names if c != "inputs"]
    return rows.select(answers).join(keys, keys=KEYS, join_type="inner")


def _beat_metric(cfg: RelayConfig) -> str | None:
    beat = cfg.gates.model.beat_champion
    return beat.metric if beat else None


def _margin(cfg: RelayConfig) -> float:
    if cfg.serve.rollout.margin is not None:
        return cfg.serve.rollout.margin
    beat = cfg.gates.model.beat_champion
    return beat.margin if beat else 0.0
