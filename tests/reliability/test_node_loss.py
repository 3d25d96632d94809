"""A worker node lost in the middle of a job: its ETL tasks and trials carry on elsewhere.

Real processes: a head and two 1-CPU worker nodes (`relay cluster up`'s code, token auth), a
tracking server, and pipelines submitted through the Jobs API. A node is lost the way a machine
dies: every one of its processes gets SIGKILL at once. The cluster is told to notice a dead node
within ~3 s (Ray's default health check takes ~15-30 s), so the tests stay short.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.compute import localcluster
from cluster.compute.submit import TERMINAL, Target, describe
from cluster.processes import kill, pids_mentioning
from cluster.tracking import server as trackingserver
from jobs.cli.app import app
from jobs.etl.stage import build
from tests.cli_output import json_output
from tests.conftest import CI_CONFIG, ROOT, ci_raw, free_port, merge
from tests.jobs.train.undisturbed import undisturbed

T = TypeVar("T")
FAST_NODE_DEATH = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
ETL_DATA = {"rows": 1_200_000, "files": 3}  # ~3 s per file task: long enough to lose a node in


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A state dir with a tracking server, for the module; each test starts its own cluster in
    it (a test loses nodes: the next must not inherit what is left)."""
    state = str(tmp_path_factory.mktemp("nodeloss") / "state")
    try:
        yield {"state": state, "tracking": trackingserver.up(state, port=free_port())["uri"]}
    finally:
        with suppress(Exception):
            trackingserver.down(state)


@pytest.fixture
def cluster(home: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Head + `request.param` workers (1 CPU each), this test's own; stopped by PID even on
    failure."""
    try:
        record = localcluster.up(home["state"], workers=request.param, extra_env=FAST_NODE_DEATH)
        for node in record["nodes"]:
            node["raylet"], node["node_id"] = raylet(node)
        nodes = {n["node_id"]: n for n in record["nodes"]}
        yield {**home, "record": record, "nodes": nodes}
    finally:
        if localcluster.recorded(home["state"]):
            localcluster.down(home["state"])


def raylet(node: dict[str, Any]) -> tuple[int, str]:
    """(pid, Ray node id) of a recorded node's raylet, from its command line."""
    for pid in pids_mentioning(node["temp_dir"]):
        with suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if args[0].endswith(b"/raylet"):
                ids = [a for a in args if a.startswith(b"--node_id=")]
                return pid, ids[0].split(b"=", 1)[1].decode()
    raise AssertionError(f"no raylet for node {node['name']}")


def workers_of(raylet_pid: int) -> dict[int, bytes]:
    """pid -> title of the raylet's worker processes (Ray puts each in its own session and
    titles it `ray::<what it runs>`)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == raylet_pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
    return found


def lose(node: dict[str, Any]) -> float:
    """SIGKILL every process of the node at once, as a dead machine; return when."""
    workers = list(workers_of(node["raylet"]))
    at = time.monotonic()
    os.killpg(node["pgid"], signal.SIGKILL)
    kill([*workers, *pids_mentioning(node["temp_dir"])])
    return at


def working_on(title: bytes, nodes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first of `nodes` with a worker running a task titled `title`."""
    for node in nodes:
        if any(t.startswith(title) for t in workers_of(node["raylet"]).values()):
            return node
    return None


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def submit(cluster: dict[str, Any], until: str, overrides: list[str]) -> str:
    args = ["submit", str(CI_CONFIG), "--until", until, "--no-follow"]
    args += ["--state-dir", cluster["state"], "--project", str(ROOT)]
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    return json_output(result, last_line=True)["submission_id"]


def while_running(cluster: dict[str, Any], job: str, check: Callable[[], T | None]) -> Callable:
    """`check`, failing at once (with the job's logs) if the job ends before it is met."""
    client = Target.resolve(None, cluster["state"]).client()
    asked = [0.0]

    def checked() -> T | None:
        found = check()
        if not found and time.monotonic() - asked[0] > 1.0:
            asked[0] = time.monotonic()
            status = describe(client.get_job_info(job))["status"]
            assert status not in TERMINAL, f"job {status}: {client.get_job_logs(job)[-4000:]}"
        return found

    return checked


def finished(cluster: dict[str, Any], job: str, timeout: float) -> dict[str, Any]:
    client = Target.resolve(None, cluster["state"]).client()
    info = wait_for(
        lambda: i if (i := describe(client.get_job_info(job)))["status"] in TERMINAL else None,
        timeout,
        f"job {job} to end",
        every=1.0,
    )
    assert info["status"] == "SUCCEEDED", client.get_job_logs(job)[-4000:]
    return info


def tasks(cluster: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every attempt of the cluster's tasks called `name` (Ray's state API)."""
    record = cluster["record"]
    token = Path(record["token_path"]).read_text().strip()
    query = urllib.parse.urlencode(
        {
            "limit": 10000,
            "detail": "true",
            "filter_keys": "name",
            "filter_predicates": "=",
            "filter_values": name,
        }
    )
    body = localcluster._get(f"{record['dashboard_url']}/api/v0/tasks?{query}", token)
    return body["data"]["result"]["result"]


def pipeline_run(client: MlflowClient, job: str) -> Any:
    experiment = client.get_experiment_by_name("credit-ci")
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`relay.ray_submission_id` = '{job}'",
    )
    return run


def children(client: MlflowClient, parent: Any) -> list[Any]:
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )


@pytest.mark.parametrize("cluster", [2], indirect=True)  # one to lose, one to carry on
def test_losing_a_worker_during_etl_gives_the_same_dataset(
    cluster, ray_cluster, make_config, capsys
):
    workers = [n for n in cluster["record"]["nodes"] if n["name"] != "head"]
    overrides = [f"data.source.{k}={v}" for k, v in ETL_DATA.items()]
    job = submit(cluster, "etl", overrides)
    on_worker = while_running(cluster, job, lambda: working_on(b"ray::process_file", workers))
    victim = wait_for(on_worker, 180, "an ETL task on a worker")
    killed = lose(victim)
    lost = victim["node_id"]
    info = finished(cluster, job, timeout=240)
    recovered = time.monotonic() - killed

    client = MlflowClient(tracking_uri=cluster["tracking"])
    (etl_run,) = [
        r
        for r in children(client, pipeline_run(client, job))
        if r.data.tags["relay.stage"] == "etl"
    ]
    # The lost node's file was processed again, on a node still alive ...
    attempts = tasks(cluster, "process_file")
    assert any(a["node_id"] == lost and a["state"] == "FAILED" for a in attempts)
    assert any(a["attempt_number"] >= 1 and a["state"] == "FINISHED" for a in attempts)
    assert lost not in etl_run.data.tags["relay.node_ids"].split(",")
    # ... and the dataset is the one an undisturbed single-node run builds, byte for byte.
    reference = build(make_config(base=merge(ci_raw(), {"data": {"source": ETL_DATA}})))
    assert etl_run.data.tags["relay.dataset_digest"] == reference.digest
    assert etl_run.data.metrics["rows_in"] == ETL_DATA["rows"]
    with capsys.disabled():
        print(f"\nETL: node lost at t0, job {info['status']} {recovered:.1f} s later")


@pytest.mark.parametrize("cluster", [1], indirect=True)  # a trial on the worker, one on the head
def test_losing_a_worker_during_tuning_resumes_its_trial_from_a_checkpoint(cluster, capsys):
    nodes = cluster["nodes"].items()
    ((worker_id, worker),) = [(i, n) for i, n in nodes if n["name"] != "head"]
    (head_id,) = [i for i, n in nodes if n["name"] == "head"]
    client = MlflowClient(tracking_uri=cluster["tracking"])
    created = client.get_experiment_by_name("credit-ci")  # by another test of the module, or not
    before = (
        {r.info.run_id for r in client.search_runs([created.experiment_id])} if created else set()
    )
    # ~0.5 s epochs; both trials start at once, one per alive node (1 CPU each).
    epochs = 12
    job = submit(
        cluster,
        "register",
        ["train.batch_size=16", f"train.epochs={epochs}", "tune.scheduler=fifo"],
    )

    def trial_on_worker() -> Any:
        found = client.get_experiment_by_name("credit-ci")
        if found is None:  # the job has not created it yet
            return None
        for run in client.search_runs(
            [found.experiment_id], filter_string="tags.`relay.stage` = 'trial'"
        ):
            if run.info.run_id in before or run.data.tags.get("relay.node_id") != worker_id:
                continue
            reported = len(client.get_metric_history(run.info.run_id, "val_loss"))
            if run.info.status == "RUNNING" and 2 <= reported < epochs - 4:
                return run  # a checkpoint per reported epoch: there is something to resume
        return None

    victim_run = wait_for(
        while_running(cluster, job, trial_on_worker),
        240,
        "a trial with checkpoints on the worker",
        0.2,
    )
    killed = lose(worker)
    finished(cluster, job, timeout=300)
    recovered = time.monotonic() - killed
    experiment = client.get_experiment_by_name("credit-ci").experiment_id

    pipeline = pipeline_run(client, job)
    assert pipeline.info.status == "FINISHED"
    trials = [
        r
        for r in client.search_runs([experiment], filter_string="tags.`relay.stage` = 'trial'")
        if r.info.run_id not in before
    ]
    assert len(trials) == 2  # the restarted trial kept its run: no duplicate
    run = client.get_run(victim_run.info.run_id)
    tags = run.data.tags
    assert tags["relay.trial_failures"] == "1" and tags["relay.failed_on_node"] == worker_id
    # The driver logs each epoch once whatever the trial replays: only the trial's own report
    # (the epoch its checkpoint gave back) and its losses show that it was restored.
    resumed = int(tags["relay.resumed_from_epoch"])
    assert 2 <= resumed < epochs  # from its last checkpoint, not from scratch
    assert tags["relay.node_id"] == head_id  # it finished on the node still alive
    assert run.info.status == "FINISHED" and tags["relay.trial_status"] == "completed"
    history = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(1, epochs + 1))  # no gap, no repeat
    (etl_run,) = [r for r in children(client, pipeline) if r.data.tags["relay.stage"] == "etl"]
    reference = undisturbed(
        etl_run.data.tags["relay.dataset_path"], run.data.params, epochs, ci_raw()["seed"]
    )
    # the weights and optimizer state came back with the epoch counter
    assert [m.value for m in history] == pytest.approx([r["val_loss"] for r in reference], rel=1e-6)
    versions = client.search_model_versions("name = 'credit-default-ci'")
    (version,) = [v for v in versions if v.tags["relay.pipeline_run_id"] == pipeline.info.run_id]
    assert version.run_id in {t.info.run_id for t in trials}  # one version, from these trials
    with capsys.disabled():
        print(
            f"\nTune: trial resumed from epoch {resumed} on the head; job done "
            f"{recovered:.1f} s after the node was lost"
        )
