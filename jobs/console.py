"""The CLI's consoles and its one way to fail: a message and a documented exit code."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from cluster.errors import RelayError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # messages stay greppable: no hard wraps


def fail(exc: RelayError) -> NoReturn:
    err.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(exc.exit_code) from None
