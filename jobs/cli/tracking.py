"""`relay tracking up|down|sync`: the MLflow server for jobs on a cluster, and the spool."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cluster.errors import RelayError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit, fields
from jobs.console import err, fail, out

tracking_app = typer.Typer(
    help="An MLflow tracking server on loopback, for jobs on a Ray cluster.", no_args_is_help=True
)
StateOption = Annotated[str, typer.Option(help="Where the server keeps its store and PID")]


@tracking_app.command("up")
def tracking_up(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 5000,
    state_dir: StateOption = ".relay",
    backend_store_uri: Annotated[
        str | None, typer.Option(help="Database URI (e.g. postgresql://...); default sqlite")
    ] = None,
    basic_auth: Annotated[
        bool,
        typer.Option(
            "--basic-auth",
            help="Require a user and password (an admin one is generated; others get nothing)",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start it (one worker, lean) and print its URI: use it as tracking.uri.

    Example: relay tracking up --port 5000 --basic-auth
    """
    from cluster.tracking import server as trackingserver
    from cluster.tracking.tracker import CREDENTIALS_ENV

    try:
        record = trackingserver.up(
            state_dir, port, backend=backend_store_uri, basic_auth=basic_auth
        )
    except RelayError as exc:
        fail(exc)
    emit(record, as_json, lambda: fields(_server(record)))
    if record.get("credentials"):
        err.print(f"clients: export {CREDENTIALS_ENV}={record['credentials']}", highlight=False)


@tracking_app.command("down")
def tracking_down(state_dir: StateOption = ".relay", as_json: JsonOption = False) -> None:
    """Stop the server `relay tracking up` started (by its recorded PID); with none recorded,
    nothing to do (exit 0)."""
    from cluster.tracking import server as trackingserver

    if not (trackingserver.folder(state_dir) / trackingserver.RECORD).exists():
        err.print(f"no tracking server recorded under {trackingserver.folder(state_dir)}: "
                  "nothing to stop")  # fmt: skip
        emit({"stopped": None}, as_json, lambda: None)
        return
    try:
        record = trackingserver.down(state_dir)
    except RelayError as exc:
        fail(exc)
    text = f"stopped the tracking server at {record['uri']} (pid {record['pid']})"
    emit(record, as_json, lambda: out.print(text, highlight=False))


def _server(record: dict[str, Any]) -> dict[str, Any]:
    """The URI first: it is what a config's tracking.uri takes."""
    keys = {"tracking uri": "uri", "pid": "pid", "auth": "auth", "log": "log"}
    shown = {label: record.get(key, "none") for label, key in keys.items()}
    if record.get("credentials"):
        shown["credentials"] = record["credentials"]
    return shown


@tracking_app.command("sync")
def tracking_sync(
    state_dir: Annotated[
        str, typer.Option(help="The run's state dir: its tracking-spool folder is replayed")
    ] = ".relay",
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="Send to this server instead of the one each journal was meant for"),
    ] = None,
    retry_seconds: Annotated[
        float, typer.Option(help="How long to wait for a server that does not answer")
    ] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Upload what a run spooled while the tracking server was down, then delete the spool.

    Same run ids, timestamps and steps; safe to run again after an interruption.
    Example: relay tracking sync --state-dir .relay --tracking-uri http://127.0.0.1:5000
    """
    from cluster.tracking import spool

    try:
        result = spool.sync(spool.spool_root(state_dir), tracking_uri, retry_seconds)
    except RelayError as exc:
        fail(exc)
    text = (
        f"replayed {result['records']} records from {result['journals']} journals "
        f"in {result['seconds']} s"
    )
    emit(result, as_json, lambda: out.print(text, highlight=False))
