"""The CLI's consoles and its one way to fail: a message and a documented exit code.

Both consoles read no markup: what they print holds paths, configs and error texts, whose
brackets rich would take for tags (dropping ``[a, b]``, failing on ``[/x]``). Styled labels are
built with ``labelled`` instead.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from cluster.errors import RelayError

out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)  # greppable: no hard wraps


def labelled(label: str, style: str, text: object) -> Text:
    """``label`` in ``style``, then ``text`` exactly as it is."""
    return Text.assemble((label, style), " ", str(text))


def fail(exc: RelayError) -> NoReturn:
    err.print(labelled("error:", "red", exc), highlight=False)
    raise typer.Exit(exc.exit_code) from None
