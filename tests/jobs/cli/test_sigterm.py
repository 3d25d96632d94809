"""SIGTERM (what Kubernetes, systemd and Docker send) stops a command as Ctrl-C does.

Each test starts the real command in its own session, waits until it is up, signals its PID and
checks what Ctrl-C leaves: the exit code, the MLflow runs' status, a closed port, no process.
The exit code is Ctrl-C's: 0 when `relay run --serve` stops serving a finished run, else 130,
relay's one "interrupted" code (the resume hint is the same whichever signal; 143 is what a
shell reports for a process killed by SIGTERM, which relay, exiting after its cleanup, is not).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from cluster.processes import kill, pids_mentioning
from cluster.tracking.tracker import STAGE_TAG
from jobs.monitor.window import read
from tests.conftest import ROOT, default_sigint, descendants, free_port, in_session
from tests.jobs.cli.test_cli import RELAY, in_tuning, ray_dirs_in_use, run, write_config
from tests.serving.test_ingress import summary_line


def start(args: list[str], folder: Path, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        args, cwd=folder, env=env, start_new_session=True, preexec_fn=default_sigint, **popen
    )


def wait_for(ready: Callable[[], bool], process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the command ended ({process.returncode}) before it was up"
        assert time.monotonic() < deadline, f"not up within {timeout} s"
        time.sleep(0.1)


def own_ray(process: subprocess.Popen) -> set[Path]:
    """The temp dirs of the Ray the command started: Ray daemonises some of its processes out
    of the command's session, and those name that dir."""
    return ray_dirs_in_use(descendants(process.pid))


def stop(process: subprocess.Popen, signum: int, ray_dirs: Iterable[Path] = ()) -> int:
    """Signal the command's PID; its exit code once it and everything it started are gone.
    Only if something is left (the test fails then) is it killed: its session, its Ray."""
    process.send_signal(signum)
    try:
        code = process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        code = None
    deadline = time.monotonic() + 15  # Ray's own processes exit just after the driver
    while True:
        left = in_session(process.pid) | {p for d in ray_dirs for p in pids_mentioning(str(d))}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if code is None or left:
        kill(sorted(left))
        raise AssertionError(f"exit {code}; still running after {signal.Signals(signum).name}")
    return code


class Load:
    """One client sending a held-out record after another until the endpoint stops answering;
    the request ids of the answers it got."""

    def __init__(self, summary: dict):
        from jobs.artifacts import Dataset
        from serving.values import request_record

        dataset = Dataset.open(Path(summary["dataset_path"]))
        schema = dataset.meta["input_schema"]
        row = pq.read_table(dataset.path / "test").to_pylist()[0]
        self.record = request_record(schema, {c["name"]: row[c["name"]] for c in schema})
        self.endpoint = summary["endpoint"]
        self.token = Path(summary["token_file"]).read_text().strip()
        self.answered: list[str] = []
        self.began = datetime.now(UTC)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=60)

    def wait_for(self, answers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < answers and time.monotonic() < deadline:
            time.sleep(0.05)

    def _send(self) -> None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {self.token}"}) as http:
            while not self.done.is_set():
                try:
                    response = http.post(self.endpoint, json=self.record)
                except httpx.HTTPError:
                    return  # the endpoint is gone
                if response.status_code == 200:
                    self.answered.append(response.json()["request_id"])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def store(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / '.relay' / 'mlflow.db'}")


def statuses(client: MlflowClient) -> dict[str, str]:
    """Each run's status by its relay stage (one run per stage here)."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.data.tags[STAGE_TAG]: r.info.status for r in runs}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_relay_run_serve_stops_on_sigterm_as_on_ctrl_c(tmp_path: Path, signum: int) -> None:
    port = free_port()
    # the log's timer never fires in this test: only the replicas' graceful stop can write it
    serve = {"port": port, "log": {"flush_seconds": 3600}}
    config = write_config(tmp_path, serve=serve, tune={"num_samples": 1}, train={"epochs": 2})
    log = (tmp_path / "relay.log").open("w")
    args = [*RELAY, "run", str(config), "--serve", "--json"]
    process = start(args, tmp_path, stdout=subprocess.PIPE, stderr=log, text=True)
    summary = summary_line(process, timeout=400)
    assert port_open(port)
    with Load(summary) as load:
        load.wait_for(20)  # under load: requests keep coming until the endpoint is gone
        code = stop(process, signum, own_ray(process))
    stderr = (tmp_path / "relay.log").read_text()
    assert code == 0, stderr[-3000:]
    # the replicas' graceful stop wrote out what they had queued: nothing answered is lost
    window = read(str(tmp_path / ".relay" / "inference"), summary["model_name"], load.began)
    logged = {r for t in window.versions.values() for r in t["request_id"].to_pylist()}
    assert len(load.answered) >= 20 and set(load.answered) <= logged, len(load.answered)
    assert "SIGTERM received" not in stderr  # Ray's native stack dump
    assert not port_open(port)  # the endpoint was torn down
    stages = statuses(store(tmp_path))
    assert set(stages) == {"pipeline", "etl", "tune", "trial", "evaluate", "register", "deploy"}
    assert set(stages.values()) == {"FINISHED"}  # the run had finished before it served


def test_sigterm_during_tuning_interrupts_the_run_as_ctrl_c_does(tmp_path: Path) -> None:
    """test_cli's Ctrl-C test, by SIGTERM: exit 130, the resume hint, nothing registered, and
    the interrupted runs FAILED (the FAILED end Ctrl-C writes)."""
    config = write_config(
        tmp_path,
        tune={"num_samples": 2, "scheduler": "fifo"},
        train={"epochs": 6, "batch_size": 32},
    )
    args = [*RELAY, "run", str(config), "--until", "register"]
    driver = in_tuning(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    code = stop(driver, signal.SIGTERM, own_ray(driver))
    stderr = driver.stderr.read()
    assert code == 130, stderr[-3000:]
    assert f"relay run {config} --resume" in stderr
    assert "SIGTERM received" not in stderr
    progress = json.loads((tmp_path / ".relay" / "runs" / "credit-ci.json").read_text())
    assert not progress["finished"]
    client = store(tmp_path)
    stages = statuses(client)
    ended = stages["pipeline"] == stages["tune"] == "FAILED" and stages["etl"] == "FINISHED"
    assert ended, (stages, stderr[-3000:])
    assert client.search_model_versions("name='credit-default-ci'") == []


def test_relay_predict_stops_on_sigterm_as_on_ctrl_c(tmp_path: Path) -> None:
    config = write_config(tmp_path, tune={"num_samples": 1}, train={"epochs": 2})
    trained = run([*RELAY, "run", str(config), "--until", "register", "--json"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    dataset = Path(json.loads(trained.stdout.strip().splitlines()[-1])["dataset_path"])
    test = pq.read_table(dataset / "test").drop_columns(["defaulted"])
    # enough rows that scoring is still under way when the signal arrives
    pq.write_table(pa.concat_tables([test] * 1000), tmp_path / "new.parquet")
    args = [*RELAY, "predict", str(config), "--input", str(tmp_path / "new.parquet")]
    log = (tmp_path / "predict.log").open("w")
    process = start([*args, "--output", str(tmp_path / "scored")], tmp_path, stderr=log)
    client = store(tmp_path)
    wait_for(lambda: statuses(client).get("predict") == "RUNNING", process)
    code = stop(process, signal.SIGTERM, own_ray(process))
    stderr = (tmp_path / "predict.log").read_text()
    assert code == 130, stderr[-3000:]  # typer's code for Ctrl-C
    assert "SIGTERM received" not in stderr
    assert statuses(client)["predict"] == "FAILED"
    assert not (tmp_path / "scored" / "manifest.json").exists()


def test_relay_tracking_up_stops_on_sigterm_and_leaves_no_server(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while the server starts: the server goes too. Before, it ran on
    unrecorded, so `relay tracking down` could not stop it."""
    from cluster.tracking import server as trackingserver

    port, state = free_port(), tmp_path / "state"
    args = [*RELAY, "tracking", "up", "--port", str(port), "--state-dir", str(state)]
    process = start(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store_folder = str(trackingserver.folder(str(state)))  # on `mlflow server`'s command line
    wait_for(lambda: bool(pids_mentioning(store_folder)), process)
    (server,) = pids_mentioning(store_folder)  # in a session of its own: a daemon
    try:
        code = stop(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while in_session(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not in_session(server), "the mlflow server outlived `relay tracking up`"
    finally:
        kill(sorted(in_session(server)))
    assert code == 130, process.stderr.read()[-3000:]
    assert trackingserver.status(str(state)) is None
    assert not port_open(port)
