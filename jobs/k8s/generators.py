"""kustomize's `configMapGenerator` and the name references it rewrites.

A generated ConfigMap's name carries a hash of its data, so a changed config is a new name in
every pod template that mounts it, and KubeRay rolls those pods. The suffix is kustomize's:
sha256 of Go's JSON of {"data", "kind", "name"} (kustomize v5 looks the name up under a key
that does not exist, so it is always ""), first 10 hex digits with 0 1 3 a e spelled g h k m
t; the tests prove it equal to `kubectl kustomize`'s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ConfigError

GENERATOR_KEYS = {"name", "files", "literals", "options"}
OPTION_KEYS = {"disableNameSuffixHash", "labels"}
# Where kustomize itself looks for ConfigMap names in the core kinds (a subset: what pods use).
POD_SPECS = {
    "Pod": "spec",
    "Deployment": "spec/template/spec",
    "StatefulSet": "spec/template/spec",
    "DaemonSet": "spec/template/spec",
    "ReplicaSet": "spec/template/spec",
    "Job": "spec/template/spec",
    "CronJob": "spec/jobTemplate/spec/template/spec",
}
IN_POD = (
    "volumes/configMap/name",
    "volumes/projected/sources/configMap/name",
    *(
        f"{containers}/{ref}"
        for containers in ("containers", "initContainers")
        for ref in ("env/valueFrom/configMapKeyRef/name", "envFrom/configMapRef/name")
    ),
)
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
BUILTIN = [(kind, f"{pod}/{path}") for kind, pod in POD_SPECS.items() for path in IN_POD]


def config_map(root: Path, spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The ConfigMap one generator entry makes, and whether its name takes the hash."""
    unknown = sorted(set(spec) - GENERATOR_KEYS) + sorted(
        set(spec.get("options") or {}) - OPTION_KEYS
    )
    if unknown:
        raise ConfigError(f"{root}/kustomization.yaml: relay cannot generate with {unknown}")
    data: dict[str, str] = {}
    for item in spec.get("files", []):
        key, _, path = item.rpartition("=")
        data[key or Path(path).name] = (root / path).read_text()
    for item in spec.get("literals", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{root}/kustomization.yaml: literal {item!r} is not key=value")
        data[key] = value
    if not data:
        raise ConfigError(f"{root}/kustomization.yaml: generator {spec['name']!r} has no data")
    options = spec.get("options") or {}
    metadata: dict[str, Any] = {"name": spec["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    made = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
    return made, not options.get("disableNameSuffixHash", False)


def name_suffix(config_map: dict[str, Any]) -> str:
    """kustomize's hash suffix of a ConfigMap (see the module's docstring)."""
    data = config_map.get("data")
    fields = {"data": _go_json(data) if data else '""', "kind": '"ConfigMap"', "name": '""'}
    text = "{" + ",".join(f'"{k}":{v}' for k, v in sorted(fields.items())) + "}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _go_json(data: dict[str, str]) -> str:
    """Go's encoding/json of a string map: sorted keys, HTML characters escaped."""
    return "{" + ",".join(f"{_go_string(k)}:{_go_string(v)}" for k, v in sorted(data.items())) + "}"


def _go_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in SHORT_ESCAPES:  # \b and \f too since Go 1.22 (kubectl 1.32 has it)
            out.append(SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def reference_specs(root: Path, files: list[str]) -> list[tuple[str, str]]:
    """The (kind, path) pairs a kustomization's `configurations:` adds for ConfigMap names."""
    specs = []
    for file in files:
        config = yaml.safe_load((root / file).read_text()) or {}
        if set(config) - {"nameReference"}:
            raise ConfigError(f"{root / file}: relay reads only nameReference")
        for ref in config.get("nameReference", []):
            if ref.get("kind") != "ConfigMap":
                raise ConfigError(f"{root / file}: relay follows ConfigMap names only")
            specs += [(s["kind"], s["path"]) for s in ref["fieldSpecs"]]
    return specs


def rename(
    objects: list[dict[str, Any]], renamed: dict[str, str], specs: list[tuple[str, str]]
) -> None:
    """Point every reference at a renamed ConfigMap to its new name, in place."""
    for obj in objects:
        for kind, path in BUILTIN + specs:
            if obj.get("kind") == kind:
                _rename_at(obj, path.split("/"), renamed)


def _rename_at(node: Any, path: list[str], renamed: dict[str, str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rename_at(item, path, renamed)
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) > 1:
        _rename_at(node[path[0]], path[1:], renamed)
    elif isinstance(node[path[0]], str):
        node[path[0]] = renamed.get(node[path[0]], node[path[0]])
