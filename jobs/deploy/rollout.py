"""Champion/challenger rollout on a running endpoint: start, promote, roll back.

The registry's aliases are the state: `serve.challenger_alias` marks the version that answers
`serve.challenger_share` of the requests. Each action moves aliases, then redeploys the app so
the replicas swap in place, waits until the endpoint reports the new versions, and records an
MLflow run (stage `rollout`).
"""

from __future__ import annotations

from typing import Any

from cluster.compute.runtime import ray_session, resolve_address
from cluster.config import RelayConfig
from cluster.errors import ServingError
from cluster.tracking.registry import PREVIOUS, aliased, resolve
from cluster.tracking.tracker import Tracker
from jobs.deploy.probe import served_challenger, wait_for_version
from serving.client import get_json
from serving.launch import serve_app


def start(cfg: RelayConfig, version: int, address: str | None = None) -> dict[str, Any]:
    """Route `serve.challenger_share` of the traffic to `version`."""

    def move(tracker: Tracker) -> None:
        tracker.client.set_registered_model_alias(
            cfg.model.name, cfg.serve.challenger_alias, str(version)
        )

    return _act(cfg, "start", move, address)


def promote(
    cfg: RelayConfig,
    address: str | None = None,
    tags: dict[str, str] | None = None,
    expected: int | None = None,
) -> dict[str, Any]:
    """The challenger becomes the champion; the old champion keeps the `previous` alias.
    `expected`: the challenger version a decision judged (refused if the alias moved since)."""

    def move(tracker: Tracker) -> None:
        client, name = tracker.client, cfg.model.name
        challenger = aliased(client, name, cfg.serve.challenger_alias)
        if challenger is None:
            raise ServingError(
                f"no version of {name} has the alias {cfg.serve.challenger_alias!r}: "
                "start a rollout first (relay rollout start)"
            )
        _still(challenger.version, expected, cfg)
        champion = resolve(client, name, cfg.serve.alias)
        client.set_registered_model_alias(name, PREVIOUS, str(champion.version))
        client.set_registered_model_alias(name, cfg.serve.alias, str(challenger.version))
        client.delete_registered_model_alias(name, cfg.serve.challenger_alias)

    return _act(cfg, "promote", move, address, tags)


def rollback(
    cfg: RelayConfig,
    address: str | None = None,
    tags: dict[str, str] | None = None,
    expected: int | None = None,
) -> dict[str, Any]:
    """All traffic back to the champion; the challenger alias is removed (`expected`: as for
    `promote`)."""

    def move(tracker: Tracker) -> None:
        if found := aliased(tracker.client, cfg.model.name, cfg.serve.challenger_alias):
            _still(found.version, expected, cfg)
            tracker.client.delete_registered_model_alias(cfg.model.name, cfg.serve.challenger_alias)

    return _act(cfg, "rollback", move, address, tags)


def _still(version: int, expected: int | None, cfg: RelayConfig) -> None:
    """A decision acts on the version it judged, not on whatever holds the alias now."""
    if expected is not None and version != expected:
        raise ServingError(
            f"the alias {cfg.serve.challenger_alias!r} moved to version {version} after the "
            f"monitor judged version {expected}: nothing changed; run relay rollout auto again"
        )


def _act(
    cfg: RelayConfig,
    action: str,
    move: Any,
    address: str | None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Move the aliases, swap the endpoint, record a `rollout` run (with `tags` besides).

    With no Ray address and replicas that follow the aliases (`serve.poll_alias_seconds`: a
    RayService, whose Serve config its operator owns), moving the aliases is the whole act."""
    tracker = Tracker.from_config(cfg)
    if resolve_address(cfg.runtime, address) is None and cfg.serve.poll_alias_seconds:
        with tracker.run(f"rollout-{action}", stage="rollout") as run_id:
            move(tracker)
            champion = resolve(tracker.client, cfg.model.name, cfg.serve.alias).version
            challenger = served_challenger(cfg, tracker.client)
            _record(tracker, run_id, cfg, action, champion, challenger, tags)
        return {
            "action": action,
            "rollout_run_id": run_id,
            "model_version": champion,
            "challenger_version": challenger,
            "swapped_by": "alias polling",
        }
    with ray_session(cfg.runtime, address) as info:
        if info.embedded:
            raise ServingError(
                f"relay rollout {action} changes a running endpoint: pass --address of the "
                "Ray cluster that serves it (a fresh embedded Ray has no endpoint)"
            )
        with tracker.run(f"rollout-{action}", stage="rollout") as run_id:
            move(tracker)
            champion = resolve(tracker.client, cfg.model.name, cfg.serve.alias).version
            challenger = served_challenger(cfg, tracker.client)
            endpoint, _ = serve_app(cfg, tracker.uri)
            wait_for_version(endpoint, champion, challenger)
            _record(tracker, run_id, cfg, action, champion, challenger, tags)
    return {"action": action, "rollout_run_id": run_id, **get_json(f"{endpoint}/healthz")}


def _record(
    tracker: Tracker,
    run_id: str,
    cfg: RelayConfig,
    action: str,
    champion: int,
    challenger: int | None,
    tags: dict[str, str] | None,
) -> None:
    tracker.log(
        run_id,
        tags={
            "relay.rollout_action": action,
            "relay.model_name": cfg.model.name,
            "relay.model_version": champion,
            "relay.challenger_version": challenger or "",
            "relay.challenger_share": cfg.serve.challenger_share,
            "relay.challenger_mode": cfg.serve.challenger_mode,
            **(tags or {}),
        },
    )
