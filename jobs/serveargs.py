"""The args of `serving.app:build` for a config: one mapping for local deploys and KubeRay.

Kept apart from `jobs.deploy` (which imports torch through the stages) so that rendering
Kubernetes manifests stays light.
"""

from __future__ import annotations

from typing import Any

from cluster.config import RelayConfig


def serve_args(
    cfg: RelayConfig, tracking_uri: str, token_file: str | None, log_level: str
) -> dict[str, Any]:
    s = cfg.serve
    return {
        "tracking_uri": tracking_uri,
        "model_name": cfg.model.name,
        "alias": s.alias,
        "challenger_alias": s.challenger_alias,
        "challenger_share": s.challenger_share,
        "num_replicas": s.num_replicas,
        "replica_cpus": s.replica_cpus,
        "autoscaling": s.autoscaling.model_dump() if s.autoscaling else None,
        "max_ongoing_requests": s.max_ongoing_requests,
        "max_batch_size": s.max_batch_size,
        "batch_wait_timeout_s": s.batch_wait_timeout_s,
        "max_request_records": s.max_request_records,
        "auth": s.auth,
        "token_env": s.token_env,
        "token_file": token_file,
        "log_level": log_level,
        "poll_alias_seconds": s.poll_alias_seconds,
    }
