"""`relay monitor`: what the endpoint answered, judged against the served versions' training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.config import RelayConfig
from cluster.configfile import load_config, parse_overrides
from cluster.errors import GateFailedError, MonitorAlertError, RelayError
from jobs.cli.options import ConfigArg, JsonOption, SetOption
from jobs.cli.output import emit
from jobs.console import fail, out


def monitor(
    config: ConfigArg,
    since: Annotated[
        str | None,
        typer.Option(
            help="The window: 30m, 24h, 7d, ... back from now, or from an ISO-8601 instant "
            "(default monitor.since)"
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(help="Only this model version")] = None,
    as_json: JsonOption = False,
    set_: SetOption = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="On a drift alert, run the pipeline up to register (the gates decide "
            "promotion); the run records the monitor run that triggered it",
        ),
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster the retraining runs on (default: embedded), and that serves the "
            "endpoint serve.rollout.auto promotes or rolls back on"
        ),
    ] = None,
) -> None:
    """Volume, latency, input and answer drift and empty inputs per served version, from the
    inference log; records a 'monitor' MLflow run. Exit code 9 when a monitor: threshold
    fails, so cron, CI or a Kubernetes CronJob can act on it.

    Example: relay monitor configs/demo.yaml --since 1h
    """
    from jobs.monitor import stage

    try:
        cfg = load_config(config, parse_overrides(set_ or []))
        summary = stage.run(cfg, since, version)
        if cfg.serve.rollout.auto and version is None:
            from jobs.pipeline import autorollout

            summary["rollout_decision"] = autorollout.act(cfg, summary, address)
        if retrain and any(a["gate"].endswith(".drift") for a in summary["alerts"]):
            summary["retrained"] = retrained(cfg, summary["run_id"], address)
    except RelayError as exc:
        fail(exc)
    emit(summary, as_json, lambda: _print_report(summary))
    if summary["alerts"]:
        alert = MonitorAlertError(f"{len(summary['alerts'])} monitor check(s) failed", summary)
        raise typer.Exit(alert.exit_code)


def _print_report(summary: dict[str, Any]) -> None:
    from jobs.monitor import stage

    out.print(stage.text(summary), highlight=False)
    if "retrained" in summary:
        done = summary["retrained"]
        verdict = "promoted" if done["promoted"] else "not promoted (the gates said no)"
        out.print(
            f"retrained: pipeline run {done['pipeline_run_id']}, version "
            f"{done['model_version']} {verdict}",
            highlight=False,
        )
    if "rollout_decision" in summary:
        done = summary["rollout_decision"]
        out.print(
            f"rollout: {done['decision']} ({done['reason']}); run {done['run_id']}",
            highlight=False,
        )


def retrained(cfg: RelayConfig, monitor_run: str, address: str | None) -> dict[str, Any]:
    """The pipeline run up to register, tagged with the monitor run that asked for it."""
    from jobs.pipeline import runner

    tags = {"relay.triggered_by_monitor_run": monitor_run}
    try:
        summary = runner.run(cfg, address=address, until="register", tags=tags)
    except GateFailedError as exc:  # registered, not promoted: the champion keeps serving
        summary = exc.summary
    return {k: summary.get(k) for k in ("pipeline_run_id", "model_version", "promoted")}


def feedback(
    config: ConfigArg,
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            help="CSV or Parquet: request_id, the label column, and record for batch records",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Outcomes of logged predictions, joined by request id; relay monitor then reports live
    metrics. Rows that match no prediction or whose label is invalid are quarantined with
    their reason; over etl.max_reject_rate of them, exit code 3.

    Example: relay feedback configs/demo.yaml --input outcomes.csv
    """
    from jobs.monitor import feedback as outcomes

    try:
        summary = outcomes.run(load_config(config), input_file)
    except RelayError as exc:
        fail(exc)
    reasons = "; ".join(f"{n} {why}" for why, n in summary["reasons"].items())
    text = (
        f"{summary['accepted']} of {summary['rows']} outcomes kept, "
        f"{summary['quarantined']} quarantined{': ' + reasons if reasons else ''}"
    )
    emit(summary, as_json, lambda: out.print(text, highlight=False))
