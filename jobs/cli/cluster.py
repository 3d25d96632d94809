"""`relay cluster up|status|down`: a local multi-node Ray cluster, started and stopped by PID."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.compute.serveflags import serve_flags
from cluster.configfile import load_config
from cluster.errors import ConfigError, RelayError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit, fields, plain
from jobs.console import err, fail

cluster_app = typer.Typer(
    help="A local multi-node Ray cluster (ray start, token auth), started and stopped by PID.",
    no_args_is_help=True,
)
StateOption = Annotated[str, typer.Option(help="Where the cluster's record and token live")]


@cluster_app.command("up")
def cluster_up(
    workers: Annotated[int, typer.Option(help="Worker nodes besides the head")] = 1,
    head_cpus: Annotated[int, typer.Option(help="CPUs the head offers to tasks")] = 1,
    cpus_per_worker: Annotated[int, typer.Option(help="CPUs of each worker node")] = 1,
    gpus_per_worker: Annotated[int, typer.Option(help="GPUs of each worker node")] = 0,
    memory_mb: Annotated[int, typer.Option(help="Memory each node offers to tasks")] = 2048,
    object_store_mb: Annotated[int, typer.Option(help="Object store of each node")] = 256,
    autoscale: Annotated[
        bool, typer.Option("--autoscale", help="Start no workers; Ray's autoscaler adds them")
    ] = False,
    max_workers: Annotated[int, typer.Option(help="Autoscaling: most worker nodes")] = 2,
    idle_timeout_s: Annotated[
        float, typer.Option(help="Autoscaling: idle seconds before a worker is removed")
    ] = 20.0,
    serve_config: Annotated[
        Path | None,
        typer.Option(help="Pipeline config whose serve.ingress/throughput flags Serve here uses"),
    ] = None,
    state_dir: StateOption = ".relay",
    as_json: JsonOption = False,
) -> None:
    """Start a head and worker nodes on this machine; print address, dashboard and token path.

    Example: relay cluster up --workers 2 --cpus-per-worker 1
    """
    from cluster.compute import localcluster as lc

    worker = lc.NodeShape(cpus_per_worker, gpus_per_worker, memory_mb, object_store_mb)
    try:
        flags = serve_flags(load_config(serve_config).serve) if serve_config else None
        record = lc.up(
            state_dir,
            workers=workers,
            head=lc.NodeShape(head_cpus, 0, memory_mb, object_store_mb),
            worker=worker,
            autoscale=autoscale,
            max_workers=max_workers,
            idle_timeout_s=idle_timeout_s,
            extra_env=flags,
        )
    except RelayError as exc:
        fail(exc)
    shown = {k: v for k, v in record.items() if k != "alive_nodes"}
    ready = {"ready": f"in {shown['ready_seconds']} s"} if "ready_seconds" in shown else {}
    emit(shown, as_json, lambda: fields(_where(shown) | ready))


def _where(record: dict[str, Any]) -> dict[str, Any]:
    """How to reach the cluster: what `up` and `status` both show first."""
    nodes = ", ".join(f"{n['name']} (pid {n['pid']}, {n['cpus']} CPU)" for n in record["nodes"])
    return {
        "address": record["address"],
        "dashboard": record["dashboard_url"],
        "token": record["token_path"],
        "nodes": nodes + (" + autoscaled workers" if record.get("autoscale") else ""),
    }


@cluster_app.command("status")
def cluster_status(state_dir: StateOption = ".relay", as_json: JsonOption = False) -> None:
    """Nodes, resources and running jobs of the cluster `relay cluster up` started."""
    from cluster.compute import localcluster as lc

    state = lc.status(state_dir)
    if state is None:
        fail(ConfigError(f"no running cluster recorded under {lc.folder(state_dir)}"))
    emit(state, as_json, lambda: fields(_status(state)))


def _status(state: dict[str, Any]) -> dict[str, Any]:
    alive = state["alive_nodes"]
    heads = sum(n["is_head"] for n in alive)
    jobs = [f"{j['submission_id']} {j['status']}" for j in state["jobs"]]
    return {
        **_where(state),
        "alive": f"{len(alive)} nodes ({heads} head, {len(alive) - heads} worker)",
        "resources": {k: _amount(k, v) for k, v in sorted(state["resources"].items())},
        "jobs": jobs or "none running",
    }


def _amount(name: str, value: float) -> str:
    """Ray counts memory in bytes: shown in GiB; CPUs and GPUs as the number they are."""
    if "memory" in name:
        return f"{value / 2**30:.1f} GiB"
    return f"{value:g}"


@cluster_app.command("down")
def cluster_down(state_dir: StateOption = ".relay", as_json: JsonOption = False) -> None:
    """Stop exactly the processes `relay cluster up` started (never `ray stop`); with none
    recorded, nothing to do (exit 0), as `docker compose down` behaves."""
    from cluster.compute import localcluster as lc

    if lc.recorded(state_dir) is None:
        err.print(f"no cluster recorded under {lc.folder(state_dir)}: nothing to stop")
        emit({"stopped": [], "forced": [], "killed_leftovers": []}, as_json, lambda: None)
        return
    try:
        stopped = lc.down(state_dir)
    except RelayError as exc:
        fail(exc)
    human = {
        "stopped": f"{len(stopped['stopped'])} nodes (pids {plain(stopped['stopped'])})",
        "forced": stopped["forced"] or "none (all stopped on SIGTERM)",
        "killed leftovers": stopped["killed_leftovers"] or "none",
    }
    emit(stopped, as_json, lambda: fields(human))
