"""The read commands (`relay runs`, `lineage`, `reproduce`) as a user types them, issue #16:
a read never creates a store, and a tracking server that does not answer fails it in seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port

RELAY = [sys.executable, "-m", "jobs.cli"]
READS = [["runs"], ["lineage", "models:/credit-default@champion"], ["reproduce", "0" * 32]]


def relay(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    # the timeout guards against a hang (MLflow's own retries took minutes); it times nothing
    return subprocess.run(
        [*RELAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", READS, ids=lambda c: c[0])
def test_a_read_in_a_folder_with_no_store_says_so_and_creates_nothing(command, tmp_path):
    result = relay(command, tmp_path)
    assert result.returncode == 5, result.stderr
    assert list(tmp_path.iterdir()) == []  # no .relay/mlflow.db
    (line,) = result.stderr.strip().splitlines()
    assert f"no MLflow tracking store at {tmp_path / '.relay' / 'mlflow.db'}" in line
    assert "relay run CONFIG" in line


@pytest.mark.parametrize("command", READS, ids=lambda c: c[0])
def test_a_read_from_a_server_that_does_not_answer_fails_with_one_line_naming_it(command, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    result = relay([*command, "--tracking-uri", uri], tmp_path)
    assert result.returncode == 5, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: MLflow tracking server {uri} did not answer")
    assert list(tmp_path.iterdir()) == []
