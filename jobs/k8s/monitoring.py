"""A structural schema for Prometheus Operator's PodMonitor (`monitoring.coreos.com/v1`).

`relay k8s validate` fails a kind it has no schema for, and the operator's CRDs are not on
this machine (the one PyPI package built from them brings a Kubernetes client along for one
kind). So this schema is written from the operator's API reference (v0.80) and covers what a
plain HTTP scrape uses: pod and namespace selection; per endpoint the port (name or number),
path, scheme, params, interval and timeout, label and timestamp handling, relabelings; the
per-scrape limits. Unknown fields are rejected, as the API server's strict field validation
does, and so is any valid field left out here (credentials: basicAuth, authorization, oauth2,
bearerTokenSecret, tlsConfig; native histograms; scrape protocols): add it from the reference
when a manifest needs it. Other kinds of the group (ServiceMonitor, PrometheusRule, ...) have
no schema here, so they fail as unknown kinds.
"""

from __future__ import annotations

from typing import Any

GROUP = "monitoring.coreos.com"
# The operator's Duration: Prometheus' duration syntax ("30s", "1m30s", "0").
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$"
)
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# The relabeling actions, in both spellings the operator accepts.
ACTIONS = [
    f(action)
    for action in ("replace", "keep", "drop", "hashMod", "labelMap", "labelDrop", "labelKeep",
                   "lowercase", "uppercase", "keepEqual", "dropEqual")
    for f in (str.lower, lambda a: a[0].upper() + a[1:])
]  # fmt: skip


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: the listed properties only."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}
STRINGS = {"type": "array", "items": STRING}
LABEL_SELECTOR = _object(
    {
        "matchLabels": {"type": "object", "additionalProperties": STRING},
        "matchExpressions": {
            "type": "array",
            "items": _object(
                {
                    "key": STRING,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": STRINGS,
                },
                ("key", "operator"),
            ),
        },
    }
)
RELABELINGS = {
    "type": "array",
    "items": _object(
        {
            "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": LABEL_NAME}},
            "separator": STRING,
            "targetLabel": STRING,
            "regex": STRING,
            "modulus": COUNT,
            "replacement": STRING,
            "action": {"enum": ACTIONS},
        }
    ),
}
ENDPOINT = _object(
    {
        "port": STRING,
        "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535},
        "targetPort": {"type": ["integer", "string"]},  # deprecated: port or portNumber
        "path": STRING,
        "scheme": {"enum": ["http", "https"]},
        "params": {"type": "object", "additionalProperties": STRINGS},
        "interval": {"type": "string", "pattern": DURATION},
        "scrapeTimeout": {"type": "string", "pattern": DURATION},
        "honorLabels": BOOLEAN,
        "honorTimestamps": BOOLEAN,
        "trackTimestampsStaleness": BOOLEAN,
        "enableHttp2": BOOLEAN,
        "followRedirects": BOOLEAN,
        "filterRunning": BOOLEAN,
        "proxyUrl": STRING,
        "relabelings": RELABELINGS,
        "metricRelabelings": RELABELINGS,
    }
)
POD_MONITOR = _object(
    {
        "apiVersion": {"const": f"{GROUP}/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},  # ObjectMeta: validate.py checks it as for every CRD
        "spec": _object(
            {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": _object({"any": BOOLEAN, "matchNames": STRINGS}),
                "podMetricsEndpoints": {"type": "array", "items": ENDPOINT},
                "jobLabel": STRING,
                "podTargetLabels": STRINGS,
                "attachMetadata": _object({"node": BOOLEAN}),
                "sampleLimit": COUNT,
                "targetLimit": COUNT,
                "labelLimit": COUNT,
                "labelNameLengthLimit": COUNT,
                "labelValueLengthLimit": COUNT,
                "keepDroppedTargets": COUNT,
                "scrapeClass": {"type": "string", "minLength": 1},
            },
            ("selector",),
        ),
    },
    ("apiVersion", "kind", "spec"),
)
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {(f"{GROUP}/v1", "PodMonitor"): POD_MONITOR}
