"""A whole `relay run` (ETL -> Tune -> evaluate -> register) against a real MLflow server that
is stopped while Tune is logging its trials: back in time, nothing is lost; never back, the run
fails with exit 5 and a spool that `relay tracking sync` uploads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.tracking import server as trackingserver
from cluster.tracking import spool
from jobs.cli.app import app
from jobs.tune.trialruns import TRIAL_ID_TAG
from tests.cli_output import json_output
from tests.conftest import ROOT, ci_raw, merge

RELAY = [sys.executable, "-m", "jobs.cli"]
NUM_SAMPLES = ci_raw()["tune"]["num_samples"]
DOWN_SECONDS = 3.0  # the server stays stopped this long before it is started again

RAY_WORKER_LINE = re.compile(r"^(\x1b\[\d+m)?\([^)]*pid=\d+[^)]*\)")


def model_name(tmp_path: Path) -> str:
    return f"credit-{tmp_path.name}"


def start_run(
    tmp_path: Path, uri: str, retry_seconds: float, *extra: str, **config: Any
) -> subprocess.Popen:
    """`relay run ci.yaml --until register --json [extra]` logging to `uri` in an experiment
    and registering a model of its own (the tests share a server: one test's champion must
    not be the other's gate), ci.yaml merged with `config`; output to files."""
    path = tmp_path / "ci.yaml"
    override = {
        "tracking": {"uri": uri, "retry_seconds": retry_seconds, "experiment": tmp_path.name},
        "model": {"name": model_name(tmp_path)},
        "runtime": {"state_dir": str(tmp_path / "state")},
    }
    path.write_text(yaml.safe_dump(merge(merge(ci_raw(), override), config)))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [*RELAY, "run", str(path), "--until", "register", "--json", *extra],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "stdout").open("w"),
        stderr=(tmp_path / "stderr").open("w"),
    )


class Store:
    """What one run left in the tracking store, read over the server's REST API."""

    def __init__(self, uri: str, experiment: str):
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.experiment = experiment

    def runs(self, filter_string: str = "") -> list[Any]:
        found = self.client.get_experiment_by_name(self.experiment)
        return self.client.search_runs([found.experiment_id], filter_string) if found else []

    def trials(self) -> list[Any]:
        return self.runs("tags.`relay.stage` = 'trial'")

    def by_stage(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for r in self.runs():
            found.setdefault(r.data.tags.get("relay.stage", ""), []).append(r)
        return found

    def logged_epochs(self) -> int:
        """val_loss points over every trial run: grows with each epoch that reaches the store."""
        return sum(
            len(self.client.get_metric_history(r.info.run_id, "val_loss")) for r in self.trials()
        )

    def wait_for_trials(self, run: subprocess.Popen) -> int:
        """Block until Tune has opened every trial's run (with its params): their epochs are
        still to come (a ci trial trains ~1 s, after ~2 s of actor start). Return logged_epochs."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert run.poll() is None, "relay run ended before Tune opened its trial runs"
            trials = self.trials()
            if len(trials) == NUM_SAMPLES and all(r.data.params for r in trials):
                return self.logged_epochs()
            time.sleep(0.05)
        raise AssertionError("Tune did not open its trial runs in 300 s")

    def assert_trials_complete(self) -> list[Any]:
        """Every trial run FINISHED with each metric once per epoch it ran: no gap, no duplicate."""
        trials = self.trials()
        assert len(trials) == NUM_SAMPLES
        for trial in trials:
            assert trial.info.status == "FINISHED"
            assert TRIAL_ID_TAG in trial.data.tags
            epochs = int(trial.data.tags["relay.epochs_run"])
            assert epochs >= 1
            assert {"val_loss", "train_loss", "epoch_seconds"} <= set(trial.data.metrics)
            for name in trial.data.metrics:
                steps = [m.step for m in self.client.get_metric_history(trial.info.run_id, name)]
                assert sorted(steps) == list(range(1, epochs + 1)), (trial.info.run_name, name)
        return trials


def finish(run: subprocess.Popen, tmp_path: Path) -> tuple[int, str, str]:
    code = run.wait(timeout=300)
    return code, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()


def test_server_back_within_the_window_the_run_finishes_with_nothing_lost(server, tmp_path):
    state, port, uri = server
    store = Store(uri, tmp_path.name)
    client = store.client
    started = time.monotonic()
    # 40 epochs (~0.3 s each) per trial, FIFO: both trials still report epochs all through
    # the outage, and the store shows it (below)
    long_trials = {"train": {"epochs": 40}, "tune": {"scheduler": "fifo"}}
    run = start_run(tmp_path, uri, retry_seconds=120, **long_trials)
    before = store.wait_for_trials(run)
    down_from = time.time() * 1000  # SIGTERM goes out at once: no write gets in after this
    trackingserver.down(state)
    stopped = time.monotonic()
    assert run.poll() is None  # stopped while Tune was still logging
    time.sleep(DOWN_SECONDS)
    trackingserver.up(state, port)  # same port, same store and artifacts
    healthy, down_until = time.monotonic(), time.time() * 1000
    while store.logged_epochs() <= before and run.poll() is None:
        time.sleep(0.05)
    recovered = time.monotonic() - healthy
    code, stdout, stderr = finish(run, tmp_path)
    assert code == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])

    stages = store.by_stage()
    for stage in ("pipeline", "etl", "tune", "evaluate", "register"):
        assert [r.info.status for r in stages[stage]] == ["FINISHED"], stage
    assert stages["pipeline"][0].info.run_id == summary["pipeline_run_id"]
    trials = store.assert_trials_complete()
    assert len(trials) == summary["trials"]
    assert store.logged_epochs() > before  # epochs logged after the outage reached the store
    # An epoch logged between the stop and the server's return (a metric keeps the time it
    # was logged at, however often it was retried): Tune wrote into the outage, which was not
    # just a pause between writes. (The driver blocks on that write until the server is back.)
    stamps = [
        m.timestamp for t in trials for m in client.get_metric_history(t.info.run_id, "val_loss")
    ]
    assert any(down_from <= stamp < down_until for stamp in stamps), (
        down_from,
        down_until,
        sorted(stamps),
    )
    tune_run = stages["tune"][0].info.run_id
    assert "learning_curves.png" in {a.path for a in client.list_artifacts(tune_run)}
    evaluate_run = stages["evaluate"][0].info.run_id
    assert client.list_artifacts(evaluate_run, "plots")
    register_run = stages["register"][0].info.run_id
    assert {"gates.json", "model_card.md"} <= {a.path for a in client.list_artifacts(register_run)}
    version = client.get_model_version(model_name(tmp_path), str(summary["model_version"]))
    assert version.run_id == summary["best_trial_run_id"]
    assert not spool.spool_root(tmp_path / "state").exists()  # nothing had to be spooled
    # Measured ~2 s (one backoff pause, at most 2 s, plus the next Tune result). Only a writer
    # that waited out its 120 s retry window instead of retrying comes near this bound.
    assert recovered < 60
    print(
        f"\nserver down {healthy - stopped:.1f} s mid-tune (with its restart): recovery (server "
        f"healthy -> next trial epoch in the store) {recovered:.2f} s; "
        f"test {time.monotonic() - started:.1f} s"
    )


def test_server_that_never_comes_back_fails_the_run_clearly_and_sync_uploads_it(server, tmp_path):
    state, port, uri = server
    store = Store(uri, tmp_path.name)
    started = time.monotonic()
    run = start_run(tmp_path, uri, retry_seconds=2)
    store.wait_for_trials(run)
    trackingserver.down(state)
    down = time.monotonic()
    assert run.poll() is None  # stopped while Tune was still logging
    code, stdout, stderr = finish(run, tmp_path)
    failed_after = time.monotonic() - down
    # Tune finishes its trials into the spool, then the run stops (measured 4.4 s): a writer
    # that waited out its 2 s window on each of its ~12 records, not only the first, takes ~25 s
    assert failed_after < 20

    state_dir = tmp_path / "state"
    root = spool.spool_root(state_dir)
    assert code == 5, stderr[-3000:]
    # relay's own lines: a Ray worker killed at shutdown may print Ray's SIGTERM traceback, which
    # Ray forwards prefixed with the worker's name and pid (seen once in CI)
    own = [line for line in stderr.splitlines() if not RAY_WORKER_LINE.match(line)]
    assert not any("Traceback" in line for line in own), stderr[-3000:]
    assert f"relay tracking sync --state-dir {state_dir} --tracking-uri {uri}" in stderr
    (journal,) = spool.journals(root)  # trials and stages share one journal
    assert str(journal) in stderr
    records = [json.loads(line) for line in (journal / spool.RECORDS).read_text().splitlines()]
    (count,) = re.findall(r"(\d+) tracking record\(s\)", stderr)
    assert int(count) == len(records)  # the message counts every record, the trials' too
    trial_metrics = [r for r in records if r["op"] == "log_batch" and r["metrics"]]
    assert trial_metrics, "no trial epoch was spooled"
    assert "pipeline_run_id" not in stdout  # no summary: the run did not finish

    trackingserver.up(state, port)
    synced = CliRunner().invoke(app, ["tracking", "sync", "--state-dir", str(state_dir), "--json"])
    assert synced.exit_code == 0, synced.output
    assert json_output(synced)["records"] == len(records)
    assert not root.exists()
    store.assert_trials_complete()  # the spooled epochs and trial ends are in the store
    for record in trial_metrics:  # each spooled value once, at its step
        for key, value, _, step in record["metrics"]:
            history = store.client.get_metric_history(record["run_id"], key)
            assert [m.value for m in history if m.step == step] == [value]
    stages = store.by_stage()
    assert [r.info.status for r in stages["etl"]] == ["FINISHED"]
    assert [r.info.status for r in stages["pipeline"]] == ["FAILED"]
    assert [r.info.status for r in stages["tune"]] == ["FAILED"]
    assert "evaluate" not in stages and "register" not in stages  # they need the server

    # The failure said what follows the sync: the same runs carry on to the end.
    assert f"relay run {tmp_path / 'ci.yaml'} --resume" in stderr
    code, stdout, stderr = finish(start_run(tmp_path, uri, 2, "--resume"), tmp_path)
    assert code == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])["pipeline_run_id"] == (
        stages["pipeline"][0].info.run_id
    )
    resumed = store.by_stage()
    for stage in ("pipeline", "etl", "tune", "evaluate", "register"):
        assert [r.info.status for r in resumed[stage]] == ["FINISHED"], stage
    assert len(store.assert_trials_complete()) == len(stages["trial"])  # none twice
    print(
        f"\nserver never back (retry 2 s): exit 5 {failed_after:.1f} s after the stop, "
        f"{len(records)} records spooled and synced; test {time.monotonic() - started:.1f} s"
    )
