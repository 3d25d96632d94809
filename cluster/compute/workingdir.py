"""A Ray job's working dir is Ray's temporary copy of the project: no record may be kept there.

`ray job submit --working-dir .` unpacks the project under the cluster's
`runtime_resources/working_dir_files/_ray_pkg_<hash>` and starts the driver in it, so the
default `.relay` state dir and its sqlite store land in that copy and go with the cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

from cluster.config import RelayConfig
from cluster.errors import ConfigError
from cluster.tracking.reader import local_store
from cluster.tracking.tracker import tracking_uri

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray's job supervisor sets it for the driver


def job_working_dir() -> Path | None:
    """The folder Ray unpacked this job's `working_dir` into; None outside a Ray job or when
    the job has none (a RayJob that starts in a volume, a plain `relay run`)."""
    try:
        runtime_env = json.loads(os.environ.get(JOB_CONFIG_ENV, "{}")).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return None
    uri = runtime_env.get("working_dir") if isinstance(runtime_env, dict) else None
    if not uri:
        return None
    parsed = urlparse(uri)  # gcs://_ray_pkg_<hash>.zip, s3://bucket/pkg.zip, ...
    package = Path(parsed.netloc + parsed.path).name.removesuffix(".zip")
    # Ray starts the driver in that folder and puts it on PYTHONPATH
    pythonpath = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for folder in (Path.cwd(), *Path.cwd().parents, *pythonpath):
        if folder.name == package:
            return folder.resolve()
    return None


def refuse_ephemeral_state(cfg: RelayConfig) -> None:
    """ConfigError when this Ray job would keep its state dir or tracking store inside its
    working dir, where every record of the run is lost with the cluster."""
    working_dir = job_working_dir()
    if working_dir is None:
        return
    problems = []
    state = Path(cfg.runtime.state_dir).resolve()
    if state.is_relative_to(working_dir):
        problems.append(
            f"runtime.state_dir {cfg.runtime.state_dir!r} resolves to {state}: pass one outside "
            "it on a filesystem the nodes share (--set runtime.state_dir=/shared/relay)"
        )
    uri = tracking_uri(cfg)
    store = local_store(uri)
    if store is not None and store.resolve().is_relative_to(working_dir):
        problems.append(
            f"tracking.uri {uri!r} is a store in it: log to a tracking server (start one with "
            "`relay tracking up`, then --set tracking.uri=http://<host>:<port>)"
        )
    if problems:
        raise ConfigError(
            f"this Ray job runs in Ray's temporary copy of its working dir ({working_dir}), "
            "deleted with the cluster; " + "; ".join(problems)
        )
