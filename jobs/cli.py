"""The `relay` command line.

Exit codes: 0 ok, 1 unexpected error, 2 invalid config, 3 data quality, 4 gate failed
(registered as 'rejected', not promoted), 5 Ray or tracking unreachable, 6 serving failed,
7 not reproduced, 8 submitted job failed, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cluster.config import load_config, parse_overrides
from cluster.errors import ConfigError, RelayError
from jobs.clustercli import cluster_app, jobs_app, submit
from jobs.console import err, fail, out

app = typer.Typer(
    help="relay: one config, one CLI, one lineage trail, from raw data to a served model.\n\n"
    "Example: relay run configs/demo.yaml --json",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _setup() -> None:
    """Quiet defaults (progress bars off) for this process and the Ray workers it starts."""
    from cluster.runtime import quiet_environment

    try:
        quiet_environment()
    except RelayError as exc:
        fail(exc)


ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML config, e.g. configs/demo.yaml")]


@app.command()
def run(
    config: ConfigArg,
    address: Annotated[
        str | None,
        typer.Option(help="Ray address; default RAY_ADDRESS, else an embedded local Ray"),
    ] = None,
    until: Annotated[
        str, typer.Option(help="Last stage: etl, tune, evaluate, register or deploy")
    ] = "deploy",
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Keep the endpoint up after the run (embedded Ray: until Ctrl-C)"
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on the last line")
    ] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config field KEY=VALUE, e.g. train.epochs=2"),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue this config's interrupted "
            "run: same MLflow runs, trials from checkpoints",
        ),
    ] = False,
    ci: Annotated[
        bool,
        typer.Option("--ci", help="Print the gate report as markdown (a pull-request comment)"),
    ] = False,
) -> None:
    """Run the pipeline: ETL, tuning, evaluation, registration, serving, one prediction.

    A model that fails a promotion gate is registered as 'rejected', the champion keeps
    serving, and the exit code is 4. Example: relay run configs/demo.yaml --ci
    """
    raise typer.Exit(
        run_command(
            config,
            address=address,
            until=until,
            as_json=as_json,
            debug=debug,
            keep_serving=serve,
            resume=resume,
            overrides=set_,
            ci=ci,
        )
    )


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config without running anything.

    Example: relay validate configs/ci.yaml
    """
    try:
        cfg = load_config(config)
    except RelayError as exc:
        fail(exc)
    out.print(f"{config}: valid (pipeline '{cfg.name}', config digest {cfg.digest()[:12]})")


@app.command()
def predict(
    config: Annotated[
        Path | None, typer.Argument(help="Pipeline config (batch mode): its model and MLflow")
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", help="Files, folders, globs or URIs to score (repeatable)"),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Empty folder for the predictions")] = None,
    model: Annotated[
        str | None, typer.Option(help="Alias or version to use; default the config's serve.alias")
    ] = None,
    address: Annotated[str | None, typer.Option(help="Ray address (batch mode)")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint URL (online mode), e.g. http://host:8000/credit")
    ] = None,
    record: Annotated[
        str | None, typer.Option("--json", help="Online mode: one record, or a list, as JSON")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Online mode: bearer token file (else $RELAY_SERVE_TOKEN)")
    ] = None,
) -> None:
    """Score files in batch on Ray Data, or send records to a running endpoint.

    Examples: relay predict configs/demo.yaml --input new.csv --output scored/
              relay predict --endpoint http://127.0.0.1:8000/credit --json '{"age": 41, ...}'
    """
    try:
        if endpoint:
            result = _predict_online(endpoint, record, token_file)
        elif config and inputs and output:
            from jobs.predict import batch

            result = batch(load_config(config), inputs, output, model, address)
        else:
            from cluster.errors import ConfigError

            raise ConfigError(
                "relay predict needs CONFIG --input ... --output DIR (batch), "
                "or --endpoint URL --json RECORD (online)"
            )
    except RelayError as exc:
        fail(exc)
    print(json.dumps(result))


def _predict_online(endpoint: str, record: str | None, token_file: Path | None) -> Any:
    import os

    from cluster.errors import ConfigError, ServingError
    from serving.client import Client, EndpointError

    if not record:
        raise ConfigError("--endpoint needs --json with a record (or a list of records)")
    try:
        body = json.loads(record)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--json is not valid JSON: {exc}") from None
    token = token_file.read_text() if token_file else os.environ.get("RELAY_SERVE_TOKEN")
    client = Client(endpoint, token)
    try:
        return client.predict_batch(body) if isinstance(body, list) else client.predict(body)
    except EndpointError as exc:
        raise ServingError(f"{endpoint} refused the request: {exc}") from None
    except OSError as exc:
        raise ServingError(f"cannot reach {endpoint}: {exc}") from None


TrackingOption = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite in .relay"),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Take the tracking URI from this pipeline config")
]


def _store(tracking_uri: str | None, config: Path | None) -> str:
    """The tracking URI: --tracking-uri, the config's, $MLFLOW_TRACKING_URI, .relay/mlflow.db."""
    import os

    from cluster.tracking import tracking_uri as config_uri

    return (
        tracking_uri
        or (config_uri(load_config(config)) if config else None)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path('.relay/mlflow.db').resolve()}"
    )


def _tracking_client(tracking_uri: str | None, config: Path | None) -> Any:
    from mlflow.tracking import MlflowClient

    uri = _store(tracking_uri, config)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@app.command()
def lineage(
    target: Annotated[
        str,
        typer.Argument(
            help="models:/name@alias, name/version, a response's lineage_id, or a run id"
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="tree, json, mermaid or dot")] = "tree",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json")] = False,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
) -> None:
    """Where a model (or a prediction) came from: raw files to deployments.

    Example: relay lineage models:/credit-default@champion --config configs/demo.yaml
    """
    from jobs import lineage as lineage_mod

    try:
        client = _tracking_client(tracking_uri, config)
        found = lineage_mod.chain(client, *lineage_mod.model_of(client, target))
    except RelayError as exc:
        fail(exc)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        print(json.dumps(found, default=str))
    elif fmt == "mermaid":
        print(lineage_mod.mermaid(found))
    elif fmt == "dot":
        print(lineage_mod.dot(found))
    else:
        _print_tree(found)


def _print_tree(c: dict[str, Any]) -> None:
    from rich.tree import Tree

    m = c["model"]
    root = Tree(f"[bold]{m['name']} version {m['version']}[/bold]  sha256 {m['sha256'][:16]}…")
    root.add(f"pipeline run {c['pipeline']['run_id']}  git {c['pipeline']['git_commit']}")
    raw = root.add(f"raw files ({len(c['raw_files'])})")
    for f in c["raw_files"]:
        raw.add(f"{f['path']}  {f['size']:,} bytes  sha256 {f['sha256'][:16]}…")
    root.add(f"ETL run {c['etl']['run_id']} → dataset {c['dataset']['digest']}")
    root.add(f"tune run {c['tune']['run_id']}: {c['tune']['trials']} trials")
    root.add(f"best trial {c['best_trial']['run_id']}: {c['tune']['best_hyperparameters']}")
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


@app.command()
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
    from jobs.reproduce import reproduce as run_reproduction

    try:
        store = _store(tracking_uri, config)
        result = run_reproduction(run_id, store, allow_code_change, tolerance, address)
    except RelayError as exc:
        fail(exc)
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    print(json.dumps(result))


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list")] = False,
    tracking_uri: TrackingOption = None,
    config: ConfigOption = None,
) -> None:
    """Recent pipeline runs: status, dataset digest, best metric, model version.

    Example: relay runs --config configs/demo.yaml
    """
    from cluster.tracking import STAGE_TAG

    try:
        client = _tracking_client(tracking_uri, config)
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
            "started": r.info.start_time,
            "dataset_digest": r.data.tags.get("relay.dataset_digest", ""),
            "model_version": r.data.tags.get("relay.model_version", ""),
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
            str(row["model_version"]),
            best,
        )
    out.print(table)


tracking_app = typer.Typer(
    help="An MLflow tracking server on loopback, for jobs on a Ray cluster.", no_args_is_help=True
)
app.add_typer(tracking_app, name="tracking")
StateOption = Annotated[str, typer.Option(help="Where the server keeps its store and PID")]


@tracking_app.command("up")
def tracking_up(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 5000,
    state_dir: StateOption = ".relay",
    backend_store_uri: Annotated[
        str | None, typer.Option(help="Database URI (e.g. postgresql://...); default sqlite")
    ] = None,
    basic_auth: Annotated[
        bool,
        typer.Option(
            "--basic-auth",
            help="Require a user and password (an admin one is generated; others get nothing)",
        ),
    ] = False,
) -> None:
    """Start it (one worker, lean) and print its URI: use it as tracking.uri.

    Example: relay tracking up --port 5000 --basic-auth
    """
    from cluster.tracking import CREDENTIALS_ENV
    from jobs import trackingserver

    try:
        record = trackingserver.up(
            state_dir, port, backend=backend_store_uri, basic_auth=basic_auth
        )
    except RelayError as exc:
        fail(exc)
    print(json.dumps(record))
    if record.get("credentials"):
        err.print(f"clients: export {CREDENTIALS_ENV}={record['credentials']}", highlight=False)


@tracking_app.command("down")
def tracking_down(state_dir: StateOption = ".relay") -> None:
    """Stop the server `relay tracking up` started (by its recorded PID)."""
    from jobs import trackingserver

    try:
        print(json.dumps(trackingserver.down(state_dir)))
    except RelayError as exc:
        fail(exc)


@tracking_app.command("sync")
def tracking_sync(
    state_dir: Annotated[
        str, typer.Option(help="The run's state dir: its tracking-spool folder is replayed")
    ] = ".relay",
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="Send to this server instead of the one each journal was meant for"),
    ] = None,
    retry_seconds: Annotated[
        float, typer.Option(help="How long to wait for a server that does not answer")
    ] = 30.0,
) -> None:
    """Upload what a run spooled while the tracking server was down, then delete the spool.

    Same run ids, timestamps and steps; safe to run again after an interruption.
    Example: relay tracking sync --state-dir .relay --tracking-uri http://127.0.0.1:5000
    """
    from cluster import spool

    try:
        result = spool.sync(spool.spool_root(state_dir), tracking_uri, retry_seconds)
    except RelayError as exc:
        fail(exc)
    print(json.dumps(result))


app.add_typer(cluster_app, name="cluster")
app.add_typer(jobs_app, name="jobs")
app.command("submit")(submit)

k8s_app = typer.Typer(
    help="KubeRay manifests from a pipeline config, validated offline.", no_args_is_help=True
)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def k8s_render(
    config: ConfigArg,
    overlay: Annotated[str, typer.Option(help="cpu, or gpu (adds the GPU worker group)")] = "cpu",
    output: Annotated[Path, typer.Option(help="Folder for the kustomization")] = Path("k8s-out"),
) -> None:
    """Write a kustomization (base + overlay + this config) for `kubectl apply -k`.

    Example: relay k8s render configs/demo.yaml --overlay gpu --output k8s-out
    """
    from jobs.k8s.render import render

    try:
        objects = render(load_config(config), config.read_text(), overlay, output)
    except RelayError as exc:
        fail(exc)
    kinds = ", ".join(sorted({o["kind"] for o in objects}))
    out.print(f"{output}: {len(objects)} objects ({kinds}); also built in {output}/manifests.yaml")
    out.print(f"next: relay k8s validate {output} && kubectl apply -k {output} -n <namespace>")


@k8s_app.command("validate")
def k8s_validate(
    path: Annotated[Path, typer.Argument(help="Kustomization folder, folder of YAML, or a file")],
) -> None:
    """Check manifests as an API server with the KubeRay v1.7.0 CRDs would, plus relay's policy.

    Example: RELAY_KUBERAY_CRDS=path/to/crds relay k8s validate k8s-out
    """
    from jobs.k8s.validate import K8S_VERSION, check_manifests, load_manifests

    try:
        objects = load_manifests(path)
        problems = check_manifests(objects)
    except RelayError as exc:
        fail(exc)
    for problem in problems:
        err.print(f"  - {problem}", highlight=False, markup=False)
    if problems:
        fail(ConfigError(f"{path}: {len(problems)} problem(s) in {len(objects)} objects"))
    out.print(
        f"{path}: {len(objects)} objects valid (Kubernetes {K8S_VERSION} strict, KubeRay "
        "v1.7.0 CRDs with CEL rules, KubeRay runtime rules, relay policy)"
    )


rollout_app = typer.Typer(
    help="Champion/challenger rollout on a running endpoint (aliases, then an in-place swap).",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")
AddressOption = Annotated[
    str | None, typer.Option(help="Address of the Ray cluster serving the endpoint")
]


@rollout_app.command("start")
def rollout_start(
    config: ConfigArg,
    version: Annotated[int, typer.Option(help="Registered version to try as the challenger")],
    address: AddressOption = None,
) -> None:
    """Send serve.challenger_share of the requests to VERSION.

    Example: relay rollout start configs/demo.yaml --version 3 --address ray://head:10001
    """
    from jobs import rollout

    _rollout(lambda cfg: rollout.start(cfg, version, address), config)


@rollout_app.command("promote")
def rollout_promote(config: ConfigArg, address: AddressOption = None) -> None:
    """Make the challenger the champion (the old champion keeps the alias 'previous')."""
    from jobs import rollout

    _rollout(lambda cfg: rollout.promote(cfg, address), config)


@rollout_app.command("rollback")
def rollout_rollback(config: ConfigArg, address: AddressOption = None) -> None:
    """Send every request back to the champion."""
    from jobs import rollout

    _rollout(lambda cfg: rollout.rollback(cfg, address), config)


def _rollout(action: Any, config: Path) -> None:
    try:
        print(json.dumps(action(load_config(config))))
    except RelayError as exc:
        fail(exc)


data_app = typer.Typer(help="Inspect datasets produced by the ETL stage.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("profile")
def data_profile(
    target: Annotated[
        Path, typer.Argument(help="A pipeline config (its newest dataset) or a dataset folder")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the profile as JSON")] = False,
) -> None:
    """Per column: count, nulls, min, max, mean, quantiles and top values.

    Example: relay data profile configs/demo.yaml
    """
    from jobs.etl import PROFILE, find_dataset

    try:
        folder = find_dataset(target)
    except RelayError as exc:
        fail(exc)
    profile = json.loads((folder / PROFILE).read_text())
    if as_json:
        print(json.dumps(profile))
        return
    table = Table(title=f"profile of {folder}")
    for name in ("column", "type", "count", "nulls", "min", "p50", "max", "mean", "top values"):
        table.add_column(
            name, justify="left" if name in ("column", "type", "top values") else "right"
        )
    for name, p in profile.items():
        top = ", ".join(f"{k} {v}" for k, v in list(p.get("top", {}).items())[:4])
        table.add_row(
            name,
            p["type"],
            f"{p['count']:,}",
            f"{p['nulls']:,}",
            _cell(p["min"]),
            _cell(p.get("quantiles", {}).get("0.5")),
            _cell(p["max"]),
            _cell(p.get("mean")),
            top,
        )
    out.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


def run_command(
    config: Path,
    *,
    address: str | None = None,
    until: str = "deploy",
    as_json: bool = False,
    debug: bool = False,
    keep_serving: bool = False,
    resume: bool = False,
    overrides: list[str] | None = None,
    ci: bool = False,
) -> int:
    """Shared by `relay run` and `python -m jobs.<stage>`: returns the exit code."""
    from cluster.errors import GateFailedError, TrackingSpooledError
    from jobs import gatereport, pipeline

    def report(summary: dict[str, Any]) -> None:
        if ci and "gates" in summary:
            print(gatereport.markdown(summary["gates"]), flush=True)
        if as_json:
            print(json.dumps(summary, default=str), flush=True)
        elif not ci:
            print_summary(summary, keep_serving)

    try:
        if until not in pipeline.STAGES:
            from cluster.errors import ConfigError

            raise ConfigError(
                f"--until: expected one of {', '.join(pipeline.STAGES)}, got {until!r}"
            )
        cfg = load_config(config, parse_overrides(overrides or []))
        # Printed after teardown (Ray's forwarded logs must not follow the JSON line),
        # or before blocking when the endpoint stays up.
        summary = pipeline.run(
            cfg,
            address=address,
            until=until,
            keep_serving=keep_serving,
            on_stage=lambda s: err.print(f"[dim]relay ▸ {s}[/dim]"),
            on_summary=report if keep_serving else None,
            resume=resume,
        )
        if not keep_serving:
            report(summary)
    except GateFailedError as exc:  # recorded and finished: the report says which and by how much
        if not keep_serving:
            report(exc.summary)
        err.print(f"[red]not promoted:[/red] {exc}", highlight=False)
        return exc.exit_code
    except RelayError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        if isinstance(exc, TrackingSpooledError):
            err.print(f"then continue the run with: relay run {config} --resume", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(f"interrupted: continue with  relay run {config} --resume")
        return 130
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"[red]unexpected error:[/red] {type(exc).__name__}: {exc}\n"
            "Rerun with --debug for the traceback.",
            highlight=False,
        )
        return 1
    return 0


def print_summary(s: dict[str, Any], keep_serving: bool) -> None:
    rows = s.get("rows", {})
    out.print(
        f"\n[bold]relay pipeline '{s['pipeline']}'[/bold] finished in {s['total_seconds']:.1f} s"
    )
    out.print(
        f"  dataset    {s['dataset_digest'][:16]}…  {rows.get('rows_out', 0):,} rows, "
        f"{rows.get('rows_rejected', 0):,} quarantined  ({s['dataset_path']})"
    )
    if "best_hyperparameters" in s:
        hp = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in s["best_hyperparameters"].items()
        )
        out.print(f"  best trial {hp}  ({s['trials']} trials)")
    if "test_metrics" in s:
        metrics = "  ".join(
            f"{k.removeprefix('test_')} {v:.4f}"
            for k, v in s["test_metrics"].items()
            if k != "test_rows"
        )
        out.print(f"  test       {metrics}")
    if "model_version" in s:
        out.print(
            f"  model      {s['model_name']} version {s['model_version']} "
            f"(@{s['model_alias']}, sha256 {s['model_sha256'][:16]}…)"
        )
    if "gates" in s:
        from jobs.gatereport import text

        out.print(text(s["gates"]), highlight=False, markup=False)
    if "endpoint" in s:
        p = s["prediction"]
        out.print(f"  endpoint   POST {s['endpoint']}")
        if s.get("token_file"):
            out.print(f'  auth       -H "Authorization: Bearer $(cat {s["token_file"]})"')
        out.print(f"  prediction {json.dumps(p['response'])}")
        out.print(f"             for {json.dumps(p['request'])}")
        out.print(f"             matches the offline model: {p['matches_offline']}")
    table = Table(title="stage timings (s)", show_header=True)
    for name in s["stage_seconds"]:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    table.add_row(*(f"{v:.2f}" for v in s["stage_seconds"].values()), f"{s['total_seconds']:.2f}")
    out.print(table)
    uri = s["tracking_uri"]
    ui = f"mlflow ui --backend-store-uri {uri}" if not uri.startswith("http") else uri
    out.print(f"  MLflow     {ui}  → experiment {s['experiment_id']}, run {s['pipeline_run_id']}")
    if "endpoint" in s:
        out.print(
            "  serving until Ctrl-C"
            if keep_serving
            else "  endpoint shut down (pass --serve to keep it running)"
        )


def main() -> None:
    app(prog_name="relay")


if __name__ == "__main__":
    sys.exit(main())
