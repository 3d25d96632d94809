"""Walk the MLflow records: from a model version (or anything that names one) back to raw files.

Targets: `models:/name@alias`, `models:/name/3`, `name/3`, a response's lineage id
(`name/3/<request id>`), or any run id of a pipeline (the pipeline run, a stage, a trial).
The chain is a plain dict (stable keys for `--json`), drawn as a tree or a Mermaid/DOT graph.
Its values are typed: each tag and param read declares its type (`values.decode`), times are
ISO-8601 (UTC). A target that names nothing in the store is a ConfigError naming what exists.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cluster.errors import ConfigError
from cluster.tracking.tracker import PARENT_TAG, STAGE_TAG
from cluster.tracking.values import decode
from jobs.models import families

CHAIN_KEYS = (
    "model",
    "pipeline",
    "raw_files",
    "etl",
    "dataset",
    "tune",
    "best_trial",
    "evaluation",
    "deployments",
)
# a trial's params are its hyper-parameters: the families declare their types
HYPERPARAMETER_KINDS = families.kinds()
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


def model_of(client: Any, target: str) -> tuple[str, int]:
    """(model name, version) that `target` names."""
    if target.startswith("models:/"):
        rest = target.removeprefix("models:/")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return name, int(registered(client, name, alias=alias).version)
        name, _, version = rest.partition("/")
        if version.isdigit():
            return name, int(version)
    parts = target.split("/")
    if len(parts) in (2, 3) and parts[1].isdigit():  # name/version[/request id]
        return parts[0], int(parts[1])
    if "/" not in target:
        return _model_of_run(client, target)
    raise ConfigError(
        f"lineage target {target!r}: expected models:/name@alias, name/version, "
        "a lineage id (name/version/request) or a run id"
    )


def _model_of_run(client: Any, run_id: str) -> tuple[str, int]:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        while run.data.tags.get(STAGE_TAG) != "pipeline":  # a stage or trial: go up
            run = client.get_run(run.data.tags[PARENT_TAG])
    except (MlflowException, KeyError):
        raise ConfigError(f"{run_id} is not a run of a relay pipeline in this store") from None
    register = children(client, run, "register")
    if not register:
        raise ConfigError(f"pipeline run {run.info.run_id} registered no model version")
    data = register[0].data
    return data.params["model_name"], int(data.params["model_version"])


def registered(client: Any, name: str, version: int | None = None, alias: str | None = None) -> Any:
    """Model `name`'s version `version` (or the one holding `alias`), or a ConfigError that
    says which versions and aliases exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != NOT_FOUND:
            raise
        names = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
        raise ConfigError(f"no model named {name!r} in this store; its models: {names}") from None
    aliases = dict(model.aliases or {})
    if alias is not None:
        if alias not in aliases:
            held = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items()))
            raise ConfigError(f"model {name} has no alias {alias!r}; its aliases: {held or 'none'}")
        version = int(aliases[alias])
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code != NOT_FOUND:
            raise
        found = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        listed = ", ".join(map(str, found)) or "none"
        raise ConfigError(
            f"model {name} has no version {version}; its versions: {listed}"
        ) from None


def children(client: Any, parent: Any, stage: str) -> list[Any]:
    """The `stage` runs directly under `parent` (a run object)."""
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and tags.`{STAGE_TAG}` = '{stage}'"
        ),
    )


def chain(client: Any, name: str, version: int) -> dict[str, Any]:
    """What is recorded about how model `name` v`version` came to be, and where it runs."""
    mv = registered(client, name, version)
    tags = mv.tags or {}
    pipeline = client.get_run(tags["relay.pipeline_run_id"])
    etl = client.get_run(tags["relay.etl_run_id"])
    tune = client.get_run(tags["relay.tune_run_id"])
    trial = client.get_run(mv.run_id)
    evaluation = client.get_run(tags["relay.evaluate_run_id"])
    meta = json.loads(artifact_text(client, etl.info.run_id, "dataset.json"))
    ptags = pipeline.data.tags
    return {
        "model": {
            "name": name,
            "version": int(mv.version),
            "sha256": tags.get("relay.sha256"),
            "aliases": sorted(getattr(mv, "aliases", None) or []),
            "source": mv.source,
            "family": tags.get("relay.family", "mlp"),
            # family torch: the user's module the bundle carries (None for the others)
            "module": tags.get("relay.module"),
            "module_sha256": tags.get("relay.module_sha256"),
        },
        "pipeline": {
            "run_id": pipeline.info.run_id,
            "status": pipeline.info.status,
            "git_commit": ptags.get("relay.git_commit"),
            "git_dirty": tag_of(pipeline, "relay.git_dirty", bool),
            "git_diff_sha256": ptags.get("relay.git_diff_sha256"),
            "config_digest": ptags.get("relay.config_digest"),
            "ray_job_id": ptags.get("relay.ray_job_id"),
            "ray_submission_id": ptags.get("relay.ray_submission_id"),
        },
        "raw_files": [
            {"path": m["path"], "bytes": m["bytes"], "sha256": m["sha256"]}
            for m in meta.get("manifest", [])
        ],
        "etl": {
            "run_id": etl.info.run_id,
            "rows": meta.get("counts", {}),
            "node_ids": [n for n in etl.data.tags.get("relay.node_ids", "").split(",") if n],
        },
        "dataset": {"digest": etl.data.tags.get("relay.dataset_digest")},
        "tune": {
            "run_id": tune.info.run_id,
            "trials": tag_of(tune, "relay.trials", int),
            "best_hyperparameters": tag_of(tune, "relay.best_hyperparameters", dict),
        },
        "best_trial": {
            "run_id": trial.info.run_id,
            "params": {
                k: decode(v, HYPERPARAMETER_KINDS.get(k, str), f"param {k} of run {mv.run_id}")
                for k, v in trial.data.params.items()
            },
            "metrics": dict(trial.data.metrics),
        },
        "evaluation": {"run_id": evaluation.info.run_id, "metrics": dict(evaluation.data.metrics)},
        "deployments": _deployments(client, pipeline.info.experiment_id, name, int(mv.version)),
    }


def _deployments(client: Any, experiment_id: str, name: str, version: int) -> list[dict]:
    found = [
        run
        for stage in ("deploy", "rollout")
        for run in client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.`{STAGE_TAG}` = '{stage}' and tags.`relay.model_version` = '{version}'"
            ),
        )
    ]
    found.sort(key=lambda r: r.info.start_time)
    return [
        {
            "run_id": r.info.run_id,
            "stage": r.data.tags[STAGE_TAG],
            "endpoint": r.data.tags.get("relay.endpoint"),
            "action": r.data.tags.get("relay.rollout_action"),
            "started": iso_time(r.info.start_time),
        }
        for r in found
        if r.data.params.get("model_name", r.data.tags.get("relay.model_name")) == name
    ]


def tag_of(run: Any, key: str, kind: type) -> Any:
    """A run's tag as the `kind` relay records there (None when absent)."""
    return decode(run.data.tags.get(key), kind, f"tag {key} of run {run.info.run_id}")


def iso_time(millis: int | None) -> str | None:
    """An MLflow time (ms since the epoch) as ISO-8601 UTC."""
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


def artifact_text(client: Any, run_id: str, path: str) -> str:
    """One small artifact of a run, as text (local store or server alike)."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def mermaid(c: dict[str, Any]) -> str:
    """A Mermaid flowchart of the chain (also what `--format dot` draws, in DOT)."""
    lines = ["graph LR"]
    for node_id, label, parents in _graph(c):
        lines.append(f'  {node_id}["{label}"]')
        lines += [f"  {p} --> {node_id}" for p in parents]
    return "\n".join(lines)


def dot(c: dict[str, Any]) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for node_id, label, parents in _graph(c):
        lines.append(f'  {node_id} [label="{label}"];')
        lines += [f"  {p} -> {node_id};" for p in parents]
    return "\n".join([*lines, "}"])


BOX_HEIGHT, CHAR_WIDTH, GAP_X, GAP_Y, PAD = 28, 7.2, 48, 16, 12


def svg(c: dict[str, Any]) -> str:
    """The chain as an SVG image, left to right (MLflow's artifact viewer shows SVG; it
    shows a .mmd file as text). Each node sits in the column of its longest path from a raw
    file; edges run from a node's right side to its child's left side."""
    nodes = _graph(c)
    depth: dict[str, int] = {}
    for node_id, _, parents in nodes:  # parents come first in _graph's order
        depth[node_id] = 1 + max((depth[p] for p in parents), default=-1)
    columns: dict[int, list[tuple[str, str]]] = {}
    for node_id, label, _ in nodes:
        columns.setdefault(depth[node_id], []).append((node_id, label))
    width = {
        d: max(len(label) for _, label in col) * CHAR_WIDTH + 2 * PAD for d, col in columns.items()
    }
    tallest = max(len(col) for col in columns.values())
    height = tallest * (BOX_HEIGHT + GAP_Y) - GAP_Y
    box: dict[str, tuple[float, float, float]] = {}  # node -> x, y, width
    x = float(PAD)
    for d in sorted(columns):
        col = columns[d]
        top = PAD + (height - (len(col) * (BOX_HEIGHT + GAP_Y) - GAP_Y)) / 2
        for row, (node_id, _) in enumerate(col):
            box[node_id] = (x, top + row * (BOX_HEIGHT + GAP_Y), width[d])
        x += width[d] + GAP_X
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{x - GAP_X + PAD:.0f}" '
        f'height="{height + 2 * PAD:.0f}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for node_id, _, parents in nodes:
        cx, cy, _ = box[node_id]
        for parent in parents:
            px, py, pw = box[parent]
            parts.append(
                f'<line class="edge" x1="{px + pw:.1f}" y1="{py + BOX_HEIGHT / 2:.1f}" '
                f'x2="{cx:.1f}" y2="{cy + BOX_HEIGHT / 2:.1f}" stroke="#555" '
                'marker-end="url(#arrow)"/>'
            )
    for node_id, label, _ in nodes:
        bx, by, bw = box[node_id]
        parts.append(
            f'<g class="node" id="{node_id}"><rect x="{bx:.1f}" y="{by:.1f}" width="{bw:.1f}" '
            f'height="{BOX_HEIGHT}" rx="6" fill="#eef4fb" stroke="#3b6ea8"/>'
            f'<text x="{bx + PAD:.1f}" y="{by + BOX_HEIGHT / 2 + 4:.1f}">{escape(label)}</text></g>'
        )
    return "\n".join([*parts, "</svg>"])


def _graph(c: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    raws = [
        (f"raw{i}", f"{Path(f['path']).name} sha256 {f['sha256'][:12]}", [])
        for i, f in enumerate(c["raw_files"])
    ]
    model = c["model"]
    nodes = [
        *raws,
        ("etl", f"ETL run {c['etl']['run_id'][:8]}", [r[0] for r in raws]),
        ("dataset", f"dataset {c['dataset']['digest'][:12]}", ["etl"]),
        ("tune", f"tune run {c['tune']['run_id'][:8]}", ["dataset"]),
        ("trial", f"best trial {c['best_trial']['run_id'][:8]}", ["tune"]),
        ("model", f"{model['name']} v{model['version']}", ["trial"]),
    ]
    nodes += [
        (f"deploy{i}", f"{d['stage']} {d['run_id'][:8]}", ["model"])
        for i, d in enumerate(c["deployments"])
    ]
    return nodes
