"""Deployment: start Serve on the configured host/port and run `serving.app:build` on it."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ServingError
from jobs.progress import StageRuns
from jobs.register import Registered


@dataclass
class Deployment:
    run_id: str
    app_name: str
    endpoint: str  # base URL: <endpoint>/predict, <endpoint>/schema, <endpoint>/docs


def app_args(cfg: RelayConfig, tracking_uri: str) -> dict[str, Any]:
    s = cfg.serve
    return {
        "tracking_uri": tracking_uri,
        "model_name": cfg.model.name,
        "alias": s.alias,
        "num_replicas": s.num_replicas,
        "max_ongoing_requests": s.max_ongoing_requests,
        "max_batch_size": s.max_batch_size,
        "batch_wait_timeout_s": s.batch_wait_timeout_s,
        "log_level": "WARNING",  # access lines would drown the CLI's output
    }


def run(cfg: RelayConfig, runs: StageRuns, registered: Registered) -> Deployment:
    from ray import serve

    from serving.app import build

    tracker = runs.tracker
    with runs.open("deploy") as run_id:
        try:
            serve.start(
                http_options={"host": cfg.serve.host, "port": cfg.serve.port},
                logging_config={"log_level": "WARNING"},  # access logs stay in Ray's log files
            )
            serve.run(
                build(app_args(cfg, tracker.uri)),
                name=cfg.model.name,
                route_prefix=cfg.serve.route_prefix,
                blocking=False,
            )
        except RuntimeError as exc:
            raise ServingError(
                f"could not deploy on {cfg.serve.host}:{cfg.serve.port}: {exc}. "
                "Is the port taken? Set serve.port"
            ) from None
        endpoint = f"http://{cfg.serve.host}:{cfg.serve.port}{cfg.serve.route_prefix}"
        served = get_json(f"{endpoint}/schema")["model"]
        if served["model_version"] != registered.version:
            raise ServingError(
                f"endpoint serves version {served['model_version']}, expected {registered.version}"
            )
        tracker.log(
            run_id,
            params={
                "model_name": registered.name,
                "model_version": registered.version,
                "alias": registered.alias,
            },
            tags={
                "relay.endpoint": endpoint,
                "relay.model_version": registered.version,
                "relay.sha256": registered.sha256,
            },
        )
    return Deployment(run_id=run_id, app_name=cfg.model.name, endpoint=endpoint)


def get_json(url: str, body: Any = None, timeout: float = 30.0) -> Any:
    """GET (or POST `body` as JSON) and decode; HTTP errors raise with the server's message."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
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
