"""Arguments and options more than one command group declares the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cluster.config import Stage

StageOption = Annotated[
    Stage,
    typer.Option(help="Last stage to run", case_sensitive=False),
]
ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML config, e.g. configs/demo.yaml")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config field KEY=VALUE (repeatable): train.epochs=2"),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the result as one JSON object on the last line of stdout"),
]
