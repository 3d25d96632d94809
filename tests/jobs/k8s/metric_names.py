"""The Prometheus series relay's endpoint exports, found from the code that defines them.

Run as `python -m tests.jobs.k8s.metric_names` (a process of its own: Ray's exporter sets a
process-wide meter provider), it prints one JSON object, {series name: label names or null}:
the metrics serving/app.py and Ray Serve declare (names and tag keys read from their source;
Serve's per-protocol ingress family made by its own class), each exported once through Ray's
own OpenTelemetry-to-Prometheus recorder, so the `ray_` prefix and the `_total`, `_bucket`,
`_sum` and `_count` suffixes are the exporter's, not assumed. Ray is imported, never started.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "serving" / "app.py"
KINDS = ("Counter", "Gauge", "Histogram")
METRIC_MODULES = ("ray.serve", "ray.util")  # each has a `metrics` module of these classes


@dataclass(frozen=True)
class Declared:
    kind: str  # Counter, Gauge or Histogram
    name: str
    tags: tuple[str, ...] | None  # None: the source does not say (a run-time value)
    serve: bool  # made with ray.serve.metrics, which adds the replica's Serve tags


def declared(path: Path) -> list[Declared]:
    """Every metric a module makes with a name its source spells out."""
    tree = ast.parse(path.read_text())
    aliases = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in METRIC_MODULES
        for alias in node.names
        if alias.name == "metrics"
    }
    found = []
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not (
            isinstance(node, ast.Call)
            and isinstance(func, ast.Attribute)
            and func.attr in KINDS
            and isinstance(func.value, ast.Name)
            and func.value.id in aliases
        ):
            continue
        name = _value(node.args[0] if node.args else _keyword(node, "name"), tree)
        if not isinstance(name, str):
            continue  # an f-string: Serve's ingress family, see ingress_declared()
        tag_node = _keyword(node, "tag_keys")
        tags = () if tag_node is None else _value(tag_node, tree)
        known = isinstance(tags, tuple) and all(isinstance(t, str) for t in tags)
        serve = aliases[func.value.id] == "ray.serve"
        found.append(Declared(func.attr, name, tags if known else None, serve))
    return found


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _value(node: ast.expr | None, tree: ast.Module) -> Any:
    """A literal, or a module-level or imported constant; None for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_value(item, tree) for item in node.elts)
    if not isinstance(node, ast.Name):
        return None
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == node.id for t in statement.targets
        ):
            return _value(statement.value, tree)
    for imported in ast.walk(tree):
        if isinstance(imported, ast.ImportFrom) and imported.module:
            for alias in imported.names:
                if (alias.asname or alias.name) == node.id:
                    value = getattr(importlib.import_module(imported.module), alias.name, None)
                    return tuple(value) if isinstance(value, list) else value
    return None


def ingress_declared() -> list[Declared]:
    """Serve's request family (`serve_num_{protocol}_requests`, ...), made by its own class
    for each protocol with recording stand-ins for the metric classes."""
    from ray.serve._private import request_ingress_metrics as ingress
    from ray.serve._private.common import RequestProtocol

    made: list[Declared] = []

    def recorder(kind: str) -> type:
        class Recorder:
            def __init__(self, name: str, description: str = "", tag_keys: Any = None, **_: Any):
                made.append(Declared(kind, name, tuple(tag_keys or ()), False))

            def set_default_tags(self, tags: dict[str, str]) -> Recorder:
                return self

        return Recorder

    with mock.patch.multiple(ingress.metrics, **{kind: recorder(kind) for kind in KINDS}):
        for protocol in RequestProtocol:
            if protocol is not RequestProtocol.UNDEFINED:
                ingress.RequestIngressMetrics(
                    protocol, source="proxy", node_id="n", node_ip_address="127.0.0.1"
                )
    return made


def serve_tags() -> tuple[str, ...]:
    """The tags ray.serve.metrics adds inside an application's replica."""
    from ray.serve import metrics

    replica = SimpleNamespace(app_name="app", deployment="d", replica_tag="r")
    with mock.patch.object(metrics.context, "_get_internal_replica_context", lambda: replica):
        return tuple(metrics._add_serve_metric_tags(None))


def catalogue() -> list[Declared]:
    """relay's endpoint metrics and every metric Ray Serve declares."""
    spec = importlib.util.find_spec("ray.serve")
    assert spec is not None and spec.origin is not None
    serve_files = sorted(Path(spec.origin).parent.rglob("*.py"))
    return [d for path in [APP, *serve_files] for d in declared(path)] + ingress_declared()


def exported(metrics: list[Declared]) -> dict[str, list[str] | None]:
    """{series: label names} as Ray's metrics agent exports the metrics to Prometheus."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from ray._private.telemetry.open_telemetry_metric_recorder import (
        OpenTelemetryMetricRecorder,
    )

    recorder = OpenTelemetryMetricRecorder(gauge_metric_ttl_seconds=3600)
    added = serve_tags()
    tags: dict[str, tuple[str, ...] | None] = {}
    for metric in metrics:
        if metric.name in tags:
            continue
        register = {
            "Counter": recorder.register_counter_metric,
            "Gauge": recorder.register_gauge_metric,
        }.get(metric.kind)
        if register is not None:
            register(metric.name, "")
        else:
            recorder.register_histogram_metric(metric.name, "", [1.0])
        keys = None if metric.tags is None else (added if metric.serve else ()) + metric.tags
        tags[metric.name] = keys
        recorder.set_metric_value(metric.name, {k: "x" for k in keys or ()}, 1.0)
    text = generate_latest(REGISTRY).decode()
    out: dict[str, list[str] | None] = {}
    known = {f"ray_{name}": keys for name, keys in tags.items()}
    for family in text_string_to_metric_families(text):
        if family.name not in known:
            continue
        for sample in family.samples:
            labels = None if known[family.name] is None else sorted(sample.labels)
            out[sample.name] = labels
    return out


if __name__ == "__main__":
    print(json.dumps(exported(catalogue()), sort_keys=True))
