"""Build a kustomization the way `kubectl kustomize` does, for the subset relay writes.

Supported: `resources` (YAML files and kustomization folders), `configMapGenerator` (files and
literals, hash suffix or not, labels), `patches` (RFC 6902 JSON patches with a `target`, and
strategic merge patches of maps), `images` and `configurations` (ConfigMap name references in
CRDs). Anything else is refused rather than half-applied, so relay's rendering and kustomize's
can be compared object for object (tests/jobs/k8s/test_render.py does).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ConfigError
from jobs.k8s import generators
from jobs.k8s.images import set_images
from jobs.k8s.patches import apply_op, merge_maps

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "patches",
    "images",
    "configurations",
}


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
    return _build(root)[0]


def _build(root: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The objects, and the ConfigMap name references its `configurations:` (and its bases')
    declare: a generator above a base renames what the base's CRDs mount."""
    spec = yaml.safe_load((root / "kustomization.yaml").read_text()) or {}
    unsupported = sorted(set(spec) - SUPPORTED)
    if unsupported:
        raise ConfigError(f"{root}/kustomization.yaml: relay cannot build {unsupported}")
    objects: list[dict[str, Any]] = []
    specs = generators.reference_specs(root, spec.get("configurations", []))
    for entry in spec.get("resources", []):
        path = root / entry
        if path.is_dir():
            below, more = _build(path)
            objects += below
            specs += more
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    hashed = []
    for entry in spec.get("configMapGenerator", []):
        made, suffixed = generators.config_map(root, entry)
        objects.append(made)
        if suffixed:
            hashed.append(made)
    for patch in spec.get("patches", []):
        _patch(root, objects, patch)
    set_images(objects, spec.get("images", []))
    renamed = {}
    for made in hashed:  # after the patches, as kustomize: a patched ConfigMap hashes as patched
        name = made["metadata"]["name"]
        renamed[name] = made["metadata"]["name"] = f"{name}-{generators.name_suffix(made)}"
    generators.rename(objects, renamed, specs)
    return objects, specs


def _patch(root: Path, objects: list[dict[str, Any]], patch: dict[str, Any]) -> None:
    """One `patches:` entry: a list of JSON patch ops for its target, or a strategic merge
    patch (its own kind and name, unless a target says)."""
    text = patch["patch"] if "patch" in patch else (root / patch["path"]).read_text()
    body = yaml.safe_load(text)
    target = patch.get("target")
    if target is None and isinstance(body, dict):
        target = {"kind": body.get("kind"), "name": (body.get("metadata") or {}).get("name")}
    if target is None:
        raise ConfigError(f"{root}/kustomization.yaml: a JSON patch needs a target")
    matched = [o for o in objects if _matches(o, target)]
    if not matched:
        raise ConfigError(f"{root}/kustomization.yaml: no object matches patch target {target}")
    for obj in matched:
        if isinstance(body, dict):
            merge_maps(obj, body)
        else:
            for op in body:
                apply_op(obj, op)


def _matches(obj: dict[str, Any], target: dict[str, str]) -> bool:
    return obj.get("kind") == target["kind"] and obj["metadata"].get("name") == target["name"]
