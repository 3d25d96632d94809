"""Connecting to Ray: a private embedded local Ray by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cluster import interrupts
from cluster.compute.serveflags import HAPROXY_FLAG, haproxy_env, serve_flags
from cluster.config import RuntimeConfig, ServeConfig
from cluster.errors import ClusterUnreachableError

log = logging.getLogger(__name__)

# Quiet, offline-friendly defaults; a user's own environment always wins.
DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
EMBEDDED_DRAIN_S = "3"  # HAProxy, Serve's own, is told by the controller within ~1 s
_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # results go to MLflow, not result.json
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # epochs are short
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # bars on stderr for a few KiB
    # Ctrl-C interrupts the run (then `relay run --resume`). Tune's own handler would end the
    # search early and let the pipeline go on to register a model from it, and it stays
    # installed after the search, swallowing the Ctrl-C that should stop `relay run --serve`.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


@dataclass
class RayInfo:
    """What the pipeline records about the cluster it ran on."""

    address: str
    embedded: bool
    resources: dict[str, float] = field(default_factory=dict)
    job_id: str = ""  # Ray's id of this driver's job

    @property
    def num_gpus(self) -> float:
        return self.resources.get("GPU", 0.0)


def resolve_address(cfg: RuntimeConfig, address: str | None = None) -> str | None:
    """CLI flag, then config, then RAY_ADDRESS; None means an embedded local Ray."""
    return address or cfg.address or os.environ.get("RAY_ADDRESS") or None


def quiet_environment() -> None:
    """The defaults above, and tracking credentials from a file, for this process and the Ray
    workers it starts."""
    from cluster.tracking.tracker import use_credentials_file

    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    use_credentials_file()


@contextmanager
def ray_session(
    cfg: RuntimeConfig, address: str | None = None, serve: ServeConfig | None = None
) -> Iterator[RayInfo]:
    """Yield a connected Ray; shut it down afterwards only if this call started it.

    The Ray this call starts gets `serve`'s flags (`serve_flags`) in its environment. An
    already running one (a cluster, a test fixture, a notebook, a Ray job driver) is reused as
    is: its flags are those of the environment it was started with. While connected, SIGTERM
    interrupts like Ctrl-C (`interrupts.install`); the caller's handler is back afterwards.
    """
    import ray

    quiet_environment()
    if ray.is_initialized():
        yield _info(ray, embedded=False)
        return
    target = resolve_address(cfg, address)
    caller = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), sys.unraisablehook
    temp_dir = None
    saved: dict[str, str | None] = {}
    try:
        if target:
            ray.init(address=target, logging_level=logging.WARNING, log_to_driver=True)
        else:
            # A private cluster: never attach to whatever /tmp/ray/ray_current_cluster names.
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            flags = serve_flags(serve) if serve else {}
            temp_dir = tempfile.mkdtemp(prefix="relay-ray-")
            if flags.get(HAPROXY_FLAG) == "1":
                flags |= haproxy_env(temp_dir)
            if serve and serve.ingress != "proxy" and DRAIN_ENV not in os.environ:
                # Serve holds a replaced or stopped direct-ingress replica for 30 s so an
                # external load balancer can deregister it; none sits in front of a private
                # Ray, so that wait only delayed swaps and Ctrl-C (34 s to stop the endpoint).
                flags[DRAIN_ENV] = EMBEDDED_DRAIN_S
            saved = {key: os.environ.get(key) for key in flags}
            os.environ.update(flags)  # raylet, and through it every worker, inherits them
            ray.init(
                address="local",
                num_cpus=cfg.num_cpus,
                num_gpus=cfg.num_gpus,
                include_dashboard=False,
                object_store_memory=cfg.object_store_mb * 1024 * 1024,
                _temp_dir=temp_dir,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, TimeoutError) as exc:
        raise ClusterUnreachableError(
            f"could not connect to Ray at {target!r}: {exc}. Check the address (ray://, "
            "host:port or 'auto'), that the cluster is up, and RAY_AUTH_TOKEN if it uses token auth"
        ) from None
    # ray.init replaced SIGTERM's handler: the core worker's C++ failure handler prints a native
    # stack dump, then Ray's Python one raises SystemExit(15), which skips the endpoint's
    # teardown and the `except KeyboardInterrupt` paths (`relay run --serve` then aborted).
    interrupts.install()
    try:
        yield _info(ray, embedded=target is None)
    finally:
        ray.shutdown()
        if threading.current_thread() is threading.main_thread():
            for signum, handler in zip((signal.SIGTERM, signal.SIGINT), caller[:2], strict=True):
                if handler is not None:
                    signal.signal(signum, handler)
            sys.unraisablehook = caller[2]
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in saved.items():  # the next session starts from the user's own
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def node_id() -> str:
    """The Ray node this process runs on ("" outside Ray): where ETL tasks and trials ran."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _info(ray_module, embedded: bool) -> RayInfo:
    ctx = ray_module.get_runtime_context()
    return RayInfo(
        address=ctx.gcs_address,
        embedded=embedded,
        job_id=ctx.get_job_id(),
        resources={
            k: float(v) for k, v in ray_module.cluster_resources().items() if "node:" not in k
        },
    )
