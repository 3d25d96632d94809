"""Secrets never reach logs, MLflow or the state dir: plant them, run, then search everything."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.configfile import parse_config
from cluster.errors import ClusterUnreachableError
from cluster.tracking import server as trackingserver
from cluster.tracking import spool
from cluster.tracking.tracker import CREDENTIALS_ENV, Tracker
from jobs.cli.app import app
from jobs.pipeline import runner
from tests.conftest import free_port, merge


def artifact_files(client: MlflowClient, run_id: str, folder: Path, path: str = "") -> list[Path]:
    files: list[Path] = []
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            files += artifact_files(client, run_id, folder, item.path)
        else:
            files.append(Path(client.download_artifacts(run_id, item.path, str(folder))))
    return files


def recorded_texts(client: MlflowClient, experiment_id: str, folder: Path) -> list[str]:
    """Every MLflow record of the experiment's runs and every artifact, downloaded to `folder`."""
    runs = client.search_runs([experiment_id])
    assert len(runs) >= 6  # pipeline, etl, tune, trial, evaluate, register (, deploy)
    texts: list[str] = []
    for run in runs:
        data = run.data
        texts += [run.info.run_name or "", *data.params.values(), *data.tags.values()]
        texts += [*data.params, *data.tags, *data.metrics]
        texts += [d.dataset.source + (d.dataset.profile or "") for d in run.inputs.dataset_inputs]
        texts += [
            f.read_bytes().decode("latin-1")
            for f in artifact_files(client, run.info.run_id, folder)
        ]
    assert any("summary.json" in str(f) for f in folder.rglob("*"))
    return texts


def file_texts(state: Path) -> list[str]:
    """The run's state dir and all of the session Ray's log files (Serve's too)."""
    import ray

    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "dataset.json" for p in files) and any(
        p.suffix == ".parquet" for p in files
    )
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # the session's Ray
    return [p.read_bytes().decode("latin-1") for p in [*files, *logs.rglob("*")] if p.is_file()]


def assert_absent(secrets: dict[str, str], texts: list[str]) -> None:
    for name, value in secrets.items():
        leaks = [t[max(0, t.find(value) - 80) : t.find(value) + 80] for t in texts if value in t]
        assert not leaks, f"{name} leaked: {leaks[:3]}"


def test_planted_secrets_appear_in_no_log_run_artifact_or_file(
    ray_cluster, make_config, tmp_path, monkeypatch, caplog, capfd
):
    """A whole run up to a served endpoint that answered, then a search of every MLflow record
    and artifact, the captured output, the state dir and all of Ray's and Serve's log files."""
    import ray
    from ray import serve

    secrets = {
        "serve token": f"serve-token-{uuid.uuid4().hex}",
        "RELAY_PII_KEY": f"pii-salt-{uuid.uuid4().hex}",
        "a wrong token a client sent": f"wrong-token-{uuid.uuid4().hex}",
    }
    monkeypatch.setenv("RELAY_PII_KEY", secrets["RELAY_PII_KEY"])
    token_file = tmp_path / "secrets" / "token"  # as a mounted secret: outside the state dir
    token_file.parent.mkdir()
    token_file.write_text(secrets["serve token"])
    caplog.set_level(logging.DEBUG)
    cfg = make_config(
        etl={"pii": "hash"}, tune={"num_samples": 1}, serve={"token_file": str(token_file)}
    )
    try:
        summary = runner.run(cfg, keep_serving=True)
        assert summary["model_version"] == 1  # the whole run happened, through deploy
        request = summary["prediction"]["request"]
        for token, status in ((secrets["serve token"], 200), (secrets[list(secrets)[2]], 403)):
            answer = httpx.post(
                summary["endpoint"],
                json=request,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert answer.status_code == status, answer.text
    finally:
        serve.shutdown()

    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    texts = recorded_texts(client, summary["experiment_id"], tmp_path / "artifacts")
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert any(p.name == "mlflow.db" for p in Path(cfg.runtime.state_dir).rglob("*"))
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    assert any(p.parent.name == "serve" for p in logs.rglob("*"))  # controller, proxy, replica
    assert_absent(secrets, texts + file_texts(Path(cfg.runtime.state_dir)))


def test_the_tracking_password_relay_reads_appears_in_no_record_log_or_file(
    ray_cluster, make_config, tmp_path, monkeypatch, caplog, capfd
):
    """The database password of a basic-auth tracking server (`relay tracking up --basic-auth`
    generates it): relay reads it from the credentials file and sends it with every request of
    a whole run to register, and it is nowhere in what the run wrote or printed, the server's
    own log and store included. (No deploy: the session's Ray started without the file.)"""
    server = tmp_path / "server"
    record = trackingserver.up(str(server), port=free_port(), basic_auth=True)
    try:
        password = Path(record["credentials"]).read_text().strip().partition(":")[2]
        assert len(password) >= 16
        monkeypatch.setenv(CREDENTIALS_ENV, record["credentials"])
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(name, "")  # recorded as unset: what relay sets is undone after
            monkeypatch.delenv(name)
        caplog.set_level(logging.DEBUG)
        local = make_config(tune={"num_samples": 1})
        cfg = parse_config(
            merge(local.model_dump(mode="json"), {"tracking": {"uri": record["uri"]}})
        )
        summary = runner.run(cfg, until="register")
        assert summary["model_version"] == 1 and summary["tracking_uri"] == record["uri"]
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == password  # relay read the file
        client = MlflowClient(tracking_uri=record["uri"])
        texts = recorded_texts(client, summary["experiment_id"], tmp_path / "artifacts")
    finally:
        trackingserver.down(str(server))
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    texts += file_texts(Path(cfg.runtime.state_dir))
    # the server's folder, but for the credentials file that holds the password by design
    texts += [
        p.read_bytes().decode("latin-1")
        for p in server.rglob("*")
        if p.is_file() and p != Path(record["credentials"])
    ]
    assert_absent({"tracking password": password}, texts)


def test_a_password_in_the_tracking_uri_stays_out_of_messages_and_the_spool(
    tmp_path, caplog, capfd
):
    secret = f"db-password-{uuid.uuid4().hex}"
    uri = f"http://relay:{secret}@127.0.0.1:{free_port()}"  # nothing listens: an outage
    root = spool.spool_root(tmp_path)
    with pytest.raises(ClusterUnreachableError) as opened:
        Tracker.open(uri, "x", spool_root=root, retry_seconds=0.5)
    tracker = Tracker(uri, "0", spool_root=root, retry_seconds=0.5)
    with pytest.raises(ClusterUnreachableError) as spooled, tracker.run("s", reopen="r" * 32):
        tracker.log("r" * 32, params={"p": 1}, metrics={"m": 1.0})
    messages = [str(opened.value), str(spooled.value)]
    assert all("relay:***@127.0.0.1" in m for m in messages)
    synced = CliRunner().invoke(app, ["tracking", "sync", "--state-dir", str(tmp_path)])
    assert synced.exit_code == 2 and "pass --tracking-uri with the password" in synced.output
    on_disk = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert on_disk  # the journal is there, without the password
    captured = capfd.readouterr()
    texts = [*messages, synced.output, *on_disk, captured.out, captured.err, caplog.text]
    assert not [t for t in texts if secret in t]
