"""Validate manifests offline, as strictly as an API server with the KubeRay CRDs would.

- Core kinds: `kubernetes-validate` in strict mode (unknown fields rejected) against a pinned
  Kubernetes version; a kind it has no schema for is a failure, not a warning.
- `ray.io` kinds: the KubeRay v1.7.0 CRD schemas (`crds.py`): defaults applied first, then
  JSON Schema with unknown fields rejected, int-or-string, nullable, integer ranges, set and
  map lists, and the CEL rules (`cel.py`); then KubeRay's own runtime rules (`kuberay.py`).
- `monitoring.coreos.com` kinds: Prometheus Operator's PodMonitor against the structural
  schema in `monitoring.py` (unknown fields rejected); any other kind of the group fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

from jobs.k8s import kuberay, kustomize, monitoring, policy
from jobs.k8s.cel import violations
from jobs.k8s.crds import Crd, apply_defaults, crd_dir, load_crds

K8S_VERSION = "1.37.0"  # newest schema set kubernetes-validate 1.37.0 ships
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Problem:
    obj: str  # Kind/name
    path: str  # dotted path inside the object, "" for the object itself
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path or '(object)'}: {self.message}"


def _cel(validator: Any, rules: list[dict[str, Any]], instance: Any, schema: Any) -> Iterator:
    for message in violations(rules, instance):
        yield ValidationError(message)


def _list_type(validator: Any, kind: str, instance: Any, schema: dict[str, Any]) -> Iterator:
    """`set` lists hold no duplicates; `map` lists no two items with the same keys."""
    if not isinstance(instance, list) or kind not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    for item in instance:
        key = [item.get(k) for k in keys] if kind == "map" and isinstance(item, dict) else item
        if key in seen:
            what = f"keys {dict(zip(keys, key, strict=True))}" if kind == "map" else repr(item)
            yield ValidationError(f"duplicate entry with {what} in a list of type {kind}")
        seen.append(key)


StructuralValidator = validators.extend(
    Draft202012Validator,
    {"x-kubernetes-validations": _cel, "x-kubernetes-list-type": _list_type},
)


def validate_objects(
    objects: Iterable[dict[str, Any]], crds: dict[tuple[str, str], Crd] | None = None
) -> list[Problem]:
    """Every problem in the objects; ray.io kinds need `crds` (default: `crd_dir()`)."""
    problems: list[Problem] = []
    for obj in objects:
        ref = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        if group == "ray.io":
            crds = crds if crds is not None else load_crds(crd_dir())
            found = _custom(obj, crds) or kuberay.runtime_rules(obj)
        elif group == monitoring.GROUP:
            found = _monitoring(obj)
        else:
            found = _core(obj)
        problems += [Problem(ref, path, message) for path, message in found]
    return problems


def _core(obj: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            (
                "",
                f"no schema for {obj.get('apiVersion')} {obj.get('kind')} in "
                f"Kubernetes {K8S_VERSION}: unknown kind or apiVersion",
            )
        ]
    except kubernetes_validate.ValidationError as exc:
        return [(_dotted(exc.path), exc.message)]
    return []


def _custom(obj: dict[str, Any], crds: dict[tuple[str, str], Crd]) -> list[tuple[str, str]]:
    crd = crds.get((obj["apiVersion"], obj.get("kind", "")))
    if crd is None:
        known = sorted(f"{a} {k}" for a, k in crds)
        return [("", f"no CRD schema for {obj['apiVersion']} {obj.get('kind')}; known: {known}")]
    found = _metadata(obj.get("metadata"))
    defaulted = apply_defaults(obj, crd.structural)
    for err in StructuralValidator(crd.json_schema).iter_errors(defaulted):
        found.append((_dotted(err.absolute_path), err.message))
    return found


def _monitoring(obj: dict[str, Any]) -> list[tuple[str, str]]:
    schema = monitoring.SCHEMAS.get((obj["apiVersion"], obj.get("kind", "")))
    if schema is None:
        known = sorted(f"{a} {k}" for a, k in monitoring.SCHEMAS)
        return [("", f"no schema for {obj['apiVersion']} {obj.get('kind')}; known: {known}")]
    found = _metadata(obj.get("metadata"))
    for err in Draft202012Validator(schema).iter_errors(obj):
        found.append((_dotted(err.absolute_path), err.message))
    return found


def _metadata(meta: Any) -> list[tuple[str, str]]:
    """The ObjectMeta checks an API server makes on create (CRDs only say `type: object`)."""
    if not isinstance(meta, dict) or not meta.get("name"):
        return [("metadata.name", "required: every object needs a name")]
    name = meta["name"]
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [("metadata.name", f"{name!r} is not a DNS-1123 subdomain (lowercase a-z0-9-.)")]
    problems = []
    for field in ("labels", "annotations"):
        bad = [k for k, v in (meta.get(field) or {}).items() if not isinstance(v, str)]
        if bad:
            problems.append((f"metadata.{field}", f"values must be strings: {bad}"))
    return problems


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """The objects of a kustomization folder (built), a folder of *.yaml files, or one file."""
    if (path / "kustomization.yaml").is_file():
        return kustomize.build(path)
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def check_manifests(objects: list[dict[str, Any]]) -> list[Problem]:
    """Schema, CRD, KubeRay runtime and relay policy problems, all of them."""
    return validate_objects(objects) + [Problem(*p) for p in policy.check(objects)]
