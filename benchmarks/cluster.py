"""A job on a local multi-node cluster against the same pipeline run without the Jobs API.

Every run is configs/ci.yaml to deploy, with its own state folder and model name (so no run
reuses another's dataset or has to beat another's champion), and logs to one `relay tracking up`
server started first, so the tracking store is the same for all. Compared like with like:
- cold, from no Ray at all: `relay cluster up` (head + N workers) + `relay submit` to SUCCEEDED,
  against `relay run` in a fresh process that starts its own embedded Ray with as many CPUs.
- warm, on the same up cluster: `relay submit` to SUCCEEDED against `relay run --address` (a
  plain driver on that cluster): what the Jobs API adds (upload, supervisor, entrypoint).
Each run must have succeeded, or the benchmark fails: exit status 0 (the job: SUCCEEDED, driver
exit code 0) and a summary on the last JSON line that only a finished deploy prints (a promoted
model version and the deployed endpoint's prediction).
Also timed: submit to RUNNING, `relay tracking up`, `relay cluster down`. Last line: JSON.

Run: python benchmarks/cluster.py [--workers 1] [--config configs/ci.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.compute import localcluster  # noqa: E402
from cluster.compute.submit import TERMINAL, Target, describe, submit  # noqa: E402
from cluster.tracking import server as trackingserver  # noqa: E402

RUN_TIMEOUT_S = 900


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ci.yaml")
    args = parser.parse_args()
    figures: dict[str, Any] = {"config": args.config.name, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        state = str(Path(tmp) / "cluster-state")
        began = time.perf_counter()
        uri = trackingserver.up(state, port=_free_port())["uri"]
        figures["tracking_up_s"] = _since(began)
        try:
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
            env["MLFLOW_TRACKING_URI"] = uri
            figures["embedded_run_s"] = relay_run(args.config, Path(tmp), "embedded", env)
            began = time.perf_counter()
            record = localcluster.up(state, workers=args.workers)
            figures["cluster_up_s"] = _since(began)
            try:
                figures |= submitted_run(args.config, Path(tmp), state, uri)
                on_cluster = {
                    **env,
                    "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": record["token_path"],
                }
                figures["driver_run_s"] = relay_run(
                    args.config, Path(tmp), "driver", on_cluster, "--address", record["address"]
                )
            finally:
                began = time.perf_counter()
                localcluster.down(state)
                figures["cluster_down_s"] = _since(began)
        finally:
            trackingserver.down(state)
    cold = figures["cluster_up_s"] + figures["submit_to_done_s"]
    figures |= {
        "cold_cluster_s": round(cold, 2),
        "cold_ratio": round(cold / figures["embedded_run_s"], 2),
        "warm_ratio": round(figures["submit_to_done_s"] / figures["driver_run_s"], 2),
    }
    print(json.dumps(figures))


def relay_run(config: Path, tmp: Path, label: str, env: dict[str, str], *extra: str) -> float:
    """`relay run` in a fresh process; its wall time, once its success is checked."""
    sets = [
        arg for key, value in _separate(tmp, label).items() for arg in ("--set", f"{key}={value}")
    ]
    command = [sys.executable, "-m", "jobs.cli", "run", str(config), "--json", *extra, *sets]
    began = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    seconds = _since(began)
    check_succeeded(label, done.returncode, done.stdout, done.stderr)
    return seconds


def submitted_run(config: Path, tmp: Path, state: str, uri: str) -> dict[str, Any]:
    """`relay submit` to the recorded cluster; submit to RUNNING and to SUCCEEDED, checked."""
    target = Target.resolve(None, state)
    client = target.client()
    figures: dict[str, Any] = {}
    began = time.perf_counter()
    job = submit(target, config, project=ROOT, tracking_uri=uri, overrides=_separate(tmp, "submit"))
    status = ""
    while status not in TERMINAL:
        status = client.get_job_status(job).value
        if status == "RUNNING" and "submit_to_running_s" not in figures:
            figures["submit_to_running_s"] = _since(began)
        if time.perf_counter() - began > RUN_TIMEOUT_S:
            client.stop_job(job)
            raise SystemExit(f"job {job} still {status} after {RUN_TIMEOUT_S} s")
        time.sleep(0.2)
    figures["submit_to_done_s"] = _since(began)
    info = describe(client.get_job_info(job))
    code = info["driver_exit_code"] if info["status"] == "SUCCEEDED" else "not SUCCEEDED"
    check_succeeded(
        f"job {job} ({info['status']})", code, client.get_job_logs(job), info["message"]
    )
    return figures


def check_succeeded(label: str, code: int | str | None, output: str, errors: str | None) -> None:
    """Exit 0, and the last JSON line is a summary only a finished deploy prints."""
    summary: Any = None
    for line in reversed(output.strip().splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    deployed = isinstance(summary, dict) and summary.get("promoted") is True
    if code != 0 or not deployed or "prediction" not in summary or "model_version" not in summary:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise SystemExit(
            f"{label} did not succeed (exit {code}):\n{tail}\n{(errors or '')[-3000:]}"
        )


def _separate(tmp: Path, label: str) -> dict[str, str]:
    """Per run: its own state folder and model name (a fresh dataset and registry)."""
    return {"runtime.state_dir": str(tmp / f"{label}-state"), "model.name": f"bench-{label}"}


def _since(began: float) -> float:
    return round(time.perf_counter() - began, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
