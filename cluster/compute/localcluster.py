"""`relay cluster up|status|down`: a real multi-node Ray cluster on this machine, with `ray start`.

Every node gets explicit CPUs, memory and object store (otherwise each claims most of the
machine), its own short temp dir (Unix socket paths are limited to ~107 bytes) and its own
ports; the dashboard binds to 127.0.0.1 and token auth is on, with a token generated into the
state dir (0600). Nodes run under `ray start --block` in their own process groups, so `down`
stops exactly those groups (and anything else naming this cluster's GCS address or temp dirs),
never `ray stop`, which kills every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.compute.ports import free_port
from cluster.compute.serveflags import HAPROXY_FLAG, haproxy_env
from cluster.errors import ClusterUnreachableError, ConfigError
from cluster.processes import group_alive, kill, pids_mentioning, stop_groups
from cluster.secrets import ensure_secret_file

RECORD = "cluster.json"
HOST = "127.0.0.1"
MIB = 1024 * 1024


@dataclass(frozen=True)
class NodeShape:
    """Resources one node declares to Ray (what it may schedule, not a hard limit)."""

    cpus: int
    gpus: int = 0
    memory_mb: int = 2048
    object_store_mb: int = 256


def folder(state_dir: str) -> Path:
    return Path(state_dir).resolve() / "cluster"


def token_path(state_dir: str) -> Path:
    return folder(state_dir) / "auth_token"


def up(
    state_dir: str,
    *,
    workers: int = 1,
    head: NodeShape | None = None,
    worker: NodeShape | None = None,
    autoscale: bool = False,
    max_workers: int = 2,
    idle_timeout_s: float = 20.0,
    timeout_s: float = 90.0,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start a head and `workers` worker nodes (or an autoscaling head); wait until all join.

    `extra_env` reaches every Ray process (e.g. Serve's ingress flags, read once at start).
    """
    head = head or NodeShape(cpus=1)
    worker = worker or NodeShape(cpus=1)
    if workers < 0 or max_workers < 1:
        raise ConfigError("--workers must be >= 0 and --max-workers >= 1")
    root = folder(state_dir)
    running = status(state_dir)
    if running:
        return running
    root.mkdir(parents=True, exist_ok=True)
    token = ensure_secret_file(token_path(state_dir))
    began = time.monotonic()
    ports = {"gcs": free_port(HOST), "dashboard": free_port(HOST), "client": free_port(HOST)}
    gcs = f"{HOST}:{ports['gcs']}"
    record: dict[str, Any] = {
        "address": gcs,
        "dashboard_url": f"http://{HOST}:{ports['dashboard']}",
        "token_path": str(token),
        "autoscale": autoscale,
        "nodes": [],
    }
    env = {**_node_env(token), **(extra_env or {})}
    head_args = [
        "--head",
        f"--port={ports['gcs']}",
        "--include-dashboard=true",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client']}",
    ]
    if autoscale:
        head_env = {**env, "RAY_FAKE_CLUSTER": "1"}
        scaler = root / "autoscaling.json"
        scaler.write_text(
            json.dumps(autoscaling_config(gcs, head, worker, max_workers, idle_timeout_s))
        )
        head_args.append(f"--autoscaling-config={scaler}")
    else:
        head_env = env
    try:
        record["nodes"].append(_start_node(root, "head", head, head_args, head_env))
        _write(root, record)
        _wait_for_nodes(record, 1, deadline=began + timeout_s)
        for i in range(0 if autoscale else workers):
            node = _start_node(root, f"worker-{i + 1}", worker, [f"--address={gcs}"], env)
            record["nodes"].append(node)
            _write(root, record)
        _wait_for_nodes(record, 1 + (0 if autoscale else workers), deadline=began + timeout_s)
    except BaseException:
        down(state_dir)
        raise
    record["ready_seconds"] = round(time.monotonic() - began, 2)
    _write(root, record)
    return record


def autoscaling_config(
    gcs: str, head: NodeShape, worker: NodeShape, max_workers: int, idle_timeout_s: float
) -> dict[str, Any]:
    """Ray's own (v1) autoscaler over the fake multi-node provider: worker nodes are real
    raylets on this machine, started and stopped by the autoscaler as demand comes and goes.
    """

    def resources(shape: NodeShape) -> dict[str, Any]:
        out: dict[str, Any] = {
            "CPU": shape.cpus,
            "object_store_memory": shape.object_store_mb * MIB,
        }
        if shape.gpus:
            out["GPU"] = shape.gpus
        return out

    return {
        "cluster_name": "relay-local",
        "max_workers": max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": resources(head), "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {
                "resources": resources(worker),
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "auth": {"ssh_user": "relay"},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def recorded(state_dir: str) -> dict[str, Any] | None:
    path = folder(state_dir) / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def status(state_dir: str) -> dict[str, Any] | None:
    """The recorded cluster with its live nodes and jobs, or None when it is not running."""
    record = recorded(state_dir)
    if not record or not record["nodes"] or not group_alive(record["nodes"][0]["pgid"]):
        return None
    try:
        nodes = alive_nodes(record)
    except ClusterUnreachableError:
        return None
    token = Path(record["token_path"]).read_text().strip()
    jobs = _get(f"{record['dashboard_url']}/api/jobs/", token)
    return {
        **record,
        "alive_nodes": nodes,
        "resources": _total(nodes),
        "jobs": [
            {k: j.get(k) for k in ("submission_id", "status", "entrypoint")}
            for j in jobs
            if j.get("status") in ("PENDING", "RUNNING")
        ],
    }


def alive_nodes(record: dict[str, Any]) -> list[dict[str, Any]]:
    token = Path(record["token_path"]).read_text().strip()
    body = _get(f"{record['dashboard_url']}/api/v0/nodes?limit=1000&detail=true", token)
    rows = body["data"]["result"]["result"]
    return [
        {
            "node_id": n["node_id"],
            "is_head": n.get("is_head_node", False),
            "resources": n.get("resources_total", {}),
        }
        for n in rows
        if n.get("state") == "ALIVE"
    ]


def down(state_dir: str, grace: float = 10.0) -> dict[str, Any]:
    """Stop every process this cluster started; remove its temp dirs."""
    record = recorded(state_dir)
    if record is None:
        raise ConfigError(f"no cluster recorded under {folder(state_dir)}")
    forced = stop_groups([n["pgid"] for n in record["nodes"]], grace=grace, leaders_first=True)
    markers = [record["address"], *(n["temp_dir"] for n in record["nodes"])]
    leftovers = sorted({pid for m in markers for pid in pids_mentioning(m)})
    kill(leftovers)
    for node in record["nodes"]:
        shutil.rmtree(node["temp_dir"], ignore_errors=True)
    (folder(state_dir) / RECORD).unlink(missing_ok=True)
    return {
        "stopped": [n["pid"] for n in record["nodes"]],
        "forced": forced,  # nodes still there `grace` seconds after SIGTERM: SIGKILLed
        "killed_leftovers": leftovers,
    }


def _start_node(
    root: Path, name: str, shape: NodeShape, extra: list[str], env: dict[str, str]
) -> dict[str, Any]:
    temp_dir = tempfile.mkdtemp(prefix="relay-c-")  # short: socket paths live under it
    ray = Path(sys.executable).parent / "ray"
    command = [
        str(ray),
        "start",
        "--block",
        *extra,
        f"--node-ip-address={HOST}",
        f"--num-cpus={shape.cpus}",
        f"--num-gpus={shape.gpus}",
        f"--memory={shape.memory_mb * MIB}",
        f"--object-store-memory={shape.object_store_mb * MIB}",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={free_port(HOST)}",
        f"--metrics-export-port={free_port(HOST)}",
        f"--runtime-env-agent-port={free_port(HOST)}",
        "--disable-usage-stats",
    ]
    if env.get(HAPROXY_FLAG) == "1":  # nodes of one machine: each HAProxy its own ports, files
        env = {**env, **haproxy_env(temp_dir, worker=name != "head")}
    log = root / f"{name}.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**env, "RAY_TMPDIR": temp_dir},
            start_new_session=True,
        )
    return {
        "name": name,
        "pid": process.pid,
        "pgid": process.pid,
        "temp_dir": temp_dir,
        "log": str(log),
        "cpus": shape.cpus,
        "gpus": shape.gpus,
    }


def _node_env(token: Path) -> dict[str, str]:
    """Token auth on for every process of the cluster; this interpreter's `python` first on
    PATH, so job entrypoints run with relay's environment."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _wait_for_nodes(record: dict[str, Any], count: int, deadline: float) -> None:
    while True:
        for node in record["nodes"]:
            if not group_alive(node["pgid"]):
                raise ClusterUnreachableError(
                    f"ray node '{node['name']}' exited during start; see {node['log']}"
                )
        try:
            if len(alive_nodes(record)) >= count:
                return
        except ClusterUnreachableError:
            pass
        if time.monotonic() > deadline:
            raise ClusterUnreachableError(
                f"only some of {count} ray nodes joined in time; see the logs in "
                f"{Path(record['nodes'][0]['log']).parent}"
            )
        time.sleep(0.5)


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise ClusterUnreachableError(f"Ray dashboard {url} did not answer: {exc}") from None


def _total(nodes: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for node in nodes:
        for key, value in node["resources"].items():
            if key in ("CPU", "GPU", "memory", "object_store_memory"):
                total[key] = total.get(key, 0.0) + float(value)
    return total


def _write(root: Path, record: dict[str, Any]) -> None:
    (root / RECORD).write_text(json.dumps(record, indent=2))
