"""The `relay` command line: the app and its command groups, one module each.

Exit codes: 0 ok, 1 unexpected error, 2 invalid config or argument, 3 data quality, 4 gate failed
(registered as 'rejected', not promoted), 5 Ray or tracking unreachable, 6 serving failed,
7 not reproduced, 8 submitted job failed, 9 a monitor check failed (relay monitor), 10 every
trial failed, 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from cluster.errors import RelayError
from jobs.cli import (
    cluster,
    data,
    init,
    k8s,
    lineage,
    monitor,
    predict,
    rollout,
    run,
    submit,
    tracking,
    ui,
)
from jobs.console import fail, out

app = typer.Typer(
    help="relay: one config, one CLI, one lineage trail, from raw data to a served model.\n\n"
    "Example: relay run configs/demo.yaml --json",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits it
    pretty_exceptions_enable=False,
)


def _version(shown: bool) -> None:
    if shown:
        out.print(f"relay {metadata.version('relay')}")
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print relay's version and exit"
        ),
    ] = False,
) -> None:
    """Quiet defaults (progress bars off) for this process and the Ray workers it starts."""
    from cluster.compute.runtime import quiet_environment

    try:
        quiet_environment()
    except RelayError as exc:
        fail(exc)


app.command()(init.init)
app.command()(run.run)
app.command()(run.validate)
app.command()(predict.predict)
app.command()(monitor.monitor)
app.command()(monitor.feedback)
app.command()(lineage.lineage)
app.command()(lineage.reproduce)
app.command()(lineage.runs)
app.command()(ui.ui)
app.add_typer(tracking.tracking_app, name="tracking")
app.add_typer(cluster.cluster_app, name="cluster")
app.add_typer(submit.jobs_app, name="jobs")
app.command("submit")(submit.submit)
app.add_typer(k8s.k8s_app, name="k8s")
app.add_typer(rollout.rollout_app, name="rollout")
app.add_typer(data.data_app, name="data")


def main() -> None:
    from cluster import interrupts

    interrupts.install()  # Kubernetes, systemd and Docker stop a command as Ctrl-C would
    app(prog_name="relay")
