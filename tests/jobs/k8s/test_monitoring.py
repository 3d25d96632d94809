"""The monitoring objects of the base: the PodMonitor scrapes every Ray pod on the port Ray
exports to, the dashboard asks only for series that exist, the NetworkPolicy opens that port to
Prometheus and nothing else, and `relay k8s validate` checks a PodMonitor strictly. No Ray
starts: the series come from Ray's exporter code run in a subprocess (metric_names.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli.app import app
from jobs.k8s.kustomize import build
from jobs.k8s.render import K8S_DIR
from tests.conftest import CI_CONFIG
from tests.jobs.k8s import metric_names
from tests.jobs.k8s.helpers import by_kind, kuberay_crds

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = K8S_DIR / "base" / "dashboards" / "relay-endpoint.json"
NAMESPACE = "relay"
# Labels Prometheus Operator's scrape config of a PodMonitor puts on every target, besides
# the PodMonitor's own relabelings (read from it below).
TARGET_LABELS = {"namespace", "pod", "container", "job", "instance"}
GRAFANA_RANGES = ("$__rate_interval", "$__interval", "$__range")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
# What KubeRay (v1.7.0, labelPod) sets on every Ray pod; the template's labels go on top,
# except these three, which it lets no template override.
KUBERAY_FIXED = ("ray.io/node-type", "ray.io/group", "ray.io/cluster")
CLUSTER_SPECS = {
    "RayCluster": (),
    "RayJob": ("rayClusterSpec",),
    "RayService": ("rayClusterConfig",),
}
POD_TEMPLATES = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass
class Pod:
    name: str  # kind/object[/group]
    labels: dict[str, str]
    spec: dict[str, Any]
    namespace: str = NAMESPACE
    ray: dict[str, Any] | None = None  # the Ray group spec of a Ray pod

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}  # the API server sets it

    def ports(self) -> dict[str, int]:
        return {
            p["name"]: p["containerPort"]
            for c in self.spec.get("containers", [])
            for p in c.get("ports", [])
            if "name" in p
        }


def _at(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def pods(objects: list[dict[str, Any]]) -> list[Pod]:
    """Every pod the manifests make, Ray pods labelled as KubeRay labels them."""
    found = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in POD_TEMPLATES:
            template = _at(obj, POD_TEMPLATES[kind])
            found.append(Pod(f"{kind}/{name}", template["metadata"]["labels"], template["spec"]))
        if kind in CLUSTER_SPECS:
            cluster = _at(obj["spec"], CLUSTER_SPECS[kind])
            # the RayJob's and RayService's clusters get a generated name (5 random letters)
            cluster_name = name if kind == "RayCluster" else f"{name}-x7k2q"
            groups = [("head", "headgroup", cluster["headGroupSpec"])] + [
                ("worker", g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])
            ]
            for node_type, group, spec in groups:
                labels = {
                    "ray.io/is-ray-node": "yes",
                    "ray.io/identifier": f"{cluster_name}-{node_type}",
                    "app.kubernetes.io/name": "kuberay",
                    "app.kubernetes.io/created-by": "kuberay-operator",
                    **spec["template"]["metadata"].get("labels", {}),
                }
                labels.update(
                    dict(zip(KUBERAY_FIXED, (node_type, group, cluster_name), strict=True))
                )
                found.append(
                    Pod(f"{kind}/{name}/{group}", labels, spec["template"]["spec"], ray=spec)
                )
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def built(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build(K8S_DIR / "overlays" / request.param)


@pytest.fixture(scope="module")
def gpu() -> list[dict[str, Any]]:
    return build(K8S_DIR / "overlays" / "gpu")


@pytest.fixture(scope="module")
def series() -> dict[str, list[str] | None]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.jobs.k8s.metric_names"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _endpoint(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (endpoint,) = by_kind(objects, "PodMonitor", "relay-ray")["spec"]["podMetricsEndpoints"]
    return endpoint


def test_the_pod_monitor_selects_exactly_the_ray_pods_on_a_port_they_declare(
    built: list[dict[str, Any]],
) -> None:
    monitor = by_kind(built, "PodMonitor", "relay-ray")["spec"]
    everything = pods(built)
    ray = [p.name for p in everything if p.ray is not None]
    # head + cpu (+ gpu) for the RayCluster and the RayJob, head + cpu for the RayService
    assert len(ray) in (6, 8) and len(everything) > len(ray)  # MLflow, PostgreSQL, monitor
    assert [p.name for p in everything if selects(monitor["selector"], p.labels)] == ray
    assert "namespaceSelector" not in monitor  # its own namespace: where the Ray pods are
    endpoint = _endpoint(built)
    for pod in everything:
        if pod.ray is not None:  # the Ray container's port (KubeRay's container 0)
            names = {p["name"] for p in pod.spec["containers"][0].get("ports", [])}
            assert endpoint["port"] in names, pod.name
    for relabeling in endpoint["relabelings"]:  # each copies a label every Ray pod has
        (source,) = relabeling["sourceLabels"]
        label = source.removeprefix("__meta_kubernetes_pod_label_")
        for pod in everything:
            if pod.ray is not None:
                assert label in {re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in pod.labels}


def test_ray_starts_with_the_metrics_port_the_pods_declare(built: list[dict[str, Any]]) -> None:
    from ray.scripts.scripts import start  # `ray start`, which KubeRay runs with these

    options = {opt for param in start.params for opt in param.opts}
    port_name = _endpoint(built)["port"]
    ray_pods = [p for p in pods(built) if p.ray is not None]
    for pod in ray_pods:
        params = pod.ray["rayStartParams"]
        assert all(f"--{key}" in options for key in params), params
        assert params["metrics-export-port"] == str(pod.ports()[port_name]), pod.name
    assert {p.ports()[port_name] for p in ray_pods} == {8080}  # KubeRay's convention


def _problems(expr: str, series: dict[str, list[str] | None], extra: set[str]) -> list[str]:
    """Series and labels a PromQL expression asks for that no exporter makes."""
    for var in GRAFANA_RANGES:
        expr = expr.replace(var, "5m")
    try:
        tree = promql_parser.parse(expr)
    except Exception as exc:  # the parser's own error type is not exported
        return [f"{expr!r} does not parse: {exc}"]
    problems: list[str] = []

    def labels_of(node: promql_parser.Expr) -> set[str] | None:
        found: set[str] = set(extra)

        def add(sub: promql_parser.Expr) -> None:
            if isinstance(sub, promql_parser.VectorSelector):
                known = series.get(sub.name or "")
                found.update(known or ())
                if known is None:
                    found.add("*")

        promql_parser.walk(node, pre_visit=add)
        return None if "*" in found else found

    def check(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name not in series:
                problems.append(f"no series {node.name!r}")
                return
            known = series[node.name]
            for matcher in node.matchers.matchers:
                if known is not None and matcher.name not in {*known, *extra}:
                    problems.append(f"{node.name} has no label {matcher.name!r}")
        modifier = getattr(node, "modifier", None)
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and modifier is not None
            and modifier.type == promql_parser.AggModifierType.By
        ):
            known = labels_of(node.expr)
            for label in modifier.labels:
                if known is not None and label not in known:
                    problems.append(f"by ({label}): no such label under {node.expr}")

    promql_parser.walk(tree, pre_visit=check)
    return problems


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every label_values variable."""
    found = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            found.append((f"variable {var['name']}", var["query"]))
    return found


def _extra_labels(objects: list[dict[str, Any]]) -> set[str]:
    return TARGET_LABELS | {r["targetLabel"] for r in _endpoint(objects)["relabelings"]}


def test_the_series_are_the_ones_rays_exporter_makes_of_the_code(
    series: dict[str, list[str] | None],
) -> None:
    assert "model_version" in (series["ray_relay_predictions_total"] or [])
    assert {"le", "model_version", "application"} <= set(
        series["ray_relay_predict_latency_ms_bucket"] or []
    )
    assert {"model", "version", "feature"} <= set(series["ray_relay_feature_drift"] or [])
    assert "status_code" in (series["ray_serve_num_http_requests_total"] or [])
    assert "ray_relay_predictions" not in series  # a counter is only exported with _total


def test_the_promql_check_catches_a_wrong_name_or_label(
    series: dict[str, list[str] | None],
) -> None:
    assert _problems("sum(rate(ray_relay_predictions_total[5m]))", series, TARGET_LABELS) == []
    assert _problems("rate(ray_relay_prediction_total[5m])", series, TARGET_LABELS)
    assert _problems("sum by (version) (ray_relay_predictions_total)", series, TARGET_LABELS)
    assert _problems('ray_relay_predictions_total{stat="422"}', series, TARGET_LABELS)
    assert _problems("sum(rate(ray_relay_predictions_total[5m])", series, TARGET_LABELS)


def test_every_dashboard_query_asks_only_for_series_that_exist(
    gpu: list[dict[str, Any]], series: dict[str, list[str] | None]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    extra = _extra_labels(gpu)
    queries = _queries(dashboard)
    assert len(queries) >= len(dashboard["panels"]) >= 8
    for where, query in queries:
        found = LABEL_VALUES.match(query)
        if found:  # label_values(selector, label): the label must be on the selector's series
            query = found["selector"] or ""
            (name,) = _selectors(query)
            assert found["label"] in {*(series.get(name) or ()), *extra}, where
        assert _problems(query, series, extra) == [], where


def _selectors(expr: str) -> list[str]:
    names: list[str] = []
    for var in GRAFANA_RANGES:
        expr = expr.replace(var, "5m")

    def add(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=add)
    return names


def test_the_dashboard_shows_requests_latency_errors_versions_and_drift() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in _selectors(e)}
    for metric in metric_names.declared(metric_names.APP):  # every metric relay's replica makes
        assert any(name.startswith(f"ray_{metric.name}") for name in used), metric.name
    serve = "ray_serve_num_http_requests_total", "ray_serve_num_http_error_requests_total"
    assert set(serve) <= used
    for histogram in (
        "ray_serve_http_request_latency_ms_bucket",
        "ray_relay_predict_latency_ms_bucket",
    ):
        quantiles = {
            float(m)
            for e in exprs
            if histogram in e
            for m in re.findall(r"histogram_quantile\(([\d.]+)", e)
        }
        assert {0.5, 0.95, 0.99} <= quantiles, histogram
    per_version = [e for e in exprs if "ray_relay_predictions_total" in e and "model_version" in e]
    assert per_version, "no per-version split"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_the_dashboard_ships_as_a_configmap_grafanas_sidecar_imports(
    built: list[dict[str, Any]],
) -> None:
    config_map = by_kind(built, "ConfigMap", "relay-endpoint-dashboard")  # no hash suffix
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"relay-endpoint.json": DASHBOARD.read_text()}


def _allowed(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int) -> bool:
    """Whether NetworkPolicies in relay's namespace let `src` open a TCP connection to `dst`'s
    `port` (both directions: egress only binds pods of that namespace)."""

    def peer(rule_peers: list[dict[str, Any]] | None, pod: Pod) -> bool:
        if not rule_peers:
            return True
        for entry in rule_peers:
            if "ipBlock" in entry:
                continue  # no pod is addressed by a CIDR here
            ns = entry.get("namespaceSelector")
            in_ns = (
                selects(ns, pod.namespace_labels)
                if ns is not None
                else (pod.namespace == NAMESPACE)
            )
            if in_ns and selects(entry.get("podSelector") or {}, pod.labels):
                return True
        return False

    def on_port(rule_ports: list[dict[str, Any]] | None) -> bool:
        if not rule_ports:
            return True
        for p in rule_ports:
            if p.get("protocol", "TCP") != "TCP":
                continue
            want = p.get("port")
            if want is None:
                return True
            number = dst.ports().get(want) if isinstance(want, str) else want
            if number is not None and number <= port <= p.get("endPort", number):
                return True
        return False

    def direction(kind: str, pod: Pod, other: Pod) -> bool:
        if pod.namespace != NAMESPACE:
            return True
        key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        binding = [
            p
            for p in policies
            if kind in p["spec"].get("policyTypes", ["Ingress"])
            and selects(p["spec"]["podSelector"], pod.labels)
        ]
        if not binding:
            return True
        return any(
            peer(rule.get(peers), other) and on_port(rule.get("ports"))
            for p in binding
            for rule in p["spec"].get(key) or []
        )

    return direction("Egress", src, dst) and direction("Ingress", dst, src)


def test_the_network_policy_lets_prometheus_reach_the_metrics_port_and_nothing_else(
    gpu: list[dict[str, Any]],
) -> None:
    policies = [o for o in gpu if o["kind"] == "NetworkPolicy"]
    others = [p for p in policies if p["metadata"]["name"] != "prometheus-scrape"]
    assert len(others) == len(policies) - 1
    prometheus = Pod(
        "prometheus",
        {  # what Prometheus Operator puts on the pods of a Prometheus named k8s
            "app.kubernetes.io/name": "prometheus",
            "app.kubernetes.io/managed-by": "prometheus-operator",
            "app.kubernetes.io/instance": "k8s",
            "operator.prometheus.io/name": "k8s",
        },
        {},
        namespace="monitoring",
    )
    grafana = Pod("grafana", {"app.kubernetes.io/name": "grafana"}, {}, namespace="monitoring")
    impostor = Pod(
        "self-named", {"app.kubernetes.io/name": "prometheus"}, {}, namespace="monitoring"
    )
    inside = pods(gpu)
    sources = [prometheus, grafana, impostor, *inside]
    ports = {n for pod in inside for n in pod.ports().values()} | {443, 52365, 9090}
    matrix = {(s.name, d.name, port) for s in sources for d in inside for port in ports}

    def reachable(with_policies: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
        by_name = {p.name: p for p in sources}
        return {
            (s, d, port)
            for s, d, port in matrix
            if _allowed(with_policies, by_name[s], by_name[d], port)
        }

    metrics_port = {p.ports()[_endpoint(gpu)["port"]] for p in inside if p.ray is not None}
    (scrape,) = metrics_port
    added = reachable(policies) - reachable(others)
    assert added == {("prometheus", p.name, scrape) for p in inside if p.ray is not None}


def test_relay_k8s_validate_passes_a_render_and_fails_an_unknown_pod_monitor_field(
    tmp_path: Path,
) -> None:
    kuberay_crds()
    runner = CliRunner()
    out = tmp_path / "out"
    done = runner.invoke(app, ["k8s", "render", str(CI_CONFIG), "--output", str(out)])
    assert done.exit_code == 0, done.output
    objects = [d for d in yaml.safe_load_all((out / "manifests.yaml").read_text()) if d]
    assert {"PodMonitor", "ConfigMap"} <= {o["kind"] for o in objects}
    done = runner.invoke(app, ["k8s", "validate", str(out)])
    assert done.exit_code == 0, done.output
    by_kind(objects, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "15s"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(objects))
    done = runner.invoke(app, ["k8s", "validate", str(bad)])
    assert done.exit_code == 2, done.output
    assert "PodMonitor/relay-ray" in done.output and "scrapeEvery" in done.output
