"""Build a kustomization the way `kubectl kustomize` does, for the subset relay writes.

Supported: `resources` (YAML files and kustomization folders) and `patches` given as RFC 6902
JSON patches (inline `patch` or a `path`) with a `target` kind and name. Anything else is
refused rather than half-applied, so relay's rendering and kustomize's can be compared object
for object (tests/jobs/k8s/test_render.py does).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ConfigError

SUPPORTED = {"apiVersion", "kind", "resources", "patches"}


def built(root: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k root` applies: `kubectl kustomize` where kubectl is
    installed, else relay's own `build` (offline; the tests prove the two equal)."""
    if shutil.which("kubectl") is None:
        return build(root)
    done = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"kubectl kustomize {root} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def build(root: Path) -> list[dict[str, Any]]:
    """The objects the kustomization folder `root` produces."""
    spec = yaml.safe_load((root / "kustomization.yaml").read_text()) or {}
    unsupported = sorted(set(spec) - SUPPORTED)
    if unsupported:
        raise ConfigError(f"{root}/kustomization.yaml: relay cannot build {unsupported}")
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = root / entry
        if path.is_dir():
            objects += build(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        text = patch["patch"] if "patch" in patch else (root / patch["path"]).read_text()
        target = patch["target"]
        matched = [o for o in objects if _matches(o, target)]
        if not matched:
            raise ConfigError(f"{root}/kustomization.yaml: no object matches patch target {target}")
        for obj in matched:
            for op in yaml.safe_load(text):
                apply_op(obj, op)
    return objects


def _matches(obj: dict[str, Any], target: dict[str, str]) -> bool:
    return obj.get("kind") == target["kind"] and obj["metadata"].get("name") == target["name"]


def apply_op(doc: Any, op: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove), in place."""
    *parents, leaf = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
    node = doc
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if leaf == "-" else int(leaf)
        if kind == "add":
            node.insert(index, op["value"])
        elif kind == "replace":
            node[index] = op["value"]
        elif kind == "remove":
            del node[index]
        else:
            raise ConfigError(f"unsupported JSON patch op {kind!r} at {op['path']}")
        return
    if kind in ("replace", "remove") and leaf not in node:
        raise ConfigError(f"JSON patch {kind} of a missing path {op['path']}")
    if kind in ("add", "replace"):
        node[leaf] = op["value"]
    elif kind == "remove":
        del node[leaf]
    else:
        raise ConfigError(f"unsupported JSON patch op {kind!r} at {op['path']}")
