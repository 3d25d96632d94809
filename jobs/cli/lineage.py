"""Reading the records: `relay lineage`, `relay runs` and `relay reproduce`."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cluster.errors import RelayError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit, fields
from jobs.client import Relay
from jobs.console import err, fail, labelled, out


class View(StrEnum):
    """`relay lineage --format`: declared, so a typo is refused with the choices."""

    tree = "tree"
    json = "json"
    mermaid = "mermaid"
    dot = "dot"


TrackingOption = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite in .relay"),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Take the tracking URI from this pipeline config")
]


def lineage(
    target: Annotated[
        str,
        typer.Argument(
            help="models:/name@alias, name/version, a response's lineage_id, or a run id"
        ),
    ],
    fmt: Annotated[View, typer.Option("--format", help="How to show it")] = View.tree,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json")] = False,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
) -> None:
    """Where a model (or a prediction) came from: raw files to deployments.

    Example: relay lineage models:/credit-default@champion --config configs/demo.yaml
    """
    from jobs.pipeline import lineage as lineage_mod

    try:
        found = Relay(tracking_uri, config).lineage(target)
    except RelayError as exc:
        fail(exc)
    fmt = View.json if as_json else fmt
    if fmt == "json":
        print(json.dumps(found))
    elif fmt == "mermaid":
        print(lineage_mod.mermaid(found))
    elif fmt == "dot":
        print(lineage_mod.dot(found))
    else:
        _print_tree(found)


def _print_tree(c: dict[str, Any]) -> None:
    from rich.text import Text
    from rich.tree import Tree

    m = c["model"]
    title = (f"{m['name']} version {m['version']}", "bold")
    root = Tree(Text.assemble(title, f"  sha256 {m['sha256'][:16]}…"))
    root.add(f"pipeline run {c['pipeline']['run_id']}  git {c['pipeline']['git_commit']}")
    raw = root.add(f"raw files ({len(c['raw_files'])})")
    for f in c["raw_files"]:
        raw.add(f"{f['path']}  {f['bytes']:,} bytes  sha256 {f['sha256'][:16]}…")
    root.add(f"ETL run {c['etl']['run_id']} → dataset {c['dataset']['digest']}")
    root.add(f"tune run {c['tune']['run_id']}: {c['tune']['trials']} trials")
    hp = ", ".join(f"{k}={v}" for k, v in (c["tune"]["best_hyperparameters"] or {}).items())
    root.add(f"best trial {c['best_trial']['run_id']}: {hp}")
    metrics = ", ".join(
        f"{k} {v:.4f}"
        for k, v in sorted(c["evaluation"]["metrics"].items())
        if k.startswith("test_")  # per-group metrics are in the evaluate run
    )
    root.add(f"evaluation {c['evaluation']['run_id']}: {metrics}")
    deployed = root.add(f"deployments ({len(c['deployments'])})")
    for d in c["deployments"]:
        deployed.add(f"{d['stage']} {d['run_id']} {d['action'] or ''} {d['endpoint'] or ''}")
    out.print(root)


def reproduce(
    run_id: Annotated[str, typer.Argument(help="A pipeline run id (see relay runs)")],
    allow_code_change: Annotated[
        bool, typer.Option(help="Compare even if the code commit differs or the tree is dirty")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="Largest absolute metric difference that still matches")
    ] = 1e-6,
    address: Annotated[str | None, typer.Option(help="Ray address for the re-run")] = None,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-run a recorded pipeline (up to evaluation) and compare inputs, dataset and metrics.

    Exit 0 when it matches, 7 with a diff when it does not. Example: relay reproduce 3f2a…
    """
    from jobs.pipeline.reproduce import reproduce as run_reproduction

    try:
        uri = Relay(tracking_uri, config).tracking_uri  # the run must be there: none created
        result = run_reproduction(run_id, uri, allow_code_change, tolerance, address)
    except RelayError as exc:
        fail(exc)
    for warning in result["warnings"]:
        err.print(labelled("warning:", "yellow", warning), highlight=False)
    human = {
        "reproduced": f"run {result['original_run_id']} as {result['rerun_run_id']}",
        "dataset": result["dataset_digest"],
        "metrics": f"equal within {result['tolerance']:g}",
    }
    emit(result, as_json, lambda: fields(human))


def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 10,
    as_json: JsonOption = False,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
) -> None:
    """Recent pipeline runs: status, dataset digest, best metric, model version (--json:
    {"runs": [...]}).

    Example: relay runs --config configs/demo.yaml
    """
    try:
        rows = [asdict(r) for r in Relay(tracking_uri, config).runs(limit)]
    except RelayError as exc:
        fail(exc)
    emit({"runs": rows}, as_json, lambda: _print_runs(rows))


def _print_runs(rows: list[dict[str, Any]]) -> None:
    table = Table(title="pipeline runs")
    for column in ("run id", "name", "status", "dataset", "model version", "best"):
        table.add_column(column)
    for row in rows:
        best = ", ".join(f"{k.removeprefix('best_')} {v:.4f}" for k, v in row["best"].items())
        table.add_row(
            row["run_id"],
            row["name"],
            row["status"],
            row["dataset_digest"][:12],
            str(row["model_version"] or ""),
            best,
        )
    out.print(table)
