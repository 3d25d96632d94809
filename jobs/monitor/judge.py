"""One served version's window, judged: volume, latency, each input's drift and empty share,
the answers' drift. Plain tables and the version's spec in, a report out (no I/O): the drift
scores and the checks are the promotion gates' own (`serving.drift`, `jobs.gates.checks`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import RelayConfig, Role
from jobs.gates import checks
from jobs.gates.checks import GateResult
from jobs.gates.decide import group_checks
from jobs.metrics.groups import group_metrics
from jobs.metrics.task import metrics_of, true_values
from jobs.monitor.feedback import KEYS
from serving import drift
from serving.inference_log import PROBABILITY, inputs_of


@dataclass(frozen=True)
class Limits:
    """The thresholds in force: `monitor:` values, else the matching `gates:` ones."""

    method: str
    max_drift: float
    max_prediction_drift: float
    max_null_rate: float
    max_latency_p99_ms: float | None
    max_drop_rate: float
    min_predictions: int
    max_refusal_rate: float | None = None
    model_min: dict[str, float] = field(default_factory=dict)  # gates.model.min (test_<metric>)
    model_max: dict[str, float] = field(default_factory=dict)


@dataclass
class VersionReport:
    version: int
    predictions: int
    requests: int
    roles: dict[str, int]
    latency_ms: dict[str, float]
    features: dict[str, dict[str, float | None]]  # name -> drift, null_rate
    prediction_drift: dict[str, float]
    judged: bool  # enough predictions to judge drift and empty shares
    labelled: int = 0  # predictions with an outcome (relay feedback)
    live: dict[str, float] = field(default_factory=dict)  # the task's metrics on those
    groups: dict[str, Any] = field(default_factory=dict)  # sensitive column -> group metrics
    results: list[GateResult] = field(default_factory=list)

    @property
    def alerts(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "results"},
            "results": [r.as_dict() for r in self.results],
        }


def live_metrics(
    table: pa.Table,
    outcomes: pa.Table | None,
    spec: dict[str, Any],
    cfg: RelayConfig | None = None,
) -> tuple[int, dict[str, float], dict[str, Any]]:
    """(labelled predictions, the task's metrics on them, with `cfg` the metrics per group of
    each sensitive column the outcomes carry): the evaluation's code, on the logged answers and
    the outcomes `relay feedback` joined to them. A column's groups leave out the outcomes that
    did not give its value."""
    if outcomes is None:
        return 0, {}, {}
    answers = [n for n in table.column_names if n == "prediction" or n.startswith(PROBABILITY)]
    joined = table.select([*KEYS, *answers]).join(outcomes, keys=KEYS, join_type="inner")
    label = spec["features"]["label"]
    if "classes" in label:  # an outcome this version cannot score is not a metric of it
        joined = joined.filter(pc.is_in(joined["label"], pa.array(label["classes"])))
    if joined.num_rows == 0:
        return 0, {}, {}
    truth = true_values(spec, pa.table({label["name"]: joined["label"]}))
    if "classes" in label:
        # float32, as the model answered (the log keeps doubles): the evaluation's scores saw
        # the same values, which sum to one within float32's precision
        columns = [joined[f"{PROBABILITY}{c}"].to_numpy() for c in label["classes"]]
        output = np.column_stack(columns).astype(np.float32)
    else:
        output = joined["prediction"].to_numpy()
    metrics = metrics_of(spec, truth, output)
    groups: dict[str, Any] = {}
    for column in cfg.data.by_role(Role.sensitive) if cfg else []:
        if column.name in joined.column_names:
            given = pc.is_valid(joined[column.name]).to_numpy(zero_copy_only=False)
            part = joined.select([column.name]).filter(pa.array(given))
            groups |= group_metrics(cfg, spec, part, truth[given], output[given])
    return joined.num_rows, {k.removeprefix("test_"): v for k, v in metrics.items()}, groups


def judge(
    table: pa.Table,
    spec: dict[str, Any],
    limits: Limits,
    outcomes: pa.Table | None = None,
    cfg: RelayConfig | None = None,
) -> VersionReport:
    """The report of one version's logged rows (and their outcomes, when there are any; with
    `cfg`, the fairness gates on them too)."""
    inputs = inputs_of(table, spec)
    per_request = table.group_by("request_id").aggregate([("latency_ms", "max")])
    # a shadow's time is its batch's, off the request path: no client waited on it
    answered = table.filter(pc.not_equal(table["role"], "shadow"))
    timed = answered.group_by("request_id").aggregate([("latency_ms", "max")])
    latencies = timed["latency_ms_max"].to_numpy()
    roles = table.group_by("role").aggregate([("role", "count")]).to_pylist()
    judged = table.num_rows >= limits.min_predictions
    scores = drift.scores(spec["reference"], inputs, limits.method) if judged else {}
    nulls = {c: inputs[c].null_count / max(inputs.num_rows, 1) for c in inputs.column_names}
    answers = spec.get("prediction_reference")
    answer_scores = drift.scores(answers, table, limits.method) if judged and answers else {}
    report = VersionReport(
        version=int(table["model_version"][0].as_py()),
        predictions=table.num_rows,
        requests=per_request.num_rows,
        roles={r["role"]: r["role_count"] for r in roles},
        latency_ms={
            f"p{q}": float(np.percentile(latencies, q)) if latencies.size else 0.0
            for q in (50, 95, 99)
        },
        features={
            name: {"drift": scores.get(name), "null_rate": nulls.get(name)}
            for name in sorted(set(scores) | set(nulls))
        },
        prediction_drift=answer_scores,
        judged=judged,
    )
    if judged:
        report.results += [
            _named(checks.drift(scores, limits.method, limits.max_drift), "features.drift"),
            _named(checks.null_rate(nulls, limits.max_null_rate, {}), "features.null_rate"),
        ]
        if answers:
            found = checks.drift(answer_scores, limits.method, limits.max_prediction_drift)
            report.results.append(_named(found, "predictions.drift"))
    report.labelled, report.live, report.groups = live_metrics(table, outcomes, spec, cfg)
    if report.labelled >= limits.min_predictions and cfg is not None:
        for found in group_checks(cfg, spec, report.groups):
            report.results.append(_named(found, f"live.{found.gate}"))
    if report.labelled >= limits.min_predictions:
        for name, bound in limits.model_min.items():
            value = report.live.get(name.removeprefix("test_"))
            report.results.append(checks.at_least(f"live.{name}", value, bound, f"live {name}"))
        for name, bound in limits.model_max.items():
            value = report.live.get(name.removeprefix("test_"))
            if value is None:
                report.results.append(
                    GateResult(f"live.{name}", False, None, bound, f"live {name} not computed")
                )
            else:
                report.results.append(checks.at_most(f"live.{name}", value, bound, f"live {name}"))
    if limits.max_latency_p99_ms is not None and latencies.size:
        report.results.append(
            checks.at_most(
                "latency.p99_ms", report.latency_ms["p99"], limits.max_latency_p99_ms, "p99 ms"
            )
        )
    return report


def drop_check(logged: int, dropped: int, lost: int, limit: float) -> GateResult:
    """The share of answered records the inference log lost (all versions: drops have none):
    those dropped and counted, and those of replicas killed before writing them."""
    missing = dropped + lost
    rate = missing / max(logged + missing, 1)
    killed = f" ({lost} by replicas killed before writing them)" if lost else ""
    return checks.at_most(
        "log.drop_rate", rate, limit, f"lost {missing} of {logged + missing}{killed}"
    )


def refusal_check(answered: int, refused: dict[str, int], limit: float) -> GateResult:
    """The share of prediction requests the endpoint refused (all versions: refused before
    one is chosen)."""
    count = sum(refused.values())
    rate = count / max(answered + count, 1)
    statuses = ", ".join(f"{n}x{s}" for s, n in sorted(refused.items()))
    reason = f"refused {count} of {answered + count} requests" + (f" ({statuses})" if count else "")
    return checks.at_most("requests.refusal_rate", rate, limit, reason)


def _named(result: GateResult, gate: str) -> GateResult:
    return dataclasses.replace(result, gate=gate)
