"""Promotion gates as pure functions: plain values in, one `GateResult` out.

No Ray, no MLflow, no files: `jobs.gates.decide` gathers the inputs (dataset meta, metrics, the
champion's scores) and decides; these functions only compare, so each is unit-tested alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome; `reason` says by how much it passed or failed."""

    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str
    warning: bool = False  # passed, but a person should look (schema change in warn mode ...)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_most(gate: str, value: float, limit: float, what: str) -> GateResult:
    passed = value <= limit
    sign = "<=" if passed else ">"
    return GateResult(gate, passed, value, limit, f"{what} {value:.4g} {sign} {limit:.4g}")


def at_least(gate: str, value: float | None, limit: float, what: str) -> GateResult:
    if value is None or math.isnan(value):
        return GateResult(gate, False, None, limit, f"{what} was not computed")
    passed = value >= limit
    sign = ">=" if passed else "<"
    return GateResult(gate, passed, value, limit, f"{what} {value:.4g} {sign} {limit:.4g}")


def reject_rate(rate: float, limit: float) -> GateResult:
    return at_most("data.reject_rate", rate, limit, "reject rate")


def null_rate(rates: dict[str, float], default: float, per_column: dict[str, float]) -> GateResult:
    """Every column's share of empty values under its limit; value is the worst column's."""
    if not rates:
        return GateResult("data.null_rate", True, 0.0, default, "no columns")
    limits = {name: per_column.get(name, default) for name in rates}
    over = {n: r for n, r in rates.items() if r > limits[n]}
    worst = max(over or rates, key=lambda n: rates[n] - limits[n])
    if over:
        listed = ", ".join(f"{n} {over[n]:.2%} > {limits[n]:.2%}" for n in sorted(over))
        reason = f"null rate too high: {listed}"
    else:
        reason = f"worst null rate {worst} {rates[worst]:.2%} <= {limits[worst]:.2%}"
    return GateResult(
        "data.null_rate", not over, rates[worst], limits[worst], reason, detail=dict(rates)
    )


def drift(scores: dict[str, float] | None, method: str, limit: float) -> GateResult:
    """Per-feature drift against the champion's training data; None: no champion reference."""
    gate = f"data.drift.{method}"
    if scores is None:
        return GateResult(gate, True, None, limit, "no champion training data to compare against")
    if not scores:
        return GateResult(gate, True, 0.0, limit, "no feature shared with the champion")
    worst = max(scores, key=lambda n: scores[n])
    over = sorted((n for n, s in scores.items() if s > limit), key=lambda n: -scores[n])
    if over:
        listed = ", ".join(f"{n} {scores[n]:.3f}" for n in over)
        reason = f"{method} over {limit:g}: {listed}"
    else:
        reason = f"largest {method} {scores[worst]:.3f} ({worst}) <= {limit:g}"
    return GateResult(gate, not over, scores[worst], limit, reason, detail=dict(scores))


def schema_change(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], mode: str
) -> GateResult:
    """The input schema against the champion's: columns added, removed or redefined."""
    gate = "data.schema"
    if old is None:
        return GateResult(gate, True, None, None, "no champion: nothing to compare against")
    before, after = {c["name"]: c for c in old}, {c["name"]: c for c in new}
    changes = [f"+{n}" for n in after if n not in before]
    changes += [f"-{n}" for n in before if n not in after]
    changes += [f"~{n}" for n in after if n in before and after[n] != before[n]]
    if not changes:
        return GateResult(gate, True, 0.0, 0.0, "same input schema as the champion")
    reason = f"input schema changed: {', '.join(changes)}"
    if mode == "warn":
        return GateResult(gate, True, float(len(changes)), 0.0, reason + " (warn)", warning=True)
    return GateResult(gate, False, float(len(changes)), 0.0, reason)


def metric_bounds(
    metrics: dict[str, float], minimum: dict[str, float], maximum: dict[str, float]
) -> list[GateResult]:
    out = [at_least(f"model.min.{k}", metrics.get(k), v, k) for k, v in minimum.items()]
    for key, limit in maximum.items():
        value = metrics.get(key)
        out.append(
            GateResult(f"model.max.{key}", False, None, limit, f"{key} was not computed")
            if value is None
            else at_most(f"model.max.{key}", value, limit, key)
        )
    return out


def beat_champion(
    metric: str,
    new: float | None,
    champion: float | None,
    margin: float,
    higher_is_better: bool,
    comparable: bool = True,
) -> GateResult:
    """New minus champion (sign flipped for lower-is-better metrics) must be >= margin."""
    gate = "model.beat_champion"
    if not comparable:
        return GateResult(
            gate,
            True,
            None,
            margin,
            "not comparable: the champion's input schema differs",
            warning=True,
        )
    if champion is None:
        return GateResult(gate, True, None, margin, "first model: no champion to beat")
    if new is None or math.isnan(new) or math.isnan(champion):
        return GateResult(gate, False, None, margin, f"{metric} was not computed")
    gain = (new - champion) if higher_is_better else (champion - new)
    passed = gain >= margin
    reason = (
        f"{metric} {new:.4f} vs champion {champion:.4f}: improvement {gain:+.4f} "
        f"{'>=' if passed else '<'} margin {margin:+.4f}"
    )
    return GateResult(gate, passed, gain, margin, reason, detail={"new": new, "champion": champion})


def group_gap(
    column: str,
    groups: dict[str, dict[str, float | None]],
    metric: str,
    limit: float,
    min_size: int,
    scale: float = 1.0,
    name: str | None = None,
) -> GateResult:
    """Largest minus smallest `metric` over groups with at least `min_size` rows.

    `scale` divides the gap (regression: the label's std, so the limit is unit-free).
    """
    gate = f"fairness.{column}.{name or metric + '_gap'}"
    values = {
        g: m[metric] for g, m in groups.items() if m["n"] >= min_size and m.get(metric) is not None
    }
    small = sorted(g for g, m in groups.items() if m["n"] < min_size)
    note = f" ({', '.join(small)} under {min_size} rows: not gated)" if small else ""
    if len(values) < 2:
        return GateResult(
            gate, True, 0.0, limit, f"fewer than two groups to compare{note}", detail=values
        )
    high, low = max(values, key=lambda g: values[g]), min(values, key=lambda g: values[g])
    gap = (values[high] - values[low]) / scale
    passed = gap <= limit
    reason = (
        f"{metric} {high} {values[high]:.3f} vs {low} {values[low]:.3f}: gap {gap:.3f} "
        f"{'<=' if passed else '>'} {limit:g}{note}"
    )
    return GateResult(gate, passed, gap, limit, reason, detail=values)


def pii_findings(findings: dict[str, int]) -> GateResult:
    """The ETL scan's undeclared PII (`column:kind` -> values) in the published dataset."""
    total = float(sum(findings.values()))
    if not findings:
        return GateResult("pii.undeclared", True, 0.0, 0.0, "no undeclared PII found")
    listed = ", ".join(f"{k} ({v} values)" for k, v in sorted(findings.items()))
    return GateResult(
        "pii.undeclared", False, total, 0.0, f"undeclared PII: {listed}", detail=dict(findings)
    )


def pii_input_schema(inputs: list[str], pii_columns: set[str]) -> GateResult:
    """No declared PII column, and no column the scan flagged, among the model's inputs."""
    found = sorted(set(inputs) & pii_columns)
    if found:
        return GateResult(
            "pii.input_schema",
            False,
            float(len(found)),
            0.0,
            f"PII column(s) in the model's input schema: {', '.join(found)}",
        )
    return GateResult("pii.input_schema", True, 0.0, 0.0, "no PII column in the input schema")
