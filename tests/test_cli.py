"""The commands a user types, as subprocesses with their own embedded Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, ci_raw, free_port, merge

RELAY = [sys.executable, "-m", "jobs.cli"]


def write_config(folder: Path, **override) -> Path:
    path = folder / "ci.yaml"
    path.write_text(yaml.safe_dump(merge(ci_raw(), override)))
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_relay_run_json_serves_a_prediction_then_leaves_nothing_running(tmp_path):
    before = ray_dirs_in_use() | set(Path(tempfile.gettempdir()).glob("relay-ray-*"))
    port = free_port()
    config = write_config(tmp_path, serve={"port": port})
    result = run([*RELAY, "run", str(config), "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "endpoint",
        "model_version",
        "dataset_digest",
        "stage_seconds",
        "total_seconds",
        "prediction",
    ):
        assert key in summary
    assert summary["endpoint"] == f"http://127.0.0.1:{port}/credit/predict"
    assert summary["model_version"] == 1
    assert summary["prediction"]["matches_offline"] is True
    assert summary["prediction"]["response"]["prediction"] in ("0", "1")
    assert (tmp_path / ".relay" / "mlflow.db").exists()  # default store: project-local state
    with pytest.raises(ConnectionRefusedError):  # the endpoint was shut down
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert ray_dirs_in_use() <= before  # no Ray process of the run survived it
    assert set(Path(tempfile.gettempdir()).glob("relay-ray-*")) <= before  # temp dir removed


def ray_dirs_in_use() -> set[Path]:
    """Temp dirs named on the command lines of running processes (Ray puts its session there)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="ignore")
        except OSError:
            continue
        found |= {Path(m) for m in re.findall(r"/tmp/relay-ray-[A-Za-z0-9_]+", text)}
    return found


def test_stage_module_runs_the_pipeline_up_to_that_stage(tmp_path):
    config = write_config(tmp_path)
    result = run(
        [sys.executable, "-m", "jobs.etl", "--config", str(config), "--json"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["dataset_digest"]) == 64
    assert set(summary["stage_seconds"]) == {"ray", "etl"}
    assert "model_version" not in summary
    shutil.rmtree(tmp_path / ".relay")
