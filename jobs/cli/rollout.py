"""`relay rollout start|promote|rollback|auto`: champion/challenger on a running endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.configfile import load_config
from cluster.errors import RelayError
from jobs.cli.options import ConfigArg, JsonOption
from jobs.cli.output import emit, fields
from jobs.console import fail

rollout_app = typer.Typer(
    help="Champion/challenger rollout on a running endpoint (aliases, then an in-place swap).",
    no_args_is_help=True,
)
AddressOption = Annotated[
    str | None, typer.Option(help="Address of the Ray cluster serving the endpoint")
]


@rollout_app.command("start")
def rollout_start(
    config: ConfigArg,
    version: Annotated[int, typer.Option(help="Registered version to try as the challenger")],
    address: AddressOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send serve.challenger_share of the requests to VERSION.

    Example: relay rollout start configs/demo.yaml --version 3 --address ray://head:10001
    """
    from jobs.deploy import rollout

    _rollout(lambda cfg: rollout.start(cfg, version, address), config, as_json, _moved)


@rollout_app.command("promote")
def rollout_promote(
    config: ConfigArg, address: AddressOption = None, as_json: JsonOption = False
) -> None:
    """Make the challenger the champion (the old champion keeps the alias 'previous')."""
    from jobs.deploy import rollout

    _rollout(lambda cfg: rollout.promote(cfg, address), config, as_json, _moved)


@rollout_app.command("rollback")
def rollout_rollback(
    config: ConfigArg, address: AddressOption = None, as_json: JsonOption = False
) -> None:
    """Send every request back to the champion."""
    from jobs.deploy import rollout

    _rollout(lambda cfg: rollout.rollback(cfg, address), config, as_json, _moved)


@rollout_app.command("auto")
def rollout_auto(
    config: ConfigArg,
    address: AddressOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="The window judged: 30m, 24h, ... back from now, or from an ISO-8601 instant "
            "(default monitor.since)"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run relay monitor, then promote the challenger if it beats the champion on live
    feedback by serve.rollout.margin and passes every monitor check, roll it back if it fails
    one (or is worse), else hold. Each decision is a 'rollout' MLflow run.

    Example: relay rollout auto configs/demo.yaml --address ray://head:10001 --since 6h
    """
    from jobs.pipeline import autorollout

    def decided(cfg: Any) -> dict[str, Any]:
        summary = autorollout.auto(cfg, address, since)
        keys = ("run_id", "predictions_logged", "alerts", "rollout", "rollout_decision")
        return {"monitor_run_id" if k == "run_id" else k: summary[k] for k in keys}

    _rollout(decided, config, as_json, _decided)


def _rollout(
    action: Callable[[Any], dict[str, Any]],
    config: Path,
    as_json: bool,
    human: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    try:
        result = action(load_config(config))
    except RelayError as exc:
        fail(exc)
    emit(result, as_json, lambda: fields(human(result)))


def _moved(done: dict[str, Any]) -> dict[str, Any]:
    """What serves now, after a start, promote or rollback."""
    challenger = done.get("challenger_version")
    share = done.get("challenger_share")
    return {
        "action": done["action"],
        "champion": f"version {done['model_version']}",
        "challenger": (
            f"version {challenger}" + (f" ({share:.0%} of requests)" if share else "")
            if challenger
            else None
        ),
        "rollout run": done["rollout_run_id"],
    }


def _decided(summary: dict[str, Any]) -> dict[str, Any]:
    """The decision and why, the monitor run it judged, and what it moved."""
    done = summary["rollout_decision"]
    shown = {
        "decision": f"{done['decision']} ({done['reason']})",
        "monitor run": f"{summary['monitor_run_id']}: {summary['predictions_logged']} "
        f"predictions, {len(summary['alerts'])} alerts",
        "rollout run": done.get("run_id"),
    }
    if "action" in done:
        moved = _moved(done["action"])
        shown |= {"champion": moved["champion"], "challenger": moved["challenger"]}
    return shown
