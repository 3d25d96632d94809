"""The model card: one markdown page per registered version (data, lineage, metrics, gates,
limitations), logged beside the weights and as the version's description.

Rendered from plain records (dataset meta, spec, metrics, per-group metrics, the gate record
and lineage ids), so it says only what the pipeline measured.
"""

from __future__ import annotations

import json
from typing import Any

from cluster.config import RelayConfig, Role
from cluster.tracking.links import run_fragment
from jobs.gates import report

PII_POLICY = {"drop": "dropped", "hash": "keyed-hashed (HMAC-SHA256)"}


def render(
    cfg: RelayConfig,
    meta: dict[str, Any],
    spec: dict[str, Any],
    metrics: dict[str, float],
    groups: dict[str, dict[str, dict[str, float | None]]],
    gates: dict[str, Any],
    lineage: dict[str, str],
    experiment_id: str | None = None,
) -> str:
    """The card's markdown; with `experiment_id`, each run id links to its run in the UI."""
    status = "promoted to @" + cfg.serve.alias if gates["promoted"] else "rejected (not served)"
    counts = meta["counts"]
    lines = [
        f"# Model card: {gates['model_name']} version {gates['model_version']}",
        "",
        f"**Status:** {status}. **Task:** {spec['task']} of `{spec['features']['label']['name']}`.",
        "",
        "## Data",
        f"- Dataset `{meta['digest'][:16]}…` from {cfg.data.source.kind} source, "
        f"{counts.get('rows_in', 0):,} rows in, {counts.get('rows_rejected', 0):,} quarantined "
        f"({meta['reject_rate']:.2%}).",
        f"- Splits {split_words(meta['split'])}: train {counts.get('rows_train', 0):,}, "
        f"val {counts.get('rows_val', 0):,}, test {counts.get('rows_test', 0):,}.",
        f"- Inputs: {', '.join(c['name'] for c in spec['input_schema'])}.",
        f"- Personal data: declared PII columns {_names(cfg, Role.pii)} are "
        f"{PII_POLICY[cfg.etl.pii]}; "
        f"undeclared PII found by the scan: {_findings(meta['pii_findings'])}.",
        f"- Sensitive columns (kept out of the inputs, used to measure fairness): "
        f"{_names(cfg, Role.sensitive)}.",
        "",
        "## Lineage",
        *(f"- {key}: {_run(value, experiment_id)}" for key, value in lineage.items() if value),
        "",
        "## Training",
        f"- Family: {spec.get('family', 'mlp')}"
        + (
            f" ({spec['library']['name']} {spec['library']['version']})"
            if "library" in spec
            else ""
        ),
        f"- Hyper-parameters: {_values(spec['hyperparameters'])}",
        f"- Architecture: {_values(spec['architecture'])}",
        "",
        "## Metrics (held-out test split)",
        "Plots (ROC, calibration, confusion matrix or residuals): artifacts `plots/` of the "
        "evaluate run; learning curves: artifact of the tune run.",
        "",
        "| metric | value |",
        "|---|---:|",
        *(
            f"| {k.removeprefix('test_')} | {report.number(v)} |"
            for k, v in sorted(metrics.items())
        ),
        "",
    ]
    for column, by_group in groups.items():
        names = sorted({k for values in by_group.values() for k in values})
        lines += [
            f"## Per-group metrics: {column}",
            "| group | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
            *(
                f"| {group} | " + " | ".join(report.number(values.get(n)) for n in names) + " |"
                for group, values in by_group.items()
            ),
            "",
        ]
    lines += [
        "## Gates",
        report.markdown(gates),
        "",
        "## Limitations",
        *(f"- {item}" for item in limitations(cfg, counts, groups)),
    ]
    return "\n".join(lines) + "\n"


def limitations(
    cfg: RelayConfig, counts: dict[str, int], groups: dict[str, dict[str, dict[str, float | None]]]
) -> list[str]:
    """What the numbers above do not show, stated from this run's own facts."""
    items = [
        f"Metrics come from one held-out split of {counts.get('rows_test', 0):,} rows, "
        "without confidence intervals.",
        "Fairness is measured only for the columns declared `sensitive`; proxies among the "
        "inputs are not searched for.",
    ]
    if cfg.data.source.kind == "synthetic":
        items.append("Trained on synthetic data: the figures say nothing about real applicants.")
    if cfg.gates.fairness:
        small = sorted(
            f"{column}={group}"
            for column, by_group in groups.items()
            for group, values in by_group.items()
            if (values.get("n") or 0) < cfg.gates.fairness.min_group_size
        )
        if small:
            items.append(
                f"Groups under {cfg.gates.fairness.min_group_size} test rows are reported but "
                f"not gated: {', '.join(small)}."
            )
    else:
        items.append("The fairness gate is off (gates.fairness: null).")
    return items


def _names(cfg: RelayConfig, role: Role) -> str:
    found = [c.name for c in cfg.data.by_role(role)]
    return ", ".join(f"`{n}`" for n in found) if found else "none"


def split_words(split: dict[str, Any]) -> str:
    """How the rows were split, as dataset.json records it (datasets before #17: by id hash)."""
    if split.get("by") == "time":
        return (
            f"by time (`{split['column']}`: val from {split['val_from']}, test from "
            f"{split['test_from']})"
        )
    key, column = split.get("key", "id"), split.get("key_column")
    return f"by {key} hash" + (f" (`{column}`)" if column else "")


def _findings(findings: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in sorted(findings.items())) or "none"


def _run(run_id: str, experiment_id: str | None) -> str:
    return (
        f"[`{run_id}`]({run_fragment(experiment_id, run_id)})" if experiment_id else f"`{run_id}`"
    )


def _values(settings: dict[str, Any]) -> str:
    """`lr` 0.003, `depth` 2: values, not a dict's repr; nested ones (a list of widths) as
    they are written in a config."""

    def shown(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return json.dumps(value) if isinstance(value, list | dict) else str(value)
        return report.number(value)

    return ", ".join(f"`{k}` {shown(v)}" for k, v in settings.items()) or "none"
