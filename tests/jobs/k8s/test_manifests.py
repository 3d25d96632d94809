"""The hand-written base: its three Ray cluster specs stay equal, and relay's policy holds
(each rule is also shown to catch the mistake it is for)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from jobs.k8s.kustomize import build
from jobs.k8s.policy import check
from jobs.k8s.render import K8S_DIR
from tests.jobs.k8s.helpers import by_kind, mutated


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return build(K8S_DIR / "overlays" / "gpu")


def _clusters(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        by_kind(objects, "RayCluster")["spec"],
        by_kind(objects, "RayJob")["spec"]["rayClusterSpec"],
        by_kind(objects, "RayService")["spec"]["rayClusterConfig"],
    ]


def test_the_three_ray_cluster_specs_are_the_same(base: list[dict[str, Any]]) -> None:
    cluster, job, service = _clusters(base)
    assert job == cluster
    without_gpu = copy.deepcopy(cluster)
    without_gpu["workerGroupSpecs"] = without_gpu["workerGroupSpecs"][:1]
    assert service == without_gpu


def test_the_ray_clusters_have_the_shape_the_issue_asks_for(base: list[dict[str, Any]]) -> None:
    for spec in _clusters(base):
        assert spec["rayVersion"] == "2.58.0"
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["version"] == "v2"
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:  # one state for all
            mounts = group["template"]["spec"]["containers"][0]["volumeMounts"]
            assert {"name": "relay-state", "mountPath": "/var/lib/relay"} in mounts
    gpu = _clusters(base)[0]["workerGroupSpecs"][1]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu[
        "tolerations"
    ]
    cpu_only = build(K8S_DIR / "overlays" / "cpu")
    assert [len(s["workerGroupSpecs"]) for s in _clusters(cpu_only)] == [1, 1, 1]


def test_secrets_reach_pods_only_through_secret_key_refs(base: list[dict[str, Any]]) -> None:
    refs = set()
    for obj in base:
        assert obj["kind"] != "Secret"
        for env in _envs(obj):
            if "valueFrom" in env:
                refs.add((env["name"], env["valueFrom"]["secretKeyRef"]["key"]))
    assert refs == {
        ("MLFLOW_TRACKING_PASSWORD", "mlflow-admin-password"),
        ("RELAY_SERVE_TOKEN", "serve-token"),
        ("PGPASSWORD", "postgres-password"),
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "mlflow-admin-password"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow-flask-secret"),
        ("POSTGRES_PASSWORD", "postgres-password"),
    }


def _envs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = list(node.get("env", [])) if isinstance(node.get("env"), list) else []
        return found + [e for v in node.values() for e in _envs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _envs(v)]
    return []


def test_mlflow_runs_basic_auth_on_postgres_with_allowed_hosts(base: list[dict[str, Any]]) -> None:
    args = by_kind(base, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--app-name=basic-auth" in args["args"]
    assert any(a.startswith("--allowed-hosts=mlflow,") for a in args["args"])
    assert "--backend-store-uri=postgresql://mlflow@mlflow-postgres:5432/mlflow" in args["args"]
    postgres = by_kind(base, "StatefulSet", "mlflow-postgres")["spec"]
    assert postgres["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert {s["spec"].get("type", "ClusterIP") for s in base if s["kind"] == "Service"} == {
        "ClusterIP"
    }


def test_the_base_meets_relays_policy(base: list[dict[str, Any]]) -> None:
    assert check(base) == []


def _head(o: dict[str, Any]) -> dict[str, Any]:
    return by_kind([o], "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]


def _ray(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects, "RayCluster")


def _mlflow_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]


def _monitor_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cron = by_kind(objects, "CronJob", "relay-monitor")
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


POLICY_BREACHES = {
    "root": (
        lambda objs: _mlflow_container(objs)["securityContext"].update(runAsUser=0),
        "runs as uid 0",
    ),
    "privilege escalation": (
        lambda objs: _head(_ray(objs))["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "allowPrivilegeEscalation: false",
    ),
    "cronjob escalates": (  # the policy reads a CronJob's pods too
        lambda objs: _monitor_container(objs)["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
        "allowPrivilegeEscalation: false",
    ),
    "capabilities kept": (
        lambda objs: _mlflow_container(objs)["securityContext"].pop("capabilities"),
        "capabilities.drop: [ALL]",
    ),
    "literal secret": (
        lambda objs: _mlflow_container(objs)["env"].append(
            {"name": "MLFLOW_AUTH_ADMIN_PASSWORD", "value": "hunter2"}
        ),
        "a secret must come from a secretKeyRef",
    ),
    "password in args": (
        lambda objs: _mlflow_container(objs)["args"].append(
            "--backend-store-uri=postgresql://mlflow:hunter2@db/mlflow"
        ),
        "carries a credential",
    ),
    "secret object": (
        lambda objs: objs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s"},
                "stringData": {"serve-token": "x"},
            }
        ),
        "secret values must not live in manifests",
    ),
    "dashboard exposed": (
        lambda objs: objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "d"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 10001}]},
            }
        ),
        "LoadBalancer exposes Ray ports [10001]",
    ),
    "head service exposed": (
        lambda objs: _ray(objs)["spec"]["headGroupSpec"].update(serviceType="NodePort"),
        "must stay a ClusterIP service",
    ),
    "no default deny": (
        lambda objs: objs.remove(by_kind(objs, "NetworkPolicy", "default-deny")),
        "no default-deny NetworkPolicy",
    ),
    "cluster role": (
        lambda objs: objs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "r"},
                "rules": [],
            }
        ),
        "no cluster-wide RBAC",
    ),
    "token mounted": (
        lambda objs: _ray(objs)["spec"]["workerGroupSpecs"][0]["template"]["spec"].update(
            automountServiceAccountToken=True
        ),
        "automountServiceAccountToken: false",
    ),
    "no token auth": (
        lambda objs: _ray(objs)["spec"].pop("authOptions"),
        "set token",
    ),
    "requests below limits": (
        lambda objs: _head(_ray(objs))["containers"][0]["resources"]["requests"].update(cpu="1"),
        "set requests equal to limits",
    ),
    "gpu without toleration": (
        lambda objs: _ray(objs)["spec"]["workerGroupSpecs"][1]["template"]["spec"].pop(
            "tolerations"
        ),
        "toleration for nvidia.com/gpu",
    ),
    "tasks on the head": (
        lambda objs: _ray(objs)["spec"]["headGroupSpec"]["rayStartParams"].pop("num-cpus"),
        'set num-cpus: "0"',
    ),
    "job never cleaned up": (
        lambda objs: by_kind(objs, "RayJob")["spec"].pop("ttlSecondsAfterFinished"),
        "a finished or stuck job must not hold nodes",
    ),
}


@pytest.mark.parametrize("breach", sorted(POLICY_BREACHES))
def test_each_policy_rule_catches_its_mistake(base: list[dict[str, Any]], breach: str) -> None:
    change, message = POLICY_BREACHES[breach]
    found = check(mutated({"objects": base}, lambda d: change(d["objects"]))["objects"])
    assert len(found) == 1, found
    assert message in found[0][2], found
