"""Tuning efficiency on the demo data: framework overhead and what ASHA saves.

Usage: python benchmarks/tune.py
In one embedded Ray (2 CPUs), on the same dataset:
- overhead_ratio: the demo config's tune wall time / (sum of each trial's pure training time
  / trial slots). 1.0 would mean no time lost to Ray, Tune, MLflow or checkpoints.
- asha_time_ratio: the same grid (lr x width, every trial to the full epochs) run with FIFO
  and with ASHA; ASHA's wall time / FIFO's, reported with how far ASHA's best is from the
  grid's best (the target assumes within 1%).
- ddp_ratio: not measured yet; workers_per_trial > 1 (TorchTrainer DDP) is not built.
The last line is one JSON object.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID = {
    "tune.search_space": {
        "lr": {"type": "grid", "values": [0.001, 0.003, 0.01, 0.03]},
        "hidden_size": {"type": "grid", "values": [32, 64]},
    },
    "tune.num_samples": 1,
}


def main() -> None:
    from cluster.config import load_config
    from cluster.runtime import ray_session
    from jobs import pipeline

    state = Path(tempfile.mkdtemp(prefix="relay-bench-tune-"))
    base = {"runtime.state_dir": str(state), "tracking.uri": f"sqlite:///{state}/mlflow.db"}

    def tune_with(**overrides):
        cfg = load_config(ROOT / "configs" / "demo.yaml", overrides={**base, **overrides})
        return pipeline.run(cfg, until="tune")

    try:
        with ray_session(load_config(ROOT / "configs" / "demo.yaml").runtime):
            demo = tune_with()
            fifo = tune_with(**GRID, **{"tune.scheduler": "fifo"})
            asha = tune_with(**GRID, **{"tune.scheduler": "asha", "tune.grace_period": 1})
    finally:
        shutil.rmtree(state, ignore_errors=True)
    grid_best = fifo["best_val"]["val_loss"]
    asha_best = asha["best_val"]["val_loss"]
    print(
        json.dumps(
            {
                "overhead_ratio": demo["tune_overhead_ratio"],
                "demo_trials": demo["trials"],
                "demo_tune_s": demo["stage_seconds"]["tune"],
                "asha_time_ratio": round(
                    asha["stage_seconds"]["tune"] / fifo["stage_seconds"]["tune"], 3
                ),
                "grid_tune_s": fifo["stage_seconds"]["tune"],
                "asha_tune_s": asha["stage_seconds"]["tune"],
                "grid_best_val_loss": round(grid_best, 5),
                "asha_best_val_loss": round(asha_best, 5),
                "asha_gap_pct": round(100 * (asha_best - grid_best) / grid_best, 3),
                "ddp_ratio": None,
            }
        )
    )


if __name__ == "__main__":
    main()
