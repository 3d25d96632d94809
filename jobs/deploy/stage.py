"""Stage deploy: start Serve on the configured host/port and run `serving.app:build` on it.

Deploying again (a new pipeline run, `relay deploy`) after the alias moved swaps the model in
the running replicas: `build` resolves the alias into the app's `user_config`.
"""

from __future__ import annotations

from cluster.config import RelayConfig
from cluster.tracking.tracker import NOTE_TAG
from jobs.artifacts import Deployment, Registered
from jobs.deploy.probe import served_challenger, wait_for_version
from jobs.progress import StageRuns
from serving.launch import serve_app


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
                NOTE_TAG: f"{registered.name} version {registered.version} "
                f"({registered.alias}) served at {endpoint}.",
            },
        )
    return Deployment(
        run_id=run_id,
        app_name=cfg.model.name,
        endpoint=endpoint,
        token_file=args["token_file"],
    )
