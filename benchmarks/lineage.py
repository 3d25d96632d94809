"""What recording lineage costs: time inside MLflow calls during a pipeline run.

Usage: python benchmarks/lineage.py [configs/demo.yaml]
Runs the pipeline (cold, temporary state) with every MlflowClient method timed in the
driver (outermost calls only; trials and ETL tasks make none), and reports that time beside
the rest of the run: lineage_overhead = MLflow seconds / (total seconds - MLflow seconds),
i.e. how much longer the run is than the same run without its records. The registry look-ups
that serving needs are counted too, so this is an upper bound. Last line: one JSON object.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def instrument(cls: type, seconds: Counter) -> None:
    depth = [0]

    def timed(name: str, method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    seconds[name] += time.perf_counter() - began

        return wrapper

    for name, method in list(vars(cls).items()):
        if callable(method) and not name.startswith("_"):
            setattr(cls, name, timed(name, method))


def main() -> None:
    from mlflow.tracking import MlflowClient

    from cluster.configfile import load_config
    from jobs.pipeline import runner

    config = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "configs" / "demo.yaml")
    state = Path(tempfile.mkdtemp(prefix="relay-bench-lineage-"))
    seconds: Counter = Counter()
    instrument(MlflowClient, seconds)
    try:
        cfg = load_config(
            config,
            overrides={"runtime.state_dir": str(state), "tracking.uri": f"sqlite:///{state}/m.db"},
        )
        summary = runner.run(cfg)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    mlflow_s = sum(seconds.values())
    total = summary["total_seconds"]
    print(
        json.dumps(
            {
                "total_seconds": total,
                "mlflow_seconds": round(mlflow_s, 2),
                "lineage_overhead": round(mlflow_s / (total - mlflow_s), 4),
                "slowest_calls": {k: round(v, 2) for k, v in seconds.most_common(6)},
            }
        )
    )


if __name__ == "__main__":
    main()
