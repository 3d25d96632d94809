"""A real MLflow server stopped in the middle of a run: retried, spooled, synced, nothing lost."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.errors import ClusterUnreachableError
from cluster.tracking import server as trackingserver
from cluster.tracking import spool
from cluster.tracking.tracker import Tracker
from jobs.cli.app import app
from tests.cli_output import json_output
from tests.conftest import free_port


def log_everything(tracker: Tracker, run_id: str, artifact: Path, step: int) -> None:
    """What a stage writes: a batch, a file artifact, a text artifact and a dataset input."""
    tracker.log(
        run_id, params={"lr": 0.01}, metrics={"loss": 1.0 / step}, tags={"t": "x"}, step=step
    )
    tracker.log_artifact(run_id, artifact)
    tracker.log_text(run_id, "mermaid graph", "lineage/graph.mmd")
    tracker.log_input(run_id, "ds", "d" * 64, {"uri": "file:///data"}, context="training")


def assert_all_present(uri: str, run_id: str, steps: list[int]) -> None:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.01"}
    assert run.data.tags["t"] == "x"
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / s) for s in steps]
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["lineage", "notes.txt"]
    local = Path(client.download_artifacts(run_id, "lineage/graph.mmd"))
    assert local.read_text() == "mermaid graph"
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == ["d" * 32]


def test_server_back_within_the_retry_window_loses_nothing(server, tmp_path):
    state, port, uri = server
    artifact = tmp_path / "notes.txt"
    artifact.write_text("notes")
    root = tmp_path / "state" / spool.SPOOL
    tracker = Tracker.open(uri, "outage", spool_root=root, retry_seconds=60)
    times: dict[str, float] = {}  # the restart's start and end; read after join() only

    def restart() -> None:
        times["restarting"] = time.monotonic()
        trackingserver.up(state, port)  # same port, same backend store and artifacts
        times["back"] = time.monotonic()  # up() polls: the server may answer ~0.3 s earlier

    with tracker.run("stage") as run_id:
        log_everything(tracker, run_id, artifact, step=1)
        trackingserver.down(state)
        restarter = threading.Timer(1.0, restart)
        restarter.start()
        log_everything(tracker, run_id, artifact, step=2)  # blocks, retrying, until it is back
        done = time.monotonic()
        restarter.join()  # the write may end before the thread has noted the time: wait for it
    assert done > times["restarting"]  # the write waited for the server instead of passing it by
    recovered = max(0.0, done - times["back"])
    assert not tracker.spooling and not root.exists()
    assert_all_present(uri, run_id, [1, 2])
    # Measured ~0.3 s: one backoff pause (capped at 2 s) and four writes. Only a writer that
    # slept out its 60 s retry window instead of retrying comes near this bound.
    assert recovered < 30
    print(f"\nrecovery (server healthy -> blocked write done): {recovered:.2f} s")


def test_server_that_stays_down_spools_then_sync_uploads_everything(server, tmp_path):
    state, port, uri = server
    artifact = tmp_path / "notes.txt"
    artifact.write_text("notes")
    state_dir = tmp_path / "state"
    root = spool.spool_root(state_dir)
    tracker = Tracker.open(uri, "outage", spool_root=root, retry_seconds=1)
    with pytest.raises(ClusterUnreachableError) as info, tracker.run("stage") as run_id:
        log_everything(tracker, run_id, artifact, step=1)
        trackingserver.down(state)
        log_everything(tracker, run_id, artifact, step=2)  # ~1 s of retries, then spooled
        started = time.monotonic()
        log_everything(tracker, run_id, artifact, step=3)  # spooled at once: no more waiting
        # ~ms; a tracker that retried again would wait its 1 s window on each of the 4 writes
        assert time.monotonic() - started < 2
    message = str(info.value)
    assert info.value.exit_code == 5
    assert str(root) in message
    assert f"relay tracking sync --state-dir {state_dir} --tracking-uri {uri}" in message
    with pytest.raises(ClusterUnreachableError, match="relay tracking sync"):
        tracker.start("next stage")  # a new run needs the server: fail fast, do not wait again
    (journal,) = spool.journals(root)
    records = [json.loads(line) for line in (journal / spool.RECORDS).read_text().splitlines()]
    assert [r["op"] for r in records] == [
        *("log_batch", "log_artifact", "log_artifact", "log_inputs") * 2,
        "set_terminated",
    ]
    spooled_at = records[0]["metrics"][0][2]  # the original timestamp travels with the metric
    backup = tmp_path / "journal-copy"
    shutil.copytree(journal, backup)

    trackingserver.up(state, port)
    back = time.monotonic()
    synced = CliRunner().invoke(
        app, ["tracking", "sync", "--state-dir", str(state_dir), "--tracking-uri", uri, "--json"]
    )
    recovery = time.monotonic() - back
    assert synced.exit_code == 0, synced.output
    assert json_output(synced)["records"] == len(records)
    assert not root.exists()
    assert_all_present(uri, run_id, [1, 2, 3])
    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "loss")
    assert {m.timestamp for m in history if m.step == 2} == {spooled_at}
    print(f"\nrecovery (server healthy -> spool drained, {len(records)} records): {recovery:.2f} s")

    shutil.copytree(backup, journal)  # a sync interrupted after the upload, then run again
    again = CliRunner().invoke(app, ["tracking", "sync", "--state-dir", str(state_dir)])
    assert again.exit_code == 0, again.output
    assert_all_present(uri, run_id, [1, 2, 3])  # the journal's own URI; no duplicates


def test_client_errors_are_not_retried_or_spooled(server, tmp_path):
    _, _, uri = server
    tracker = Tracker.open(uri, "outage", spool_root=tmp_path / "spool", retry_seconds=30)
    started = time.monotonic()
    with pytest.raises(MlflowException):
        tracker.log("0" * 32, metrics={"loss": 1.0})  # no such run: a 4xx, not an outage
    assert time.monotonic() - started < 5  # one request; only a retried 4xx (30 s) breaks it
    assert not tracker.spooling


def test_sync_stopped_by_a_dead_server_keeps_the_spool(tmp_path):
    root = spool.spool_root(tmp_path)
    journal = spool.Journal(root, f"http://127.0.0.1:{free_port()}")
    journal.append({"op": "update_run", "run_id": "r" * 32, "status": "RUNNING"})
    result = CliRunner().invoke(
        app, ["tracking", "sync", "--state-dir", str(tmp_path), "--retry-seconds", "1"]
    )
    assert result.exit_code == 5
    assert "stopped at record 1 of 1" in result.output and "run it again" in result.output
    assert spool.journals(root) == [journal.folder]
