"""Reading the records: `relay lineage`, `relay runs` and `relay reproduce`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cluster.configfile import load_config
from cluster.errors import RelayError
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


def store(tracking_uri: str | None, config: Path | None) -> str:
    """The tracking URI: --tracking-uri, the config's, $MLFLOW_TRACKING_URI, .relay/mlflow.db."""
    import os

    from cluster.tracking.tracker import tracking_uri as config_uri

    return (
        tracking_uri
        or (config_uri(load_config(config)) if config else None)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path('.relay/mlflow.db').resolve()}"
    )


def tracking_client(tracking_uri: str | None, config: Path | None) -> Any:
    """A client on a store that exists and answers (a read never creates one)."""
    from cluster.tracking.reader import read_client

    return read_client(store(tracking_uri, config))


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
        client = tracking_client(tracking_uri, config)
        found = lineage_mod.chain(client, *lineage_mod.model_of(client, target))
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
) -> None:
    """Re-run a recorded pipeline (up to evaluation) and compare inputs, dataset and metrics.

    Exit 0 when it matches, 7 with a diff when it does not. Example: relay reproduce 3f2a…
    """
    from jobs.pipeline.reproduce import reproduce as run_reproduction

    try:
        uri = store(tracking_uri, config)
        tracking_client(uri, None)  # the recorded run must be there: never create a store
        result = run_reproduction(run_id, uri, allow_code_change, tolerance, address)
    except RelayError as exc:
        fail(exc)
    for warning in result["warnings"]:
        err.print(labelled("warning:", "yellow", warning), highlight=False)
    print(json.dumps(result))


def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list")] = False,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
) -> None:
    """Recent pipeline runs: status, dataset digest, best metric, model version.

    Example: relay runs --config configs/demo.yaml
    """
    from cluster.tracking.tracker import STAGE_TAG
    from jobs.pipeline.lineage import iso_time, tag_of

    try:
        client = tracking_client(tracking_uri, config)
    except RelayError as exc:
        fail(exc)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments,
        filter_string=f"tags.`{STAGE_TAG}` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    rows = [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "started": iso_time(r.info.start_time),
            "dataset_digest": r.data.tags.get("relay.dataset_digest", ""),
            "model_version": tag_of(r, "relay.model_version", int),
            "best": {k: v for k, v in r.data.metrics.items() if k.startswith("best_val")},
        }
        for r in found
    ]
    if as_json:
        print(json.dumps(rows))
        return
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
