"""KubeRay's runtime rules: checks the operator makes that the CRD schema does not.

An object that breaks one is accepted by the API server and then rejected by the operator
(an event on the object, nothing runs), so they are checked here before applying.
"""

from __future__ import annotations

import re
from typing import Any

# Names: the operator appends suffixes ("-serve-svc", 6 characters for a generated cluster).
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
TOKEN_AUTH_MIN_RAY = (2, 52)
SHELL_META = re.compile(r"[;&|$`<>(){}\\!*?\n'\"]")


def runtime_rules(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for every rule the object breaks (it already passed the CRD schema)."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    problems = _name(kind, obj["metadata"]["name"])
    where = {
        "RayCluster": "spec",
        "RayJob": "spec.rayClusterSpec",
        "RayService": "spec.rayClusterConfig",
    }[kind]
    cluster = spec if kind == "RayCluster" else spec.get(where.partition(".")[2])
    if kind == "RayJob":
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in SUBMISSION_MODES:
            problems.append(
                ("spec.submissionMode", f"{mode!r} is not one of {list(SUBMISSION_MODES)}")
            )
        if cluster is None and not spec.get("clusterSelector"):
            problems.append(("spec", "set rayClusterSpec (or clusterSelector for a cluster)"))
        if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes"):
            problems.append(
                ("spec.ttlSecondsAfterFinished", "needs spec.shutdownAfterJobFinishes: true")
            )
        if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
            problems.append(("spec.activeDeadlineSeconds", "must be a positive integer"))
    if cluster is not None:
        problems += _cluster(cluster, where)
    return problems


def _name(kind: str, name: str) -> list[tuple[str, str]]:
    if len(name) > MAX_NAME[kind]:
        why = f"at most {MAX_NAME[kind]} characters (KubeRay appends suffixes to it)"
    elif not DNS1035_LABEL.match(name):
        why = "a DNS-1035 label (lowercase letters, digits, '-', starting with a letter)"
    else:
        return []
    return [("metadata.name", f"{name!r}: a {kind} name must be {why}")]


def _cluster(spec: dict[str, Any], at: str) -> list[tuple[str, str]]:
    problems = []
    groups = [(f"{at}.headGroupSpec", spec["headGroupSpec"])] + [
        (f"{at}.workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    for where, group in groups:
        if not (group["template"].get("spec") or {}).get("containers"):
            problems.append((f"{where}.template.spec.containers", "needs at least one container"))
        for key, value in (group.get("rayStartParams") or {}).items():
            if SHELL_META.search(value):
                problems.append(
                    (
                        f"{where}.rayStartParams.{key}",
                        f"{value!r} contains shell metacharacters (KubeRay pastes it into a shell "
                        "command line): pass plain values",
                    )
                )
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if "groupName" in group and low > high:
            problems.append((where, f"minReplicas ({low}) must be <= maxReplicas ({high})"))
    names = [g["groupName"] for g in spec.get("workerGroupSpecs") or []]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append((f"{at}.workerGroupSpecs", f"group names must be unique: {dupes}"))
    if (spec.get("authOptions") or {}).get("mode") == "token":
        version = _version(spec.get("rayVersion", ""))
        if version is None or version < TOKEN_AUTH_MIN_RAY:
            need = ".".join(map(str, TOKEN_AUTH_MIN_RAY))
            problems.append(
                (
                    f"{at}.rayVersion",
                    f"authOptions.mode token needs rayVersion >= {need}, "
                    f"got {spec.get('rayVersion')!r}",
                )
            )
    return problems


def _version(text: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None
