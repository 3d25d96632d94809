"""`relay data profile`: what the ETL stage published, column by column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cluster.errors import RelayError
from jobs.cli.options import JsonOption
from jobs.cli.output import emit
from jobs.console import fail, out

data_app = typer.Typer(help="Inspect datasets produced by the ETL stage.", no_args_is_help=True)


@data_app.command("profile")
def data_profile(
    target: Annotated[
        Path, typer.Argument(help="A pipeline config (its newest dataset) or a dataset folder")
    ],
    as_json: JsonOption = False,
) -> None:
    """Per column: count, nulls, min, max, mean, quantiles and top values.

    Example: relay data profile configs/demo.yaml
    """
    from jobs.artifacts import PROFILE
    from jobs.etl.stage import find_dataset

    try:
        folder = find_dataset(target)
    except RelayError as exc:
        fail(exc)
    profile = json.loads((folder / PROFILE).read_text())
    emit(profile, as_json, lambda: _print_profile(folder, profile))


def _print_profile(folder: Path, profile: dict[str, Any]) -> None:
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
