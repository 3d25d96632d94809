"""`relay cluster up|status|down`: a local multi-node Ray cluster, started and stopped by PID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cluster.compute.serveflags import serve_flags
from cluster.configfile import load_config
from cluster.errors import ConfigError, RelayError
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
    print(json.dumps({k: v for k, v in record.items() if k != "alive_nodes"}))


@cluster_app.command("status")
def cluster_status(state_dir: StateOption = ".relay") -> None:
    """Nodes, resources and running jobs of the cluster `relay cluster up` started."""
    from cluster.compute import localcluster as lc

    state = lc.status(state_dir)
    if state is None:
        fail(ConfigError(f"no running cluster recorded under {lc.folder(state_dir)}"))
    print(json.dumps(state))


@cluster_app.command("down")
def cluster_down(state_dir: StateOption = ".relay") -> None:
    """Stop exactly the processes `relay cluster up` started (never `ray stop`); with none
    recorded, nothing to do (exit 0), as `docker compose down` behaves."""
    from cluster.compute import localcluster as lc

    if lc.recorded(state_dir) is None:
        err.print(f"no cluster recorded under {lc.folder(state_dir)}: nothing to stop")
        print(json.dumps({"stopped": [], "forced": [], "killed_leftovers": []}))
        return
    try:
        print(json.dumps(lc.down(state_dir)))
    except RelayError as exc:
        fail(exc)
