"""`relay submit` and `relay jobs list|logs|stop`: pipelines as jobs, through the Jobs API."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.config import Stage
from cluster.configfile import parse_overrides
from cluster.errors import ConfigError, RelayError
from jobs.cli.cluster import StateOption
from jobs.cli.options import JsonOption, SetOption, StageOption
from jobs.cli.output import emit, fields
from jobs.console import err, fail, out

jobs_app = typer.Typer(help="Jobs on a Ray cluster, through the Jobs API.", no_args_is_help=True)
AddressOption = Annotated[
    str | None,
    typer.Option(help="Jobs API URL (http://<head>:8265); default: the `relay cluster up` one"),
]
TokenOption = Annotated[
    Path | None,
    typer.Option(help="File holding the cluster's token; default $RAY_AUTH_TOKEN(_PATH)"),
]


def submit(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML config inside the project")],
    address: AddressOption = None,
    token_file: TokenOption = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow server the job logs to; default the `relay tracking up` one"),
    ] = None,
    until: StageOption = Stage.deploy,
    project: Annotated[
        Path, typer.Option(help="Uploaded as the job's working dir (state/data/venv excluded)")
    ] = Path("."),
    set_: SetOption = None,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Return the job id without waiting")
    ] = False,
    state_dir: StateOption = ".relay",
    as_json: JsonOption = False,
) -> None:
    """Run the pipeline as a Ray job: upload the project, follow the logs, exit with its status.

    Exit code 0 when the job succeeded, 8 when it failed or was stopped, 5 when the cluster
    refused the token or did not answer. By hand: ray job submit --working-dir . --
    python -m jobs.pipeline --config configs/ci.yaml

    Example: relay submit configs/ci.yaml
    """
    from cluster.compute import localcluster
    from cluster.compute import submit as jobs
    from cluster.tracking import server as trackingserver
    from cluster.tracking.tracker import CREDENTIALS_ENV

    try:
        target = jobs.Target.resolve(address, state_dir, token_file)
        uri = tracking_uri or (trackingserver.status(state_dir) or {}).get("uri")
        if not uri:
            raise ConfigError(
                "jobs on a cluster log to MLflow over HTTP: start a server with "
                "`relay tracking up` or pass --tracking-uri http://<host>:<port>"
            )
        overrides = parse_overrides(set_ or [], typed=False)  # typed by the job's loader
        record = localcluster.recorded(state_dir)
        if record and record["dashboard_url"] == target.url:
            # Same machine: outputs land in this project's state dir, not the job's copy.
            overrides["runtime.state_dir"] = str(Path(state_dir).resolve())
        server = trackingserver.status(state_dir) or {}
        credentials = os.environ.get(CREDENTIALS_ENV) or (
            server.get("credentials") if server.get("uri") == uri else None
        )
        job_id = jobs.submit(
            target,
            config,
            project=project,
            tracking_uri=uri,
            until=until.value,
            overrides=overrides,
            credentials_file=credentials,
        )
        err.print(f"submitted {job_id} to {target.url}", highlight=False)
        if no_follow:
            pending = {"submission_id": job_id, "status": "PENDING"}
            emit(pending, as_json, lambda: fields(pending))
            return
        logs = _Logs()
        with err.status("starting") as line:
            result = jobs.follow(
                target,
                job_id,
                on_logs=logs.write,
                on_status=lambda s, t: line.update(f"job {job_id}: {s} ({t:.0f} s)"),
            )
        logs.end_line()
        emit(result, as_json, lambda: fields(_job(result)))
        jobs.check_finished(result)
    except RelayError as exc:
        fail(exc)


@jobs_app.command("list")
def jobs_list(
    address: AddressOption = None,
    token_file: TokenOption = None,
    state_dir: StateOption = ".relay",
    as_json: JsonOption = False,
) -> None:
    """Jobs on the cluster, newest first (--json: {"jobs": [...]})."""
    from cluster.compute import submit as jobs

    rows = _call(address, token_file, state_dir, lambda c: c.list_jobs())
    infos = sorted((jobs.describe(i) for i in rows), key=lambda r: -(r["start_time"] or 0))

    def rows() -> None:
        for info in infos:
            out.print(f"{info['submission_id']}  {info['status']:<9}  {info['entrypoint']}")

    emit({"jobs": infos}, as_json, rows)


@jobs_app.command("logs")
def jobs_logs(
    job_id: str,
    address: AddressOption = None,
    token_file: TokenOption = None,
    state_dir: StateOption = ".relay",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the logs until the job ends")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The job's driver output so far; with --follow, streamed until the job ends (its final
    status then goes to stderr; with --json, its status record follows on the last line)."""
    if not follow:
        logs = _call(address, token_file, state_dir, lambda c: c.get_job_logs(job_id))
        emit({"submission_id": job_id, "logs": logs}, as_json, lambda: _Logs().write(logs))
        return
    from cluster.compute import submit as jobs

    try:
        target = jobs.Target.resolve(address, state_dir, token_file)
        streamed = _Logs()
        result = jobs.follow(target, job_id, on_logs=streamed.write, on_status=lambda s, t: None)
    except RelayError as exc:
        fail(exc)
    streamed.end_line()
    err.print(f"job {job_id} {result['status']}", highlight=False)
    emit(result, as_json, lambda: None)


@jobs_app.command("status")
def jobs_status(
    job_id: str,
    address: AddressOption = None,
    token_file: TokenOption = None,
    state_dir: StateOption = ".relay",
    as_json: JsonOption = False,
) -> None:
    """The job's status, entrypoint, message, driver exit code and times."""
    from cluster.compute import submit as jobs

    info = jobs.describe(_call(address, token_file, state_dir, lambda c: c.get_job_info(job_id)))
    emit(info, as_json, lambda: fields(_job(info)))


def _job(info: dict[str, Any]) -> dict[str, Any]:
    """A job record for a person: Ray's millisecond epoch times as local date and time."""
    shown = {k.replace("_", " "): v for k, v in info.items() if not k.endswith("_time")}
    for key in ("start_time", "end_time"):
        stamp = info.get(key)
        shown[key.removesuffix("_time")] = (
            datetime.fromtimestamp(stamp / 1000).isoformat(sep=" ", timespec="seconds")
            if stamp
            else None
        )
    return shown


class _Logs:
    """A job's streamed output on stdout, ended with a newline before what follows it, so a
    summary (the --json line) is a line of its own even when the job's last print was not."""

    def __init__(self) -> None:
        self.ended = True

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.ended = text.endswith("\n")

    def end_line(self) -> None:
        if not self.ended:
            self.write("\n")


@jobs_app.command("stop")
def jobs_stop(
    job_id: str,
    address: AddressOption = None,
    token_file: TokenOption = None,
    state_dir: StateOption = ".relay",
    as_json: JsonOption = False,
) -> None:
    """Ask the cluster to stop the job (SIGTERM, then SIGKILL after Ray's grace period)."""
    stopped = bool(_call(address, token_file, state_dir, lambda c: c.stop_job(job_id)))
    text = f"{job_id}: " + ("stop requested" if stopped else "not running, nothing to stop")
    emit(
        {"submission_id": job_id, "stop_requested": stopped},
        as_json,
        lambda: out.print(text, highlight=False),
    )


def _call(address: str | None, token_file: Path | None, state_dir: str, action: Any) -> Any:
    from cluster.compute import submit as jobs

    try:
        target = jobs.Target.resolve(address, state_dir, token_file)
        client = target.client()
        try:
            return action(client)
        except RuntimeError as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
    except RelayError as exc:
        fail(exc)
