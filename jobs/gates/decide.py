"""Promotion: gather what the gates need, against the current champion, and decide.

The champion is loaded with its sha256 checked and scored on the NEW test split, so the
must-beat comparison uses the same held-out rows; its spec's training-data reference gives
the drift baseline. Nothing here moves an alias: `jobs.register` applies the decision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from cluster.config import PRIMARY_METRIC, TASK_METRICS, RelayConfig, Role
from cluster.tracking.registry import ModelRef, aliased, load_verified
from jobs.artifacts import PROFILE, Dataset, Evaluation
from jobs.gates import checks
from jobs.gates.checks import GateResult
from jobs.metrics.task import metrics_of, true_values
from serving import drift
from serving.model import Predictor


@dataclass
class Champion:
    ref: ModelRef
    spec: dict[str, Any]
    metrics: dict[str, float] | None  # on the new test split; None: not comparable


@dataclass
class Decision:
    results: list[GateResult]
    champion: ModelRef | None

    @property
    def promoted(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": [r.as_dict() for r in self.results],
            "champion": asdict(self.champion) if self.champion else None,
        }

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> Decision:
        """A decision recorded before an interrupt: a resumed register applies it unchanged."""
        champion = recorded["champion"]
        return cls(
            results=[GateResult(**r) for r in recorded["results"]],
            champion=ModelRef(**champion) if champion else None,
        )


def decide(cfg: RelayConfig, client: Any, dataset: Dataset, evaluation: Evaluation) -> Decision:
    champion = current_champion(cfg, client, dataset)
    return Decision(
        results=[
            *data_gates(cfg, dataset, champion),
            *model_gates(cfg, evaluation, champion),
            *fairness_gates(cfg, evaluation),
            *pii_gates(cfg, dataset),
        ],
        champion=champion.ref if champion else None,
    )


def current_champion(cfg: RelayConfig, client: Any, dataset: Dataset) -> Champion | None:
    """The version holding serve.alias, verified, with its metrics on this run's test rows."""
    ref = aliased(client, cfg.model.name, cfg.serve.alias)
    if ref is None:
        return None
    spec, state = load_verified(client, ref)
    if spec["input_schema"] != dataset.meta["input_schema"]:
        return Champion(ref, spec, None)
    test = dataset.split("test")
    output = Predictor(spec, state).predict_table(test)
    return Champion(ref, spec, metrics_of(spec, true_values(spec, test), output))


def data_gates(cfg: RelayConfig, dataset: Dataset, champion: Champion | None) -> list[GateResult]:
    g = cfg.gates.data
    meta = dataset.meta
    profile = json.loads((dataset.path / PROFILE).read_text())
    rates = {
        name: p["nulls"] / max(p["count"] + p["nulls"], 1)
        for name, p in profile.items()
        if name in {c.name for c in cfg.data.columns}
    }
    out = [
        checks.reject_rate(meta["reject_rate"], g.max_reject_rate),
        checks.null_rate(rates, g.max_null_rate, g.max_null_rate_by_column),
        checks.schema_change(
            champion.spec["input_schema"] if champion else None,
            meta["input_schema"],
            g.schema_change,
        ),
    ]
    if g.drift:
        reference = champion.spec.get("reference") if champion else None
        scores = (
            drift.scores(reference, dataset.split("train"), g.drift.method) if reference else None
        )
        out.append(checks.drift(scores, g.drift.method, g.drift.max))
    return out


def model_gates(
    cfg: RelayConfig, evaluation: Evaluation, champion: Champion | None
) -> list[GateResult]:
    g = cfg.gates.model
    out = checks.metric_bounds(evaluation.metrics, g.min, g.max)
    if g.beat_champion:
        metric = g.beat_champion.metric or PRIMARY_METRIC[cfg.model.task]
        out.append(
            checks.beat_champion(
                metric,
                evaluation.metrics.get(metric),
                champion.metrics.get(metric) if champion and champion.metrics else None,
                g.beat_champion.margin,
                TASK_METRICS[cfg.model.task][metric],
                comparable=champion is None or champion.metrics is not None,
            )
        )
    return out


def fairness_gates(cfg: RelayConfig, evaluation: Evaluation) -> list[GateResult]:
    return group_checks(cfg, evaluation.spec, evaluation.groups)


def group_checks(
    cfg: RelayConfig, spec: dict[str, Any], by_column: dict[str, dict[str, dict[str, Any]]]
) -> list[GateResult]:
    """The fairness gates on metrics per group (`jobs.metrics.groups`): the test split's at
    promotion, the labelled live predictions' in `relay monitor`."""
    f = cfg.gates.fairness
    if f is None:
        return []
    classification = cfg.model.task == "classification"
    metric = f.metric or ("tpr" if classification else "mean_prediction")
    label = spec["features"]["label"]
    scale = 1.0 if classification else float(label["std"])
    out = []
    for column, groups in by_column.items():
        out.append(checks.group_gap(column, groups, metric, f.max_gap, f.min_group_size, scale))
        if classification:
            out.append(
                checks.group_gap(
                    column,
                    groups,
                    "positive_rate",
                    f.max_parity_difference,
                    f.min_group_size,
                    name="parity_difference",
                )
            )
    return out


def pii_gates(cfg: RelayConfig, dataset: Dataset) -> list[GateResult]:
    if not cfg.gates.pii.enabled:
        return []
    findings = dataset.meta["pii_findings"]
    flagged = {key.partition(":")[0] for key in findings}
    declared = {c.name for c in cfg.data.by_role(Role.pii)}
    inputs = [c["name"] for c in dataset.meta["input_schema"]]
    return [checks.pii_findings(findings), checks.pii_input_schema(inputs, declared | flagged)]
