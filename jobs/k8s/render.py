"""`relay k8s render`: the kustomize base and an overlay, with one pipeline config on top.

The output folder is self-contained: `base/` and `overlays/<name>/` copied from the repo's
`k8s/`, the config as `config.yaml`, and a `kustomization.yaml` in kustomize's own fields:
`images:` (the base's `relay` and `relay-gpu`), `configMapGenerator` (the config as
relay-config-<hash>: a changed config rolls the pods that mount it), strategic merge patches
for scalars (the RayJob's TTL and deadline, `serveConfigV2`, the monitor's schedule) and JSON
patches where a list is indexed (pod sizes, worker replicas, Serve's process-level flags in
every Ray container's environment). `kubectl apply -k DIR` applies it; `manifests.yaml`
beside it is the build of the same kustomization.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cluster.compute.serveflags import serve_flags
from cluster.config import GpuWorkerGroup, PodResources, RelayConfig, WorkerGroup
from cluster.errors import ConfigError
from jobs.k8s import kustomize
from jobs.k8s.images import entry
from serving.launch import app_args

K8S_DIR = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = ("cpu", "gpu")
TRACKING_URI = "http://mlflow:5000"  # the in-cluster MLflow Service (k8s/base/mlflow.yaml)
TOKEN_ENV = "RELAY_SERVE_TOKEN"  # wired to the relay-secrets serve-token key in every Ray pod
SERVE_PORT = 8000
K8S_POLL_SECONDS = 30.0  # the RayService follows the alias the RayJob moves (no redeploy)
POD_STATE = "/var/lib/relay"  # the relay-state volume: every Ray pod's working directory
# Ray objects of the base and where each keeps its cluster spec.
CLUSTERS = {
    "RayCluster": ("relay", "/spec"),
    "RayJob": ("relay-pipeline", "/spec/rayClusterSpec"),
    "RayService": ("relay-serve", "/spec/rayClusterConfig"),
}


class BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the patches, serveConfigV2) as `|` blocks a reader can read."""


def _block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


BlockDumper.add_representer(str, _block)


def serve_config(cfg: RelayConfig) -> dict[str, Any]:
    """The RayService's `serveConfigV2`: `serving.app:build` with the config's serve settings."""
    if cfg.serve.auth != "token":
        raise ConfigError(
            "serve.auth none is not allowed on Kubernetes (the endpoint listens on the pod "
            "network): use auth token"
        )
    args = app_args(cfg, cfg.tracking.uri or TRACKING_URI, None, log_level="INFO")
    args["token_env"] = TOKEN_ENV
    args["poll_alias_seconds"] = cfg.serve.poll_alias_seconds or K8S_POLL_SECONDS
    configured = cfg.serve.log.path or f"{cfg.runtime.state_dir}/inference"
    if args["log_path"] and "://" not in configured:  # a path in the pods, not on this machine
        args["log_path"] = str(PurePosixPath(POD_STATE) / configured)
    return {
        "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
        "applications": [
            {
                "name": cfg.model.name,
                "import_path": "serving.app:build",
                "route_prefix": cfg.serve.route_prefix,
                "args": args,
            }
        ],
    }


def render(cfg: RelayConfig, config_text: str, overlay: str, out: Path) -> list[dict[str, Any]]:
    """Write the kustomization for `cfg` under `out`; returns the objects it builds."""
    if not (K8S_DIR / "base").is_dir():
        raise ConfigError(f"{K8S_DIR}/base not found: run relay k8s render from a relay checkout")
    if overlay not in OVERLAYS:
        raise ConfigError(f"unknown overlay {overlay!r}: use one of {list(OVERLAYS)}")
    uri = cfg.tracking.uri
    if uri and not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"tracking.uri {uri!r} is not reachable from pods: unset it (the in-cluster "
            f"{TRACKING_URI} is used) or give an http(s) MLflow server"
        )
    out.mkdir(parents=True, exist_ok=True)
    for part in ("base", f"overlays/{overlay}"):
        shutil.copytree(K8S_DIR / part, out / part, dirs_exist_ok=True)
    (out / "config.yaml").write_text(config_text)
    images = [entry("relay", cfg.kubernetes.image)]
    if overlay == "gpu":
        images.append(entry("relay-gpu", cfg.kubernetes.gpu_image))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"overlays/{overlay}"],
        "images": images,
        "configMapGenerator": [{"name": "relay-config", "files": ["config.yaml"]}],
        "patches": _patches(cfg, overlay),
    }
    header = f"# Written by `relay k8s render` for pipeline {cfg.name!r}, overlay {overlay}.\n"
    text = yaml.dump(kustomization, Dumper=BlockDumper, sort_keys=False)
    (out / "kustomization.yaml").write_text(header + text)
    objects = kustomize.built(out)
    (out / "manifests.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return objects


def _patches(cfg: RelayConfig, overlay: str) -> list[dict[str, Any]]:
    k = cfg.kubernetes
    flags = serve_flags(cfg.serve, here=False)  # read by Serve at start, in every Ray process
    patches = [
        _merge("RayJob", "relay-pipeline", {"ttlSecondsAfterFinished": k.job_ttl_seconds,
               "activeDeadlineSeconds": k.job_deadline_seconds}),
        # no final newline: kustomize's merge drops it from a block scalar (kubectl 1.32)
        _merge("RayService", "relay-serve",
               {"serveConfigV2": yaml.safe_dump(serve_config(cfg), sort_keys=False).rstrip()}),
        _merge("CronJob", "relay-monitor", {"schedule": k.monitor_schedule}, "batch/v1"),
    ]  # fmt: skip
    for kind, (name, at) in CLUSTERS.items():
        ops = _group(f"{at}/headGroupSpec", k.head, flags)
        ops += _group(f"{at}/workerGroupSpecs/0", k.cpu_workers, flags)
        if overlay == "gpu" and kind != "RayService":  # serving needs no GPU
            ops += _group(f"{at}/workerGroupSpecs/1", k.gpu_workers, flags)
        patches.append(_patch(kind, name, ops))
    return patches


def _merge(kind: str, name: str, spec: dict[str, Any], api: str = "ray.io/v1") -> dict[str, Any]:
    """A strategic merge patch of `spec`'s scalars (the readable form)."""
    body = {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return {"patch": yaml.dump(body, Dumper=BlockDumper, sort_keys=False)}


def _group(at: str, size: PodResources, env: dict[str, str]) -> list[dict[str, Any]]:
    """Requests = limits and added `env` of a group's Ray container; replicas of a worker
    group (JSON patches: the container and the group are list items)."""
    limits: dict[str, Any] = {"cpu": size.cpu, "memory": size.memory}
    if isinstance(size, GpuWorkerGroup):
        limits["nvidia.com/gpu"] = size.gpus
    container = f"{at}/template/spec/containers/0"
    ops = [_replace(f"{container}/resources", {"limits": limits, "requests": dict(limits)})]
    ops += [
        {"op": "add", "path": f"{container}/env/-", "value": {"name": name, "value": value}}
        for name, value in env.items()
    ]
    if isinstance(size, WorkerGroup):
        ops += [
            _replace(f"{at}/replicas", size.min_replicas),
            _replace(f"{at}/minReplicas", size.min_replicas),
            _replace(f"{at}/maxReplicas", size.max_replicas),
        ]
    return ops


def _replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def _patch(kind: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    ops_text = yaml.safe_dump(ops, sort_keys=False)
    return {"target": {"kind": kind, "name": name}, "patch": ops_text}
