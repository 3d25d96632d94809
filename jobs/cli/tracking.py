"""`relay tracking up|down|sync`: the MLflow server for jobs on a cluster, and the spool."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cluster.errors import RelayError
from jobs.console import err, fail

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
    print(json.dumps(record))
    if record.get("credentials"):
        err.print(f"clients: export {CREDENTIALS_ENV}={record['credentials']}", highlight=False)


@tracking_app.command("down")
def tracking_down(state_dir: StateOption = ".relay") -> None:
    """Stop the server `relay tracking up` started (by its recorded PID); with none recorded,
    nothing to do (exit 0)."""
    from cluster.tracking import server as trackingserver

    if not (trackingserver.folder(state_dir) / trackingserver.RECORD).exists():
        err.print(f"no tracking server recorded under {trackingserver.folder(state_dir)}: "
                  "nothing to stop")  # fmt: skip
        print(json.dumps({"stopped": None}))
        return
    try:
        print(json.dumps(trackingserver.down(state_dir)))
    except RelayError as exc:
        fail(exc)


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
    print(json.dumps(result))
