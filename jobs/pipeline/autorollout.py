"""`relay rollout auto`: act on what `relay monitor` found about the challenger.

The monitor summary carries the decision (`jobs.monitor.compare.decide`). Every decision,
hold included, is a `rollout` run linked to the monitor run it read, and a tag on the
challenger's model version (its lineage); a promote or a roll-back then moves the aliases and
swaps the endpoint (`jobs.deploy.rollout`), its own run naming the decision's.
"""

from __future__ import annotations

from typing import Any

from cluster.config import RelayConfig
from cluster.tracking.tracker import Tracker
from jobs.deploy import rollout
from jobs.monitor import stage
from jobs.monitor.compare import HOLD, PROMOTE, ROLLBACK

DECISION_TAG = "relay.rollout_decision"


def auto(cfg: RelayConfig, address: str | None = None, since: str | None = None) -> dict[str, Any]:
    """Monitor, decide, act: the monitor summary with the decision's `rollout_decision`."""
    summary = stage.run(cfg, since)
    summary["rollout_decision"] = act(cfg, summary, address)
    return summary


def act(cfg: RelayConfig, summary: dict[str, Any], address: str | None) -> dict[str, Any]:
    """Record the monitor summary's decision, and carry it out."""
    found = summary["rollout"]
    decision = found["decision"] if found else HOLD
    reason = found["reason"] if found else "no challenger answered in the window"
    tracker = Tracker.from_config(cfg)
    done: dict[str, Any] = {"decision": decision, "reason": reason}
    with tracker.run("rollout-auto", stage="rollout") as run_id:
        tags: dict[str, Any] = {
            "relay.rollout_action": "auto",
            DECISION_TAG: decision,
            "relay.monitor_run": summary["run_id"],
            "relay.model_name": cfg.model.name,
        }
        if found:
            tags |= {"relay.model_version": found["champion"]}
            tags |= {"relay.challenger_version": found["challenger"]}
        tracker.log(run_id, tags=tags, params={"reason": reason[:500]})
        record = {"decision": decision, "reason": reason, **(found or {})}
        tracker.log_dict(run_id, record, "rollout_decision.json")
        linked = {"relay.decided_by_run": run_id}
        judged = found["challenger"] if found else None
        if decision == PROMOTE:
            done["action"] = rollout.promote(cfg, address, tags=linked, expected=judged)
        elif decision == ROLLBACK:
            done["action"] = rollout.rollback(cfg, address, tags=linked, expected=judged)
        done["run_id"] = run_id
    if found:
        version = str(found["challenger"])
        tracker.online(
            lambda: tracker.client.set_model_version_tag(
                cfg.model.name, version, DECISION_TAG, f"{decision} {run_id}"
            )
        )
    return done
