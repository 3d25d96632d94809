"""`relay run` (the pipeline, in this process) and `relay validate` (a config, nothing run)."""

from __future__ import annotations

from typing import Annotated

import typer

from cluster.config import Stage
from cluster.configfile import load_config
from cluster.errors import RelayError
from jobs.cli.options import ConfigArg, JsonOption, SetOption, StageOption
from jobs.cli.output import emit
from jobs.console import fail, out


def run(
    config: ConfigArg,
    address: Annotated[
        str | None,
        typer.Option(help="Ray address; default RAY_ADDRESS, else an embedded local Ray"),
    ] = None,
    until: StageOption = Stage.deploy,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Keep the endpoint up after the run (embedded Ray: until Ctrl-C)"
        ),
    ] = False,
    as_json: JsonOption = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks")] = False,
    set_: SetOption = None,
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
    from jobs.pipeline.command import run_command  # imports the stages (torch, Ray Tune)

    raise typer.Exit(
        run_command(
            config,
            address=address,
            until=until.value,
            as_json=as_json,
            debug=debug,
            keep_serving=serve,
            resume=resume,
            overrides=set_,
            ci=ci,
        )
    )


def validate(config: ConfigArg, as_json: JsonOption = False) -> None:
    """Check a config without running anything: its fields, and that each local data path
    names data files (an object-store URI is listed as not checked: that needs the network).

    Example: relay validate configs/ci.yaml
    """
    from cluster.config import FileSource
    from jobs.data.sources import offline_counts
    from jobs.models import families

    try:
        cfg = load_config(config)
        families.check(cfg)
        source = cfg.data.source
        counts = offline_counts(source) if isinstance(source, FileSource) else {}
    except RelayError as exc:
        fail(exc)
    digest = cfg.digest()
    checked = {"config": str(config), "valid": True, "pipeline": cfg.name, "config_digest": digest}

    def human() -> None:
        out.print(f"{config}: valid (pipeline '{cfg.name}', config digest {digest[:12]})")
        for entry, count in counts.items():
            found = (
                "not checked offline (remote)"
                if count is None
                else f"{count} data file{'s' * (count != 1)}"
            )
            out.print(f"  data.source.path {entry}: {found}", highlight=False)

    emit(checked | {"data_files": counts}, as_json, human)
