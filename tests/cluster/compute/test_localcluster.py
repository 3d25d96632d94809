"""A real multi-node Ray cluster on this machine: `ray start` head + worker with token auth, the
pipeline submitted through the Jobs API and logged to an `mlflow server` over HTTP, Ray's own
autoscaler adding and removing worker nodes, and a `down` that leaves no process behind.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cluster.compute import localcluster
from cluster.compute.serveflags import serve_flags
from cluster.config import ServeConfig
from cluster.errors import ClusterUnreachableError, ConfigError
from cluster.processes import alive, pids_mentioning
from cluster.tracking import server as trackingserver
from cluster.tracking.tracker import CREDENTIALS_ENV, Tracker, use_credentials_file
from jobs.cli.app import app
from jobs.etl.stage import build
from jobs.pipeline import lineage
from tests.cli_output import assert_human, json_object, own_stdout
from tests.conftest import CI_CONFIG, ROOT, free_port


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean git checkout of this tree's files as they are now (tracked and new ones): the
    project a user submits from. Its own commit, so a dirty development tree does not matter."""
    folder = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # not one deleted in the working tree
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    git = ["git", "-C", str(folder), "-c", "user.name=relay", "-c", "user.email=relay@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "checkout"]):
        subprocess.run([*git, *args], check=True)
    return folder


@pytest.fixture(scope="module")
def cluster(checkout: Path) -> Iterator[dict[str, Any]]:
    """Head + 1 worker (1 CPU each) and a tracking server, their state in the checkout's
    `.relay` (as `relay cluster up` run there keeps it); stopped by PID even on failure."""
    state = str(checkout / ".relay")
    try:
        # Serve's process-level flags reach every node (as `relay cluster up --serve-config`).
        flags = serve_flags(ServeConfig())
        record = localcluster.up(state, workers=1, extra_env=flags)
        tracking = trackingserver.up(state, port=free_port(), basic_auth=True)
        # This process reads the server as a user would: with the file it was told to export.
        os.environ[CREDENTIALS_ENV] = tracking["credentials"]
        use_credentials_file()
        yield {"state": state, "record": record, "tracking": tracking["uri"], "server": tracking}
    finally:
        for name in (CREDENTIALS_ENV, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
        with suppress(Exception):
            trackingserver.down(state)
        if localcluster.recorded(state):
            localcluster.down(state)


def http_status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def basic_auth_status(
    url: str, user: str | None = None, password: str = "", method: str = "GET", body: Any = None
) -> int:
    headers = {"Content-Type": "application/json"}
    if user:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tracking_server_wants_the_generated_password_and_never_shows_it(cluster, monkeypatch):
    server = cluster["server"]
    credentials = Path(server["credentials"])
    assert credentials.stat().st_mode & 0o777 == 0o600
    user, _, password = credentials.read_text().strip().partition(":")
    url = f"{cluster['tracking']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert basic_auth_status(url) == 401
    assert basic_auth_status(url, user, "not-the-password") == 401
    assert basic_auth_status(url, user, password) == 200
    with pytest.raises(ConfigError, match="with auth basic already runs"):
        trackingserver.up(cluster["state"], basic_auth=False)  # never silently without auth
    shown = [json.dumps(server), *(p.read_text() for p in credentials.parent.glob("*.json"))]
    shown += [Path(f"/proc/{pid}/cmdline").read_bytes().decode() for pid in group(server["pid"])]
    assert not [text for text in shown if password in text]

    for name in (CREDENTIALS_ENV, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name)
    with pytest.raises(ClusterUnreachableError, match="wants credentials") as refused:
        Tracker.open(cluster["tracking"], "x", retry_seconds=1)
    assert password not in str(refused.value)


def test_the_servers_credential_cache_never_outlives_a_changed_or_deleted_password(cluster):
    """relay turns MLflow's credential cache on (checking the password hash on every request
    made a run ~6x slower): a password changed or a user deleted through the API is refused at
    once, not when the cache expires."""
    admin, _, secret = Path(cluster["server"]["credentials"]).read_text().strip().partition(":")
    users = f"{cluster['tracking']}/api/2.0/mlflow/users"
    url = f"{cluster['tracking']}/api/2.0/mlflow/experiments/search?max_results=1"
    name, old, new = f"u{time.time_ns()}", "old-password-1234", "new-password-5678"
    as_admin = {"user": admin, "password": secret}
    body = {"username": name, "password": old}
    assert basic_auth_status(f"{users}/create", **as_admin, method="POST", body=body) == 200
    try:
        assert basic_auth_status(url, name, old) == 200  # now cached
        body = {"username": name, "password": new}
        assert (
            basic_auth_status(f"{users}/update-password", **as_admin, method="PATCH", body=body)
            == 200
        )
        assert basic_auth_status(url, name, old) == 401
        assert basic_auth_status(url, name, new) == 200
    finally:
        body = {"username": name}
        assert basic_auth_status(f"{users}/delete", **as_admin, method="DELETE", body=body) == 200
    assert basic_auth_status(url, name, new) == 401


def group(pgid: int) -> list[int]:
    """The processes of a process group (the server and its workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == pgid:
                found.append(int(stat.parent.name))
    return found


def test_cluster_status_shows_both_nodes_with_explicit_resources(cluster):
    state = ["--state-dir", cluster["state"]]
    human = CliRunner().invoke(app, ["cluster", "status", *state])
    assert human.exit_code == 0, human.output
    assert_human(human)
    assert "alive:     2 nodes (1 head, 1 worker)" in human.stdout
    assert f"dashboard: {cluster['record']['dashboard_url']}" in human.stdout
    result = CliRunner().invoke(app, ["cluster", "status", *state, "--json"])
    assert result.exit_code == 0, result.output
    status = json_object(result)
    assert len(status["alive_nodes"]) == 2
    assert sorted(n["is_head"] for n in status["alive_nodes"]) == [False, True]
    assert status["resources"]["CPU"] == 2.0  # not the machine's cores: what we declared
    assert status["resources"]["memory"] == 2 * 2048 * 1024 * 1024
    token = Path(status["token_path"])
    assert token.stat().st_mode & 0o777 == 0o600
    assert status["dashboard_url"].startswith("http://127.0.0.1:")
    stats = set()
    for node in status["nodes"]:  # the environment each `ray start` (and its children) got
        raw = Path(f"/proc/{node['pid']}/environ").read_bytes().split(b"\0")
        environ = dict(e.decode().split("=", 1) for e in raw if b"=" in e)
        assert environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and environ["RAY_AUTH_MODE"] == "token"
        stats.add(environ["RAY_SERVE_HAPROXY_STATS_PORT"])  # one machine: a port per HAProxy
        assert ("RAY_SERVE_WORKER_PROXY_HTTP_PORT" in environ) == (node["name"] != "head")
    assert len(stats) == 2


def test_cluster_up_on_a_running_cluster_reports_it(cluster):
    """`up` again starts nothing: the running cluster's record, for a person or a script."""
    state = ["--state-dir", cluster["state"]]
    human = CliRunner().invoke(app, ["cluster", "up", *state])
    assert human.exit_code == 0, human.output
    assert_human(human)
    assert f"address:   {cluster['record']['address']}" in human.stdout
    again = CliRunner().invoke(app, ["cluster", "up", *state, "--json"])
    assert again.exit_code == 0, again.output
    record = json_object(again)
    assert record["address"] == cluster["record"]["address"] and "alive_nodes" not in record
    assert [n["pid"] for n in record["nodes"]] == [n["pid"] for n in cluster["record"]["nodes"]]


def test_jobs_api_refuses_missing_and_wrong_tokens(cluster, tmp_path, monkeypatch):
    url = cluster["record"]["dashboard_url"]
    token = Path(cluster["record"]["token_path"]).read_text().strip()
    assert http_status(f"{url}/api/jobs/", None) == 401
    assert http_status(f"{url}/api/jobs/", "not-the-token") == 403
    assert http_status(f"{url}/api/jobs/", token) == 200

    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    elsewhere = str(tmp_path / "other-state")  # no recorded cluster there: no token to find
    base = ["submit", str(CI_CONFIG), "--address", url, "--state-dir", elsewhere]
    base += ["--tracking-uri", cluster["tracking"], "--project", str(ROOT)]
    missing = CliRunner().invoke(app, base)
    assert missing.exit_code == 5
    assert "uses token auth and no token was sent" in missing.output
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token\n")
    refused = CliRunner().invoke(app, [*base, "--token-file", str(wrong)])
    assert refused.exit_code == 5
    assert "refused the token" in refused.output


def test_jobs_status_and_logs_follow_track_a_job_to_its_end(cluster):
    """`relay jobs logs --follow` streams a running job's output until it ends (as `ray job
    logs -f`); `relay jobs status` gives its typed state."""
    from cluster.compute.submit import Target

    client = Target.resolve(None, cluster["state"]).client()
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True); time.sleep(1)"
    job = client.submit_job(entrypoint=f"python -c {shlex.quote(code)}")
    state = ["--state-dir", cluster["state"]]
    followed = CliRunner().invoke(app, ["jobs", "logs", job, "--follow", *state])
    assert followed.exit_code == 0, followed.output
    assert [line for line in followed.output.splitlines() if line.startswith("tick")] == [
        "tick 0",
        "tick 1",
        "tick 2",
    ]
    assert f"job {job} SUCCEEDED" in followed.output
    human = CliRunner().invoke(app, ["jobs", "status", job, *state])
    assert human.exit_code == 0, human.output
    assert_human(human)
    assert "status:           SUCCEEDED" in human.stdout
    assert "driver exit code: 0" in human.stdout
    status = CliRunner().invoke(app, ["jobs", "status", job, *state, "--json"])
    assert status.exit_code == 0, status.output
    info = json_object(status)
    assert (info["submission_id"], info["status"], info["driver_exit_code"]) == (
        job,
        "SUCCEEDED",
        0,
    )
    assert info["end_time"] >= info["start_time"] > 0
    listed = json_object(CliRunner().invoke(app, ["jobs", "list", "--json", *state]))
    assert info in listed["jobs"]  # the same typed record, newest first
    logs = json_object(CliRunner().invoke(app, ["jobs", "logs", job, *state, "--json"]))
    assert logs["submission_id"] == job and "tick 2" in logs["logs"]
    stopped = CliRunner().invoke(app, ["jobs", "stop", job, *state])
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == f"{job}: not running, nothing to stop"
    again = json_object(CliRunner().invoke(app, ["jobs", "stop", job, *state, "--json"]))
    assert again == {"submission_id": job, "stop_requested": False}  # it had ended


@pytest.fixture(scope="module")
def submitted(cluster, checkout) -> dict[str, Any]:
    """`relay submit` of configs/ci.yaml from the clean checkout: the job and its pipeline run."""
    from mlflow.tracking import MlflowClient

    state, uri = cluster["state"], cluster["tracking"]
    config = str(checkout / "configs" / "ci.yaml")
    args = ["submit", config, "--state-dir", state, "--project", str(checkout)]
    # Trials long enough (~5 s of epochs) that the second starts before the first ends: with
    # re-used trial actors, ci.yaml's 1-second trials can all run on the first node's actor.
    for override in ("train.batch_size=16", "train.epochs=10", "tune.scheduler=fifo"):
        args += ["--set", override]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    job = json_object(result)  # after the job's streamed logs
    assert job["status"] == "SUCCEEDED" and job["driver_exit_code"] == 0
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("credit-ci")
    (pipeline,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`relay.ray_submission_id` = '{job['submission_id']}'",
    )
    return {"job": job, "client": client, "experiment": experiment, "pipeline": pipeline}


def test_submitted_pipeline_spreads_over_nodes_and_logs_lineage_over_http(
    cluster, submitted, ray_cluster, make_config
):
    from cluster.compute.submit import Target

    state, uri, job = cluster["state"], cluster["tracking"], submitted["job"]
    info = Target.resolve(None, state).client().get_job_info(job["submission_id"])
    password = Path(cluster["server"]["credentials"]).read_text().strip().partition(":")[2]
    assert info.runtime_env["env_vars"][CREDENTIALS_ENV] == cluster["server"]["credentials"]
    assert password not in json.dumps(info.runtime_env)  # a path travels, not the password

    client, experiment = submitted["client"], submitted["experiment"]
    pipeline = submitted["pipeline"]
    assert pipeline.info.status == "FINISHED"
    assert pipeline.data.tags["relay.ray_job_id"]
    assert pipeline.data.tags["relay.ray_embedded"] == "false"

    nodes = {n["node_id"] for n in localcluster.alive_nodes(cluster["record"])}
    (etl_run,) = lineage.children(client, pipeline, "etl")
    assert set(etl_run.data.tags["relay.node_ids"].split(",")) == nodes  # 2 files, 2 nodes
    trials = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`relay.stage` = 'trial'"
    )
    assert {t.data.tags["relay.node_id"] for t in trials} == nodes  # 1 CPU each: one per node

    # The same data gives the same dataset whether one embedded node or the cluster built it.
    single = build(make_config())
    assert single.digest == pipeline.data.tags["relay.dataset_digest"]

    walked = CliRunner().invoke(
        app, ["lineage", "credit-default-ci/1", "--tracking-uri", uri, "--json"]
    )
    assert walked.exit_code == 0, walked.output
    chain = json_object(walked)
    assert chain["pipeline"]["run_id"] == pipeline.info.run_id
    assert chain["pipeline"]["ray_submission_id"] == job["submission_id"]
    assert set(chain["etl"]["node_ids"]) == nodes
    assert chain["dataset"]["digest"] == single.digest
    assert len(chain["raw_files"]) == 2 and all(len(f["sha256"]) == 64 for f in chain["raw_files"])


def test_a_run_submitted_from_a_clean_checkout_records_its_commit_and_reproduces(
    cluster, submitted, checkout, ray_cluster, monkeypatch
):
    """`.git` is not uploaded: the submitter passes the commit, and `relay reproduce` (which
    refused a commit "unknown") re-runs the submitted pipeline from the same checkout."""
    from cluster.compute.submit import Target

    head = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    job = submitted["job"]
    info = Target.resolve(None, cluster["state"]).client().get_job_info(job["submission_id"])
    assert info.runtime_env["env_vars"]["RELAY_GIT_COMMIT"] == head
    tags = submitted["pipeline"].data.tags
    assert tags["relay.git_commit"] == tags["mlflow.source.git.commit"] == head
    assert tags["relay.git_dirty"] == "false" and "relay.git_diff_sha256" not in tags
    assert tags["relay.git_source"] == "environment"

    monkeypatch.chdir(checkout)  # the code check compares with the checkout reproduce runs in
    run_id, uri = submitted["pipeline"].info.run_id, cluster["tracking"]
    result = CliRunner().invoke(app, ["reproduce", run_id, "--tracking-uri", uri, "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    reproduced = json_object(result)
    assert reproduced["reproduced"] and reproduced["warnings"] == []
    assert reproduced["dataset_digest"] == tags["relay.dataset_digest"]


def test_a_gbdt_trial_trains_its_two_xgboost_workers_on_both_nodes(cluster, checkout):
    """model.family gbdt with workers_per_trial 2 and 2 CPUs per trial, submitted to the head +
    worker cluster (1 CPU each): Ray can place the two XGBoostTrainer workers only one per node,
    so the trial's boosting runs over both nodes in XGBoost's collective."""
    from mlflow.tracking import MlflowClient

    state, uri = cluster["state"], cluster["tracking"]
    args = ["submit", str(checkout / "configs" / "ci.yaml"), "--state-dir", state]
    args += ["--project", str(checkout), "--until", "evaluate"]
    overrides = (
        "model.family=gbdt",
        "model.name=credit-gbdt-ci",
        "tune.search_space=null",
        "tune.num_samples=1",
        "train.workers_per_trial=2",
        "train.cpus_per_trial=2",
    )
    for override in overrides:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output[-3000:]
    # The human form: after the job's own output (its --json line among it), the job's record
    # as key: value lines, not JSON.
    record = own_stdout(result).splitlines()[-7:]
    assert [line.split(":")[0] for line in record] == [
        "submission id", "status", "entrypoint", "message", "driver exit code", "start", "end",
    ]  # fmt: skip
    assert record[1].split() == ["status:", "SUCCEEDED"] and not record[-1].startswith("{")
    job = {"submission_id": record[0].split()[-1], "status": "SUCCEEDED"}
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("credit-ci")
    (pipeline,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`relay.ray_submission_id` = '{job['submission_id']}'",
    )
    (tune_run,) = lineage.children(client, pipeline, "tune")
    assert tune_run.data.params["family"] == "gbdt"
    assert tune_run.data.params["workers_per_trial"] == "2"
    (trial,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{tune_run.info.run_id}'",
    )
    assert trial.data.tags["relay.family"] == "gbdt"
    assert trial.data.tags["relay.trial_status"] in ("completed", "early_stopped")
    (evaluation,) = lineage.children(client, pipeline, "evaluate")
    assert evaluation.data.metrics["test_roc_auc"] > 0.6


def readme_ray_job_submit() -> str:
    """The README's `ray job submit` by hand against `relay cluster up`, as written there."""
    text = (ROOT / "README.md").read_text()
    after = text.split("- By hand, with Ray's own CLI", 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def ray_cli(script: str, folder: Path, **env: str) -> subprocess.CompletedProcess:
    """`script` in bash, with this venv's `ray` first on PATH and none of the test's Ray or
    tracking env (an inherited MLFLOW_TRACKING_URI would be the job's store)."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAY_") and k != "MLFLOW_TRACKING_URI"
    }
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}"
    command = ["bash", "-c", f"set -e\n{script}"]
    return subprocess.run(
        command, cwd=folder, env={**environ, **env}, capture_output=True, text=True, timeout=600
    )


def test_the_readmes_ray_job_submit_works_and_a_job_keeps_no_record_in_its_working_dir(
    cluster, checkout
):
    """Ray's own CLI. Without RAY_AUTH_MODE the client sends no token; without a state dir and
    tracking server outside the working dir, the job wrote its store into Ray's temporary copy
    of the project (gone with the cluster) and succeeded: now it is refused, saying why."""
    from mlflow.tracking import MlflowClient

    port = cluster["record"]["dashboard_url"].rsplit(":", 1)[1]
    script = readme_ray_job_submit().replace("<dashboard port>", port)
    script = script.replace("http://127.0.0.1:5000", cluster["tracking"]).rstrip()
    until_etl = " --until etl --json"  # the README's --until: ETL is enough to show where it wrote

    no_mode = ray_cli(script.replace(" RAY_AUTH_MODE=token", "") + until_etl, checkout)
    assert no_mode.returncode != 0
    assert "Missing authentication token" in no_mode.stdout + no_mode.stderr

    done = ray_cli(script + until_etl, checkout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith('{"pipeline"')]
    summary = json.loads(line)
    assert summary["tracking_uri"] == cluster["tracking"]
    assert Path(summary["dataset_path"]).is_relative_to(checkout / ".relay")
    client = MlflowClient(tracking_uri=cluster["tracking"])
    assert client.get_run(summary["pipeline_run_id"]).info.status == "FINISHED"

    # the line as the README had it: the default state dir and store, inside the working dir
    bare, _ = script.split(" \\\n    --set runtime.state_dir")
    refused = ray_cli(bare + until_etl, checkout)
    assert refused.returncode != 0
    logs = refused.stdout + refused.stderr
    assert "runtime_resources/working_dir_files/_ray_pkg_" in logs
    for words in ("runtime.state_dir '.relay'", "tracking.uri 'sqlite:///", "relay tracking up"):
        assert words in logs, logs[-3000:]


SERVE_APP = """
from ray import serve

@serve.deployment
class Hello:
    async def __call__(self, request) -> str:
        return "hello"

serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})
serve.run(Hello.bind(), name="hello", route_prefix="/hello")
print("deployed")
"""


def test_cluster_down_leaves_no_process_behind(tmp_path):
    """A cluster of its own (head + 1 worker on HAProxy ingress, a job and a Serve app run on
    it first), so the module's stays up for the other tests whatever their order. Serve's
    HAProxy is not in a node's process group: `down` finds it by the node's temp dir."""
    from cluster.compute.submit import Target

    state = str(tmp_path / "state")
    record = localcluster.up(state, workers=1, extra_env=serve_flags(ServeConfig()))
    try:
        client = Target.resolve(None, state).client()
        code = "import ray; ray.init(); print(ray.get(ray.remote(lambda: 41).remote()) + 1)"
        script = tmp_path / "serve_app.py"
        script.write_text(SERVE_APP.format(port=free_port()))
        jobs = [client.submit_job(entrypoint=f'python -c "{code}"')]
        jobs.append(client.submit_job(entrypoint=f"python {script}"))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not all(
            client.get_job_status(job).is_terminal() for job in jobs
        ):
            time.sleep(0.5)
        assert "42" in client.get_job_logs(jobs[0])
        assert "deployed" in client.get_job_logs(jobs[1]), client.get_job_logs(jobs[1])
        pids = [n["pid"] for n in record["nodes"]]
        markers = [record["address"], *(n["temp_dir"] for n in record["nodes"])]
        node_ids = [n["node_id"] for n in localcluster.alive_nodes(record)]
        haproxy = [pid for m in markers for pid in pids_mentioning(m) if is_haproxy(pid)]
        assert haproxy, "Serve's HAProxy should run under a node's temp dir"
        result = CliRunner().invoke(app, ["cluster", "down", "--state-dir", state, "--json"])
    finally:
        if localcluster.recorded(state):
            localcluster.down(state)
    assert result.exit_code == 0, result.output
    assert sorted(json_object(result)["stopped"]) == sorted(pids)
    assert not [p for p in pids + haproxy if alive(p)]
    assert not [pid for m in markers + node_ids for pid in pids_mentioning(m)]
    assert not any(Path(n["temp_dir"]).exists() for n in record["nodes"])
    assert localcluster.status(state) is None


def is_haproxy(pid: int) -> bool:
    with suppress(OSError):
        return b"haproxy.cfg" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def test_autoscaler_adds_workers_for_pending_work_and_removes_them_when_idle(tmp_path):
    """Ray's own autoscaler (fake multi-node provider): the head has no CPUs, so four 1-CPU
    tasks can only run once worker nodes join; idle workers go away again."""
    state = str(tmp_path / "state")
    record = localcluster.up(
        state,
        head=localcluster.NodeShape(cpus=0),
        worker=localcluster.NodeShape(cpus=1),
        autoscale=True,
        max_workers=2,
        idle_timeout_s=5,
    )
    try:
        from cluster.compute.submit import Target

        client = Target.resolve(None, state).client()
        code = (
            "import ray, time; ray.init(); "
            "f = ray.remote(num_cpus=1)(lambda: (time.sleep(3), "
            "ray.get_runtime_context().get_node_id())[1]); "
            "print('nodes', len(set(ray.get([f.remote() for _ in range(4)]))))"
        )
        job = client.submit_job(entrypoint=f'python -c "{code}"')
        began, peak, workers = time.monotonic(), 0, []
        while time.monotonic() - began < 120:
            workers = [n for n in localcluster.alive_nodes(record) if not n["is_head"]]
            peak = max(peak, len(workers))
            if peak and not workers and client.get_job_status(job).is_terminal():
                break
            time.sleep(1)
        assert peak == 2  # scaled up to max_workers for 4 pending tasks
        assert workers == []  # and back to zero once idle
        assert str(client.get_job_status(job)).endswith("SUCCEEDED")
        assert "nodes 2" in client.get_job_logs(job)
    finally:
        down = localcluster.down(state)
    assert down["forced"] == []  # the head stopped on SIGTERM within the grace, nothing killed
    assert not [p for p in down["killed_leftovers"] if alive(p)]
    assert not pids_mentioning(record["address"])
    assert os.environ.get("RAY_FAKE_CLUSTER") is None  # set for the head only, not for us
