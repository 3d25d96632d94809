"""`relay ui`: the MLflow UI on this project's store, opened on the views relay's records use."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.configfile import load_config
from cluster.errors import ClusterUnreachableError, RelayError
from jobs.cli.lineage import TrackingOption
from jobs.cli.options import JsonOption
from jobs.cli.output import emit
from jobs.client import Relay
from jobs.console import err, fail, out


def ui(
    config: Annotated[
        Path | None, typer.Argument(help="Pipeline config: its store and experiment")
    ] = None,
    tracking_uri: TrackingOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; default a free one")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Open the MLflow UI on this project's store, with links that open the right views.

    A local store: starts `mlflow server` on 127.0.0.1 (a free port), prints links to the
    experiment (model-training view), the latest pipeline run and its model version, and
    stops the server on Ctrl-C or SIGTERM. A store behind a server: prints the links.

    Example: relay ui configs/demo.yaml
    """
    from cluster.compute.ports import free_port
    from cluster.processes import stop_groups
    from cluster.tracking import server

    try:
        relay = Relay(tracking_uri, config)
        uri, client = relay.tracking_uri, relay.client
        experiment = load_config(config).tracking.experiment if config else None
        if uri.startswith(("http://", "https://")):
            _show(uri, links(client, uri, experiment), None, as_json)
            return
        folder = Path(tempfile.mkdtemp(prefix="relay-ui-"))
        port = port or free_port()
        base = f"http://127.0.0.1:{port}"
        local = uri.startswith("sqlite:///")  # its artifacts beside it, as relay run keeps them
        artifacts = Path(uri.removeprefix("sqlite:///")).parent if local else folder
        artifacts /= "mlartifacts"
        command = server.server_command("127.0.0.1", port, uri, str(artifacts))
        process = server.start(command, folder / "server.log", {})
        try:
            server.wait_healthy(process, base, str(folder / "server.log"))
            _show(base, links(client, base, experiment), process.pid, as_json)
            if process.wait() != 0:
                raise ClusterUnreachableError(
                    f"mlflow server on {base} stopped on its own; see {folder / 'server.log'}"
                )
        except KeyboardInterrupt:
            err.print("stopping the MLflow UI")
        finally:
            stop_groups([process.pid])
        shutil.rmtree(folder, ignore_errors=True)  # its log: kept when the server failed
    except RelayError as exc:
        fail(exc)


def links(client: Any, base: str, experiment: str | None) -> dict[str, str]:
    """The experiment (the config's, else the latest pipeline run's), that run, its version."""
    from cluster.tracking.links import ui_links
    from cluster.tracking.tracker import STAGE_TAG

    chosen = client.get_experiment_by_name(experiment) if experiment else None
    if experiment and chosen is None:
        raise ClusterUnreachableError(f"no experiment {experiment!r} in {base}: run it first")
    ids = (
        [chosen.experiment_id] if chosen else [e.experiment_id for e in client.search_experiments()]
    )
    latest = client.search_runs(
        ids,
        filter_string=f"tags.`{STAGE_TAG}` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not latest:
        return ui_links(base, ids[0]) if ids else {"home": base}
    run = latest[0]
    version = run.data.tags.get("relay.model_version") or None
    model = run.data.params.get("model_name")
    return ui_links(base, run.info.experiment_id, run.info.run_id, model, version)


def _show(base: str, found: dict[str, str], pid: int | None, as_json: bool) -> None:
    def human() -> None:
        out.print(f"MLflow UI at {base}" + ("  (Ctrl-C stops it)" if pid else ""))
        for name, link in found.items():
            out.print(f"  {name.replace('_', ' '):<14} {link}")

    emit({"url": base, "links": found, "pid": pid}, as_json, human)
