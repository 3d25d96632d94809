"""Deployment: start Serve on the configured host/port and run `serving.app:build` on it.

Deploying again (a new pipeline run, `relay deploy`) after the alias moved swaps the model in
the running replicas: `build` resolves the alias into the app's `user_config`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ServingError
from jobs.progress import StageRuns
from jobs.register import Registered
from jobs.serveargs import serve_args


@dataclass
class Deployment:
    run_id: str
    app_name: str
    endpoint: str  # base URL: <endpoint>/predict, <endpoint>/schema, <endpoint>/docs
    token_file: str | None = None  # where clients find the bearer token (None: env or no auth)


def token_file(cfg: RelayConfig) -> Path | None:
    """The token file replicas read: configured, or generated under the state dir.

    None when auth is off or the token comes from the environment (e.g. a Kubernetes secret).
    """
    from cluster.secrets import ensure_secret_file

    if cfg.serve.auth == "none" or os.environ.get(cfg.serve.token_env):
        return None
    if cfg.serve.token_file:
        return Path(cfg.serve.token_file).resolve()
    return ensure_secret_file(Path(cfg.runtime.state_dir).resolve() / "serve_token")


def app_args(cfg: RelayConfig, tracking_uri: str) -> dict[str, Any]:
    file = token_file(cfg)
    # access lines would drown the CLI's output
    return serve_args(cfg, tracking_uri, str(file) if file else None, log_level="WARNING")


def client_token(cfg: RelayConfig) -> str | None:
    """The token a client of this config's endpoint sends."""
    from serving.auth import TokenCheck

    file = token_file(cfg)
    return TokenCheck.load(cfg.serve.auth, cfg.serve.token_env, str(file) if file else None).token


def serve_app(cfg: RelayConfig, tracking_uri: str) -> tuple[str, dict[str, Any]]:
    """(Re)deploy the config's app on the connected Ray; returns the endpoint and the args.

    On a running app only the resolved versions change, so the replicas swap in place.
    """
    from ray import serve

    from serving.app import build

    args = app_args(cfg, tracking_uri)
    try:
        serve.start(
            http_options={"host": cfg.serve.host, "port": cfg.serve.port},
            logging_config={"log_level": "WARNING"},  # access logs stay in Ray's log files
        )
        serve.run(
            build(args),
            name=cfg.model.name,
            route_prefix=cfg.serve.route_prefix,
            blocking=False,
        )
    except RuntimeError as exc:
        raise ServingError(
            f"could not deploy on {cfg.serve.host}:{cfg.serve.port}: {exc}. "
            "(A taken port? Set serve.port)"
        ) from None
    if cfg.serve.ingress == "direct":
        return direct_endpoint(cfg.model.name, cfg.serve.host, cfg.serve.route_prefix), args
    # proxy: Serve's proxy listens there; haproxy: HAProxy does, in front of the replicas
    return f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix}", args


def direct_endpoint(app_name: str, host: str, route_prefix: str, timeout: float = 30.0) -> str:
    """The HTTP address of the app's first ingress replica (direct ingress, no HAProxy).

    Serve allocates each replica its own port and tells only its routers (HAProxy), through
    the controller's target groups (no public API yet); a replaced replica gets a new one.
    The replica binds `host` (serve.host): its node's IP only when that is a wildcard.
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


def run(cfg: RelayConfig, runs: StageRuns, registered: Registered) -> Deployment:
    tracker = runs.tracker
    with runs.open("deploy") as run_id:
        endpoint, args = serve_app(cfg, tracker.uri)
        wait_for_version(endpoint, registered.version, served_challenger(cfg, tracker.client))
        tracker.log_input(  # the deploy run consumed this model version: lineage can walk to it
            run_id,
            name=f"{registered.name}@{registered.alias}",
            digest=registered.sha256,
            source={"model": registered.name, "version": registered.version},
            context="served-model",
        )
        tracker.log(
            run_id,
            params={
                "model_name": registered.name,
                "model_version": registered.version,
                "alias": registered.alias,
                "auth": cfg.serve.auth,
            },
            tags={
                "relay.endpoint": endpoint,
                "relay.model_version": registered.version,
                "relay.sha256": registered.sha256,
            },
        )
    return Deployment(
        run_id=run_id,
        app_name=cfg.model.name,
        endpoint=endpoint,
        token_file=args["token_file"],
    )


def served_challenger(cfg: RelayConfig, client: Any) -> int | None:
    """The challenger version the config's endpoint routes a share to, if any."""
    from cluster.registry import aliased

    if cfg.serve.challenger_share <= 0:
        return None
    found = aliased(client, cfg.model.name, cfg.serve.challenger_alias)
    return found.version if found else None


def wait_for_version(
    endpoint: str, version: int, challenger: int | None = None, timeout: float = 60.0
) -> None:
    """Until the health route says `version` (and `challenger`): swaps go replica by replica."""
    deadline = time.monotonic() + timeout
    while True:
        health = get_json(f"{endpoint}/healthz")
        served = health["model_version"]
        if served == version and health["challenger_version"] == challenger:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"endpoint serves version {served}, expected {version}")
        time.sleep(0.5)


def get_json(url: str, body: Any = None, timeout: float = 30.0, token: str | None = None) -> Any:
    """GET (or POST `body` as JSON) and decode; HTTP errors raise with the server's message."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def teardown(deployment: Deployment, embedded: bool) -> None:
    """Leave nothing running: the whole Serve instance if we own Ray, else just our app."""
    from ray import serve

    if embedded:
        serve.shutdown()
    else:
        serve.delete(deployment.app_name)


def main(argv: list[str] | None = None) -> None:
    from jobs.pipeline import stage_main

    stage_main("deploy", argv)


if __name__ == "__main__":
    main()
