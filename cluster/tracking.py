"""MLflow access with explicit run ids: no fluent global state, so it works the same in workers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ClusterUnreachableError

PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "relay.stage"
PIPELINE_TAG = "relay.pipeline_run_id"


def tracking_uri(cfg: RelayConfig) -> str:
    """Config, then MLFLOW_TRACKING_URI, then a sqlite store under the state dir."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    state = Path(cfg.runtime.state_dir).resolve()
    return f"sqlite:///{state / 'mlflow.db'}"


def default_artifact_root(cfg: RelayConfig) -> str | None:
    """Local stores keep artifacts beside the database; a server decides for itself."""
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


class Tracker:
    """One MLflow client bound to one tracking URI and experiment."""

    def __init__(self, uri: str, experiment_id: str):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment_id = experiment_id
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def open(cls, uri: str, experiment: str, artifact_root: str | None = None) -> Tracker:
        """Find or create the experiment; an unusable store is a ClusterUnreachableError."""
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        tracker = cls(uri, "")
        try:
            found = tracker.client.get_experiment_by_name(experiment)
            tracker.experiment_id = (
                found.experiment_id
                if found
                else tracker.client.create_experiment(experiment, artifact_location=artifact_root)
            )
        except Exception as exc:  # MLflow raises many types for an unreachable store
            raise ClusterUnreachableError(f"MLflow tracking store {uri} unusable: {exc}") from None
        return tracker

    @classmethod
    def from_config(cls, cfg: RelayConfig) -> Tracker:
        return cls.open(tracking_uri(cfg), cfg.tracking.experiment, default_artifact_root(cfg))

    def start(
        self,
        name: str,
        parent: str | None = None,
        tags: Mapping[str, str] | None = None,
        stage: str | None = None,
    ) -> str:
        all_tags = dict(tags or {})
        if parent:
            all_tags[PARENT_TAG] = parent
        if stage:
            all_tags[STAGE_TAG] = stage
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    @contextmanager
    def run(
        self,
        name: str,
        parent: str | None = None,
        tags: Mapping[str, str] | None = None,
        stage: str | None = None,
        reopen: str | None = None,
    ) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED (re-raising) when the block raises.

        `reopen` continues an interrupted run (same id, status back to RUNNING) instead.
        """
        if reopen:
            self.client.update_run(reopen, status="RUNNING")
            run_id = reopen
        else:
            run_id = self.start(name, parent, tags, stage)
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def log(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Everything in one batched call."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_input(
        self,
        run_id: str,
        name: str,
        digest: str,
        source: dict[str, Any],
        context: str,
        schema: Any = None,
        profile: Any = None,
    ) -> None:
        """Record what a run consumed (a dataset, a model version) as an MLflow run input."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = Dataset(
            name=name,
            digest=digest[:32],  # MLflow caps digests at 36 chars; keep the full one in a tag
            source_type="local" if "uri" in source else "relay",
            source=json.dumps(source),
            schema=None if schema is None else json.dumps(schema),
            profile=None if profile is None else json.dumps(profile),
        )
        self.client.log_inputs(
            run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", context)])]
        )


def provenance_tags() -> dict[str, str]:
    """Where the code came from and what it ran on; a missing git repo is recorded, not fatal."""
    import mlflow
    import pyarrow
    import ray
    import torch

    tags = {
        "relay.version": _relay_version(),
        "relay.python": platform.python_version(),
        "relay.ray_version": ray.__version__,
        "relay.torch_version": torch.__version__,
        "relay.mlflow_version": mlflow.__version__,
        "relay.pyarrow_version": pyarrow.__version__,
    }
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        tags.update(
            {
                "mlflow.source.git.commit": commit,
                "relay.git_commit": commit,
                "relay.git_dirty": str(dirty).lower(),
            }
        )
        if dirty:  # which uncommitted changes: two runs with the same hash ran the same code
            diff = _git("diff", "HEAD", "--binary")
            tags["relay.git_diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    except (OSError, subprocess.CalledProcessError):
        tags["relay.git_commit"] = "unknown"
    return tags


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


def _relay_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("relay")
    except PackageNotFoundError:
        return "dev"
