"""KubeRay CRDs as JSON Schemas that behave like the API server's structural-schema checks.

The CRDs are read from `$RELAY_KUBERAY_CRDS`, else `../shared/kuberay-crds-v1.7.0` beside the
repository, and checked against their `SHA256SUMS` (never copied into the project). The API
server defaults before it checks `required`, rejects unknown fields under strict field
validation, and runs `x-kubernetes-validations` CEL rules; `schema_for` converts each
`openAPIV3Schema` so a jsonschema validator (see `validate.py`) does the same.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ConfigError
from jobs.k8s.cel import compile_rule

CRD_ENV = "RELAY_KUBERAY_CRDS"
CRD_VERSION = "v1.7.0"
DEFAULT_CRD_DIR = (
    Path(__file__).resolve().parents[2].parent / "shared" / f"kuberay-crds-{CRD_VERSION}"
)
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class Crd:
    """One served version of a CRD: its raw structural schema and the converted JSON Schema."""

    group: str
    kind: str
    version: str
    structural: dict[str, Any]
    json_schema: dict[str, Any]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def crd_dir() -> Path:
    """Where the CRDs are; a ConfigError names the env var when they cannot be found."""
    path = Path(os.environ.get(CRD_ENV) or DEFAULT_CRD_DIR)
    if not (path / "SHA256SUMS").is_file():
        raise ConfigError(
            f"KubeRay {CRD_VERSION} CRDs not found at {path} (no SHA256SUMS there): set "
            f"${CRD_ENV} to the folder holding ray.io_*.yaml and SHA256SUMS"
        )
    return path


@cache
def load_crds(path: Path) -> dict[tuple[str, str], Crd]:
    """Every served version of every CRD in the folder, keyed by (apiVersion, kind)."""
    crds: dict[tuple[str, str], Crd] = {}
    for line in (path / "SHA256SUMS").read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split()
        data = (path / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ConfigError(f"{path / name} does not match its sha256 in {path}/SHA256SUMS")
        doc = yaml.load(data, Loader=yaml.CSafeLoader)  # the C loader: ~10x faster on 3 MB
        spec = doc["spec"]
        for version in spec["versions"]:
            if not version.get("served"):
                continue
            structural = version["schema"]["openAPIV3Schema"]
            crd = Crd(
                spec["group"],
                spec["names"]["kind"],
                version["name"],
                structural,
                schema_for(structural),
            )
            crds[(crd.api_version, crd.kind)] = crd
    return crds


def schema_for(node: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema node as JSON Schema, with the API server's semantics.

    - `properties` without `x-kubernetes-preserve-unknown-fields`: unknown fields are errors;
    - `x-kubernetes-int-or-string`: integer or string (a quantity pattern still applies to
      strings only);
    - `nullable: true`: null is allowed; otherwise it is not;
    - `format: int32/int64`: the integer range;
    - `x-kubernetes-validations` and `x-kubernetes-list-type` stay as keywords that the
      validator implements (CEL rules, set and map lists).
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: schema_for(sub) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = schema_for(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [schema_for(sub) for sub in value]
        elif key == "not":
            out[key] = schema_for(value)
        elif key == "x-kubernetes-validations":
            for rule in value:  # compiled now: a rule cel-python cannot compile fails the load
                compile_rule(rule["rule"], rule.get("message", ""))
            out[key] = value
        elif key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
            out[key] = value
        elif key == "format" and value in INT_RANGES:
            out["minimum"], out["maximum"] = INT_RANGES[value]
        elif key.startswith("x-kubernetes-") or key in ("default", "nullable", "description"):
            continue
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    if node.get("nullable"):
        out = {"anyOf": [{"type": "null"}, out]}
    return out


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    """The object as the API server stores it: schema defaults filled in, before validation.

    A null field that is not nullable is pruned first, so its default applies (as on the
    server). Defaults are only applied where the parent object exists.
    """
    if isinstance(value, dict) and "properties" in node:
        out = dict(value)
        for name, sub in node["properties"].items():
            if out.get(name, ...) is None and not sub.get("nullable"):
                del out[name]
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        return out
    if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: apply_defaults(v, node["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [apply_defaults(v, node["items"]) for v in value]
    return value


def cel_rule_counts(crds: dict[tuple[str, str], Crd]) -> dict[str, int]:
    """How many CEL rules the CRDs carry, and how many are evaluated or skipped (oldSelf)."""
    counts = {"rules": 0, "evaluated": 0, "skipped_transition": 0}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations", []):
                counts["rules"] += 1
                transition = compile_rule(rule["rule"], rule.get("message", "")).transition
                counts["skipped_transition" if transition else "evaluated"] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for crd in crds.values():
        walk(crd.structural)
    return counts
