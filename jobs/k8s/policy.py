"""relay's security and shape policy for its manifests, beyond what any schema says.

Pods run non-root without privilege escalation and with every capability dropped; secrets
reach pods only through `secretKeyRef`; no Service exposes the Ray dashboard (8265) or client
(10001) outside the cluster; traffic is denied by default; nothing gets cluster-wide or
wildcard RBAC; Ray clusters use token auth and the in-tree autoscaler v2, requests = limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jobs.k8s.kuberay import MAX_NAME

PRIVATE_PORTS = {8265, 10001}  # Ray dashboard / Jobs API and Ray client
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|CREDENTIALS|_KEY)$")
SECRET_ARG = re.compile(r"(password|token|secret)=\S|://[^/@\s]+:[^/@\s]+@", re.IGNORECASE)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")
RAY_VERSION = "2.58.0"


def check(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(object, path, message) for every breach of the policy in a set of manifests."""
    problems = []
    for obj in objects:
        ref = f"{obj['kind']}/{obj['metadata']['name']}"
        problems += [(ref, path, msg) for path, msg in _object(obj)]
    problems += [("(all)", "", msg) for msg in _whole(objects)]
    return problems


def _object(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind == "Secret" and (obj.get("data") or obj.get("stringData")):
        yield "data", "secret values must not live in manifests: create the Secret apart"
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        yield "", "no cluster-wide RBAC: relay needs none"
    if kind == "Role":
        for i, rule in enumerate(obj.get("rules") or []):
            if "*" in rule.get("verbs", []) + rule.get("resources", []):
                yield f"rules[{i}]", "wildcard verbs or resources: grant what is needed"
    if kind == "Service" and spec.get("type") in ("NodePort", "LoadBalancer"):
        exposed = {p.get("port") for p in spec.get("ports", [])} & PRIVATE_PORTS
        if exposed:
            yield "spec.type", f"{spec['type']} exposes Ray ports {sorted(exposed)} outside"
    for path, pod, ray_head in _pods(obj):
        yield from _pod(path, pod, ray_head)
    if kind in MAX_NAME:
        yield from _ray(kind, spec)


def _pods(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(path, pod spec, is a Ray head) for every pod the object makes."""
    spec = obj.get("spec") or {}
    if obj["kind"] in WORKLOADS:
        yield "spec.template.spec", spec["template"]["spec"], False
    if obj["kind"] == "CronJob":
        job = spec["jobTemplate"]["spec"]
        yield "spec.jobTemplate.spec.template.spec", job["template"]["spec"], False
    for at, cluster in _clusters(obj):
        yield (
            f"{at}.headGroupSpec.template.spec",
            cluster["headGroupSpec"]["template"]["spec"],
            True,
        )
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            yield f"{at}.workerGroupSpecs[{i}].template.spec", group["template"]["spec"], False


def _clusters(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = obj.get("spec") or {}
    at = {"RayCluster": "", "RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}
    if obj["kind"] in at:
        key = at[obj["kind"]]
        cluster = spec.get(key) if key else spec
        if cluster:
            yield f"spec.{key}".rstrip("."), cluster


def _pod(path: str, pod: dict[str, Any], ray_head: bool) -> Iterator[tuple[str, str]]:
    pod_sec = pod.get("securityContext") or {}
    if not ray_head:  # the head runs KubeRay's autoscaler, which needs its own API token
        if pod.get("automountServiceAccountToken") is not False:
            yield path, "set automountServiceAccountToken: false (the pod calls no API)"
        if pod.get("serviceAccountName") in (None, "default"):
            yield path, "set serviceAccountName to relay's service account, not default"
    for i, c in enumerate(pod.get("initContainers", []) + pod.get("containers", [])):
        where = f"{path}.containers[{i}] ({c['name']})"
        sec = c.get("securityContext") or {}
        yield from _container_security(where, sec, pod_sec)
        for env in c.get("env", []):
            if SECRET_NAME.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
                yield f"{where}.env.{env['name']}", "a secret must come from a secretKeyRef"
        for arg in c.get("command", []) + c.get("args", []):
            if SECRET_ARG.search(arg):
                yield f"{where}.args", f"{arg!r} carries a credential: use a secretKeyRef env"


def _container_security(
    where: str, sec: dict[str, Any], pod_sec: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    if not (sec.get("runAsNonRoot") or pod_sec.get("runAsNonRoot")):
        yield where, "set securityContext.runAsNonRoot: true"
    if sec.get("runAsUser", pod_sec.get("runAsUser")) == 0:
        yield where, "runs as uid 0: use a non-root uid"
    if sec.get("allowPrivilegeEscalation") is not False or sec.get("privileged"):
        yield where, "set securityContext.allowPrivilegeEscalation: false (and not privileged)"
    if "ALL" not in (sec.get("capabilities") or {}).get("drop", []):
        yield where, "drop every capability: securityContext.capabilities.drop: [ALL]"


def _ray(kind: str, spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if kind == "RayJob":
        if not spec.get("shutdownAfterJobFinishes"):
            yield "spec.shutdownAfterJobFinishes", "set true: the job's cluster must go away"
        for field in ("ttlSecondsAfterFinished", "activeDeadlineSeconds"):
            if field not in spec:
                yield f"spec.{field}", "set it: a finished or stuck job must not hold nodes"
    for at, cluster in _clusters({"kind": kind, "spec": spec}):
        if (cluster.get("authOptions") or {}).get("mode") != "token":
            yield f"{at}.authOptions.mode", "set token: the dashboard and GCS need auth"
        if cluster.get("rayVersion") != RAY_VERSION:
            yield f"{at}.rayVersion", f"must be {RAY_VERSION}, the Ray relay pins"
        if not cluster.get("enableInTreeAutoscaling"):
            yield f"{at}.enableInTreeAutoscaling", "set true (autoscaler v2)"
        options = cluster.get("autoscalerOptions") or {}
        if options.get("version") != "v2":
            yield f"{at}.autoscalerOptions.version", "set v2"
        yield from _container_security(
            f"{at}.autoscalerOptions", options.get("securityContext") or {}, {}
        )
        head = cluster["headGroupSpec"]
        if head.get("serviceType", "ClusterIP") != "ClusterIP" or head.get("enableIngress"):
            yield f"{at}.headGroupSpec", "the head (8265, 10001) must stay a ClusterIP service"
        if head.get("rayStartParams", {}).get("num-cpus") != "0":
            yield f"{at}.headGroupSpec.rayStartParams", 'set num-cpus: "0": no tasks on the head'
        groups = [("headGroupSpec", head)] + [
            (f"workerGroupSpecs[{i}]", g) for i, g in enumerate(cluster.get("workerGroupSpecs", []))
        ]
        for name, group in groups:
            yield from _sizes(f"{at}.{name}", group["template"]["spec"])


def _sizes(where: str, pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Requests = limits (Ray sizes itself from limits); GPU pods tolerate the GPU taint."""
    resources = pod["containers"][0].get("resources") or {}
    if not resources.get("limits") or resources.get("requests") != resources.get("limits"):
        yield f"{where}.resources", "set requests equal to limits (cpu, memory, GPUs)"
    if "nvidia.com/gpu" in (resources.get("limits") or {}):
        keys = {t.get("key") for t in pod.get("tolerations", [])}
        if "nvidia.com/gpu" not in keys:
            yield f"{where}.tolerations", "a GPU group needs a toleration for nvidia.com/gpu"


def _whole(objects: list[dict[str, Any]]) -> Iterator[str]:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        yield "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)"
