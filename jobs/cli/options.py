"""Arguments and options more than one command group declares the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline YAML config, e.g. configs/demo.yaml")]
