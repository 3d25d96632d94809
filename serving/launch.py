"""Serve control by app name: start a config's app, find its address, hand out its token, stop it.

Not a pipeline stage: the deploy stage, rollouts, the pipeline's teardown and the RayService
manifest (`app_args`) share it. Ray and the app (torch) are imported inside the functions
that start or stop it, so rendering manifests or reading a token stays light.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ServingError
from cluster.secrets import ensure_secret_file


def app_args(
    cfg: RelayConfig, tracking_uri: str, token_file: str | None, log_level: str
) -> dict[str, Any]:
    """The args of `serving.app:build` for a config: one mapping for local deploys and KubeRay."""
    s = cfg.serve
    return {
        "tracking_uri": tracking_uri,
        "model_name": cfg.model.name,
        "alias": s.alias,
        "challenger_alias": s.challenger_alias,
        "challenger_share": s.challenger_share,
        "challenger_mode": s.challenger_mode,
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
        "log_path": inference_log_path(cfg) if s.log.enabled else None,
        "log_sample": s.log.sample,
        "log_flush_seconds": s.log.flush_seconds,
        "log_queue_rows": s.log.queue_rows,
        "drift_method": cfg.monitor_drift.method,
        "drift_rows": cfg.monitor.live_drift_rows,
        "drift_min_rows": max(1, min(cfg.monitor.min_predictions, cfg.monitor.live_drift_rows)),
    }


def inference_log_path(cfg: RelayConfig) -> str:
    """Where the replicas write the inference log: `serve.log.path` or <state_dir>/inference."""
    configured = cfg.serve.log.path
    if configured and "://" in configured:
        return configured.rstrip("/")
    return str(Path(configured or Path(cfg.runtime.state_dir) / "inference").resolve())


def token_file(cfg: RelayConfig) -> Path | None:
    """The token file replicas read: configured, or generated under the state dir.

    None when auth is off or the token comes from the environment (e.g. a Kubernetes secret).
    """
    if cfg.serve.auth == "none" or os.environ.get(cfg.serve.token_env):
        return None
    if cfg.serve.token_file:
        return Path(cfg.serve.token_file).resolve()
    return ensure_secret_file(Path(cfg.runtime.state_dir).resolve() / "serve_token")


def client_token(cfg: RelayConfig) -> str | None:
    """The token a client of this config's endpoint sends."""
    from serving.auth import TokenCheck  # FastAPI: not needed to render manifests

    file = token_file(cfg)
    return TokenCheck.load(cfg.serve.auth, cfg.serve.token_env, str(file) if file else None).token


def serve_app(cfg: RelayConfig, tracking_uri: str) -> tuple[str, dict[str, Any]]:
    """(Re)deploy the config's app on the connected Ray; returns the endpoint and the args.

    On a running app only the resolved versions change, so the replicas swap in place.
    """
    from ray import serve

    from serving.app import build

    file = token_file(cfg)
    # access lines would drown the CLI's output
    args = app_args(cfg, tracking_uri, str(file) if file else None, log_level="WARNING")
    start_serve(cfg)
    try:
        serve.run(
            build(args),
            name=cfg.model.name,
            route_prefix=cfg.serve.route_prefix,
            blocking=False,
        )
    except RuntimeError as exc:
        raise _not_deployed(cfg, exc) from None
    if cfg.serve.ingress == "direct":
        return direct_endpoint(cfg.model.name, cfg.serve.host, cfg.serve.route_prefix), args
    # proxy: Serve's proxy listens there; haproxy: HAProxy does, in front of the replicas
    return f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix}", args


def start_serve(cfg: RelayConfig) -> None:
    """Serve on the connected Ray, listening where the config says; a no-op once it runs
    there. The pipeline starts it while it evaluates, ahead of the deploy stage."""
    from ray import serve

    try:
        serve.start(
            http_options={"host": cfg.serve.host, "port": cfg.serve.port},
            logging_config={"log_level": "WARNING"},  # access logs stay in Ray's log files
        )
    except RuntimeError as exc:
        raise _not_deployed(cfg, exc) from None
    if cfg.serve.ingress != "direct":
        _check_http_options(cfg.serve.host, cfg.serve.port)


def _not_deployed(cfg: RelayConfig, exc: RuntimeError) -> ServingError:
    return ServingError(
        f"could not deploy on {cfg.serve.host}:{cfg.serve.port}: {exc}. "
        "(A taken port? Set serve.port)"
    )


def _check_http_options(host: str, port: int) -> None:
    """Refuse a Serve instance already listening elsewhere: it keeps its own host and port.

    `serve.start` on a Ray where Serve runs (a cluster, an earlier run that kept serving) ignores
    new HTTP options, so the endpoint would not be where the config says.
    """
    from ray.serve.context import _get_global_client

    running = _get_global_client().http_config
    wildcard = running.host in ("0.0.0.0", "::")  # listens on `host` too
    if running.port != port or not (wildcard or running.host == host):
        raise ServingError(
            f"Serve already runs on this Ray cluster at {running.host}:{running.port} and keeps "
            f"its address, so it cannot listen on serve.host/serve.port {host}:{port}: set "
            f"serve.port: {running.port} (and serve.host: {running.host}), or stop that Serve "
            "instance first"
        )


def direct_endpoint(app_name: str, host: str, route_prefix: str, timeout: float = 120.0) -> str:
    """The HTTP address of the app's first ingress replica (direct ingress, no HAProxy).

    Serve allocates each replica its own port and tells only its routers (HAProxy), through
    the controller's target groups (no public API yet); a replaced replica gets a new one.
    The replica binds `host` (serve.host): its node's IP only when that is a wildcard. The wait
    covers the replica's start (its model loaded first): past 30 s on a busy 2-core machine.
    """
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    deadline = time.monotonic() + timeout
    while True:
        groups = ray.get(controller.get_target_groups.remote(app_name))
        for group in groups:
            if group.protocol == "HTTP" and group.targets and group.app_name == app_name:
                target = group.targets[0]
                address = target.ip if host in ("0.0.0.0", "::") else host
                return f"http://{address}:{target.port}{route_prefix}"
        if time.monotonic() > deadline:
            raise ServingError(f"no ingress replica of {app_name} reported an HTTP port")
        time.sleep(0.5)


def teardown(app_name: str, embedded: bool) -> None:
    """Leave nothing running: the whole Serve instance if we own Ray, else just our app."""
    from ray import serve

    if embedded:
        serve.shutdown()
    else:
        serve.delete(app_name)
