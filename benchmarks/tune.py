"""Tuning efficiency on the demo data: framework overhead, what ASHA saves, what DDP costs.

Usage: python benchmarks/tune.py
In one embedded Ray (2 CPUs), on the same dataset (configs/demo.yaml's 200k rows):
- overhead_ratio: the demo config's tune wall time / (sum of each trial's pure training time
  / trial slots); 1.0 would mean no time lost to Ray, Tune, MLflow or checkpoints. The demo's
  trials are short (see demo_trial_s), so the same search is also run with batch size 64,
  which makes each trial ~10 s: overhead_ratio_long.
- asha_time_ratio: a 16-point grid (lr x width x depth, 9 epochs, batch 256) run to the full
  budget with FIFO and with ASHA (grace 1, reduction 3); ASHA's tune wall time / FIFO's,
  with how far ASHA's best val_loss is from the grid's best (the target assumes within 1%).
- ddp_ratio: median epoch time of one trial as a 2-worker TorchTrainer (gloo, 1 CPU each)
  / the same trial as one process with 2 torch threads, on a 512-wide, 3-hidden-layer MLP.
Before it, each of the demo and long searches' wall time split from its MLflow runs: to the
first trial's start (Tune's set-up, the trial processes' start and Ray Tune import), a fresh
process's wait before its first epoch (torch, the first optimizer's torch._dynamo, the data),
the epochs spread over the trial slots, and the rest (results, checkpoints, idle slots).
The last line is one JSON object.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID = {
    "tune.search_space": {
        "lr": {"type": "grid", "values": [0.001, 0.003, 0.01, 0.03]},
        "hidden_size": {"type": "grid", "values": [32, 64]},
        "depth": {"type": "grid", "values": [1, 2]},
    },
    "tune.num_samples": 1,
    "train.epochs": 9,
    "train.batch_size": 256,
}
BIG_MODEL = {
    "tune.search_space": {"lr": {"type": "choice", "values": [0.001]}},
    "tune.num_samples": 1,
    "tune.scheduler": "fifo",
    "train.epochs": 3,
    "train.hidden_size": 512,
    "train.depth": 3,
    "train.batch_size": 512,
    "train.cpus_per_trial": 2,
}


def main() -> None:
    from cluster.compute.runtime import ray_session
    from cluster.configfile import load_config
    from cluster.tracking.tracker import Tracker
    from jobs.pipeline import runner

    state = Path(tempfile.mkdtemp(prefix="relay-bench-tune-"))
    base = {"runtime.state_dir": str(state), "tracking.uri": f"sqlite:///{state}/mlflow.db"}

    def tune_with(**overrides: Any) -> dict[str, Any]:
        cfg = load_config(ROOT / "configs" / "demo.yaml", overrides={**base, **overrides})
        return runner.run(cfg, until="tune")

    def epoch_seconds(summary: dict[str, Any]) -> float:
        tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
        history = tracker.client.get_metric_history(summary["best_trial_run_id"], "epoch_seconds")
        return statistics.median(m.value for m in history)

    def breakdown(summary: dict[str, Any]) -> dict[str, float]:
        """Where the search's wall time went, from its MLflow runs (the tune run, each trial's
        start and its epochs' results)."""
        tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
        client = tracker.client
        parent_id = client.get_run(summary["best_trial_run_id"]).data.tags["mlflow.parentRunId"]
        parent = client.get_run(parent_id)
        trials = client.search_runs(
            [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
        )
        histories = [client.get_metric_history(t.info.run_id, "epoch_seconds") for t in trials]
        runs = zip(trials, histories, strict=True)
        first, history = min(runs, key=lambda t: t[0].info.start_time)
        opening = min(history, key=lambda m: m.step)
        began = parent.info.start_time / 1000
        to_first = first.info.start_time / 1000 - began
        fresh = opening.timestamp / 1000 - opening.value - first.info.start_time / 1000
        slots = float(parent.data.params["max_concurrent_trials"])
        training = sum(m.value for h in histories for m in h) / slots
        wall = parent.data.metrics["wall_seconds"]
        return {
            "wall_s": round(wall, 2),
            "to_first_trial_s": round(to_first, 2),
            "fresh_process_s": round(fresh, 2),
            "epochs_per_slot_s": round(training, 2),
            "rest_s": round(wall - to_first - fresh - training, 2),
        }

    def trial_seconds(summary: dict[str, Any]) -> float:
        tracker = Tracker(summary["tracking_uri"], summary["experiment_id"])
        tune_run = tracker.client.get_run(summary["best_trial_run_id"]).data.tags
        parent = tracker.client.get_run(tune_run["mlflow.parentRunId"]).data.metrics
        return parent["trial_seconds_total"] / summary["trials"]

    try:
        with ray_session(load_config(ROOT / "configs" / "demo.yaml").runtime):
            demo = tune_with()
            long = tune_with(**{"train.batch_size": 64})
            fifo = tune_with(**GRID, **{"tune.scheduler": "fifo"})
            asha = tune_with(
                **GRID,
                **{"tune.scheduler": "asha", "tune.grace_period": 1, "tune.reduction_factor": 3},
            )
            single = tune_with(**BIG_MODEL)
            ddp = tune_with(**BIG_MODEL, **{"train.workers_per_trial": 2})
    finally:
        shutil.rmtree(state, ignore_errors=True)
    for label, summary in (("demo", demo), ("long", long)):
        parts = breakdown(summary)
        print(f"{label} search: " + ", ".join(f"{k} {v}" for k, v in parts.items()), flush=True)
        summary["breakdown"] = parts
    grid_best = fifo["best_val"]["val_loss"]
    asha_best = asha["best_val"]["val_loss"]
    print(
        json.dumps(
            {
                "overhead_ratio": demo["tune_overhead_ratio"],
                "demo_trials": demo["trials"],
                "demo_trial_s": round(trial_seconds(demo), 2),
                "demo_tune_s": demo["stage_seconds"]["tune"],
                "demo_breakdown": demo["breakdown"],
                "overhead_ratio_long": long["tune_overhead_ratio"],
                "long_trial_s": round(trial_seconds(long), 2),
                "long_tune_s": long["stage_seconds"]["tune"],
                "long_breakdown": long["breakdown"],
                "asha_time_ratio": round(
                    asha["stage_seconds"]["tune"] / fifo["stage_seconds"]["tune"], 3
                ),
                "grid_tune_s": fifo["stage_seconds"]["tune"],
                "asha_tune_s": asha["stage_seconds"]["tune"],
                "grid_best_val_loss": round(grid_best, 5),
                "asha_best_val_loss": round(asha_best, 5),
                "asha_gap_pct": round(100 * (asha_best - grid_best) / grid_best, 3),
                "ddp_ratio": round(epoch_seconds(ddp) / epoch_seconds(single), 3),
                "ddp_epoch_s": round(epoch_seconds(ddp), 3),
                "single_epoch_s": round(epoch_seconds(single), 3),
                "ddp_model": "MLP, 3 hidden layers x 512 (~0.54M parameters), 140k rows, batch 512",
            }
        )
    )


if __name__ == "__main__":
    main()
