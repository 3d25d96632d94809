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
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from cluster.processes import kill, pids_mentioning
from tests.conftest import ROOT, ci_raw, default_sigint, descendants, free_port, merge

RELAY = [sys.executable, "-m", "jobs.cli"]


def etl_only(config: Path) -> list[str]:
    """The entry point of submitted work, stopping after ETL."""
    return [
        sys.executable,
        "-m",
        "jobs.pipeline",
        "--config",
        str(config),
        "--until",
        "etl",
        "--json",
    ]


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


def ray_dirs_in_use(pids: Iterable[int] | None = None) -> set[Path]:
    """Temp dirs named on the command lines of running processes (Ray puts its session there),
    of `pids` only if given."""
    found = set()
    chosen = None if pids is None else {str(pid) for pid in pids}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if chosen is not None and cmdline.parent.name not in chosen:
            continue
        try:
            text = cmdline.read_bytes().decode(errors="ignore")
        except OSError:
            continue
        found |= {Path(m) for m in re.findall(r"/tmp/relay-ray-[A-Za-z0-9_-]+", text)}
    return found


def test_the_entry_point_runs_the_pipeline_up_to_until(tmp_path):
    config = write_config(tmp_path)
    result = run(etl_only(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["dataset_digest"]) == 64
    assert set(summary["stage_seconds"]) == {"ray", "etl"}
    assert "model_version" not in summary
    shutil.rmtree(tmp_path / ".relay")


def start_node(temp_dir: Path, *args: str) -> subprocess.Popen:
    """One `ray start --block` node in its own session, so its whole group can be stopped."""
    ray_bin = Path(sys.executable).with_name("ray")
    return subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--block",
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",
            "--object-store-memory=150000000",
            "--memory=2000000000",
            *args,
        ],
        env={
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(temp_dir),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def alive_nodes(address: str) -> int:
    probe = "import ray; ray.init(address=%r); print(sum(n['Alive'] for n in ray.nodes()))"
    out = subprocess.run(
        [sys.executable, "-c", probe % address],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


def stop(nodes: list[subprocess.Popen]) -> None:
    """By process group, as `relay cluster down` stops its nodes. Never `ray stop`."""
    from cluster.processes import stop_groups

    stop_groups([node.pid for node in nodes], leaders_first=True)
    for node in nodes:
        node.wait()


def test_two_node_cluster_by_address_gives_the_embedded_digest(tmp_path):
    """A real head + worker (`ray start`, loopback, own temp dir); ETL digests must match."""
    import time

    config = write_config(tmp_path, data={"source": {"rows": 8000, "files": 4}})
    embedded = run(etl_only(config), tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    temp_dir = Path(tempfile.mkdtemp(prefix="relay-ray-multi"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = [
        start_node(
            temp_dir,
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        )
    ]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and alive_nodes(address) < 1:
            time.sleep(1)
        nodes.append(start_node(temp_dir, f"--address={address}"))
        while time.monotonic() < deadline and alive_nodes(address) < 2:
            time.sleep(1)
        assert alive_nodes(address) == 2
        args = etl_only(config)
        on_cluster = run([*args, "--address", address], tmp_path)
        assert on_cluster.returncode == 0, on_cluster.stderr[-3000:]
        first = json.loads(embedded.stdout.strip().splitlines()[-1])
        second = json.loads(on_cluster.stdout.strip().splitlines()[-1])
        assert second["dataset_digest"] == first["dataset_digest"]
        tags = sqlite_tags(tmp_path / ".relay" / "mlflow.db", second["pipeline_run_id"])
        assert tags["relay.ray_embedded"] == "false"
        assert tags["relay.ray_address"].endswith(f":{port}")
        assert json.loads(tags["relay.cluster_resources"])["CPU"] == 2.0  # both nodes
    finally:
        stop(nodes)
        time.sleep(1)
        leftovers = {p for p in ray_dirs_in_use() if str(p).startswith(str(temp_dir))}
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not leftovers


def sqlite_tags(db: Path, run_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}").get_run(run_id).data.tags


def in_tuning(args: list[str], folder: Path, **popen) -> subprocess.Popen:
    """`relay run` in its own session, returned once a trial has written a checkpoint."""
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    driver = subprocess.Popen(args, cwd=folder, env=env, start_new_session=True, **popen)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        # any epoch's checkpoint: Tune keeps only the newest (num_to_keep=1), so the first one
        # can be gone before a poll sees it
        if list((folder / ".relay" / "tune").glob("*/*/checkpoint_*")):
            break
        time.sleep(0.1)
    assert driver.poll() is None, "the run ended before it could be interrupted"
    return driver


def test_ctrl_c_during_tuning_interrupts_the_run_and_registers_nothing(tmp_path):
    """Tune's own SIGINT handler would end the search early and let the pipeline register a
    model from it; relay turns it off, so Ctrl-C stops the run and says how to resume."""
    import signal

    from mlflow.tracking import MlflowClient

    config = write_config(
        tmp_path,
        tune={"num_samples": 2, "scheduler": "fifo"},
        train={"epochs": 6, "batch_size": 32},
    )
    args = [*RELAY, "run", str(config), "--until", "register"]
    output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    driver = in_tuning(args, tmp_path, preexec_fn=default_sigint, **output)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert f"relay run {config} --resume" in stderr
    progress = json.loads((tmp_path / ".relay" / "runs" / "credit-ci.json").read_text())
    assert not progress["finished"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.relay' / 'mlflow.db'}")
    assert client.search_model_versions("name='credit-default-ci'") == []


def test_resume_after_the_driver_is_killed_continues_the_same_runs(tmp_path, capsys):
    """SIGKILL the whole `relay run` process group mid-tune, then `relay run --resume`."""
    import signal
    import time

    from mlflow.tracking import MlflowClient

    config = write_config(
        tmp_path,
        data={"source": {"rows": 20000}},
        tune={"num_samples": 3, "scheduler": "fifo"},
        train={"epochs": 4, "batch_size": 64},
    )
    args = [*RELAY, "run", str(config), "--until", "register", "--json"]
    nothing = run([*args, "--resume"], tmp_path)
    assert nothing.returncode == 2 and "no interrupted run" in nothing.stderr

    driver = in_tuning(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree = descendants(driver.pid)  # its embedded Ray: nodes and workers, some in own sessions
    (own_ray,) = ray_dirs_in_use(tree)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    kill([*tree, *pids_mentioning(str(own_ray))])  # what outlived the driver, and only that
    interrupted = json.loads((tmp_path / ".relay" / "runs" / "credit-ci.json").read_text())
    assert not interrupted["finished"]

    began = time.monotonic()
    resumed = run([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with capsys.disabled():
        print(f"\nresume after a killed driver: done in {time.monotonic() - began:.1f} s")
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["pipeline_run_id"] == interrupted["pipeline_run_id"]
    assert summary["model_version"] == 1

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / '.relay' / 'mlflow.db'}")
    runs = client.search_runs([summary["experiment_id"]])
    stages = [r.data.tags.get("relay.stage") for r in runs]
    assert stages.count("pipeline") == 1 and stages.count("etl") == 1
    assert stages.count("tune") == 1 and stages.count("register") == 1
    assert stages.count("trial") == 3  # no trial was logged twice
    assert all(r.info.status == "FINISHED" for r in runs)
    pipeline_run = client.get_run(summary["pipeline_run_id"])
    assert pipeline_run.data.tags["relay.resumed"] == "true"
    assert len(client.search_model_versions("name='credit-default-ci'")) == 1
    again = run([*args, "--resume"], tmp_path)
    assert again.returncode == 2 and "nothing to resume" in again.stderr
