"""Jobs on a local multi-node cluster against the same pipeline run embedded.

Measures: `relay cluster up` (head + N workers) to all nodes joined; `relay submit` to the job
RUNNING; submit to SUCCEEDED for configs/ci.yaml; the same config run embedded (`relay run`, a
fresh process with its own local Ray); `relay cluster down`. Last line: one JSON object.

Run: python benchmarks/cluster.py [--workers 1] [--config configs/ci.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.compute import localcluster  # noqa: E402
from cluster.compute.submit import TERMINAL, Target, submit  # noqa: E402
from cluster.tracking import server as trackingserver  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ci.yaml")
    args = parser.parse_args()
    figures: dict[str, float | str] = {"config": args.config.name, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        state = str(Path(tmp) / "cluster-state")
        began = time.perf_counter()
        localcluster.up(state, workers=args.workers)
        figures["cluster_up_s"] = round(time.perf_counter() - began, 2)
        try:
            began = time.perf_counter()
            uri = trackingserver.up(state, port=_free_port())["uri"]
            figures["tracking_up_s"] = round(time.perf_counter() - began, 2)
            target = Target.resolve(None, state)
            client = target.client()
            began = time.perf_counter()
            job = submit(
                target,
                args.config,
                project=ROOT,
                tracking_uri=uri,
                overrides={"runtime.state_dir": state},
            )
            status = ""
            while status not in TERMINAL:
                status = client.get_job_status(job).value
                if status == "RUNNING" and "submit_to_running_s" not in figures:
                    figures["submit_to_running_s"] = round(time.perf_counter() - began, 2)
                time.sleep(0.2)
            figures["submit_to_done_s"] = round(time.perf_counter() - began, 2)
            figures["job_status"] = status
        finally:
            trackingserver.down(state)
            began = time.perf_counter()
            localcluster.down(state)
            figures["cluster_down_s"] = round(time.perf_counter() - began, 2)
        began = time.perf_counter()
        hidden = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")  # the baseline is a plain local run
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        embedded_state = Path(tmp) / "embedded-state"
        command = [sys.executable, "-m", "jobs.cli", "run", str(args.config), "--json"]
        subprocess.run(
            [*command, "--set", f"runtime.state_dir={embedded_state}"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        figures["embedded_run_s"] = round(time.perf_counter() - began, 2)
    figures["submit_vs_embedded_ratio"] = round(
        float(figures["submit_to_done_s"]) / float(figures["embedded_run_s"]), 2
    )
    print(json.dumps(figures))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
