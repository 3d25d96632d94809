"""Progress bars for counted work (ETL's files, the records batch prediction scores), for a
person at a terminal.

As with the search's live line (`jobs.tune.progress`), the stages never ask where they run: a
command installs one board on stderr with `drawing(live)` (at a terminal and without --json),
a stage counts its work with `counting(label, total)`, and with no board installed that counts
nothing and draws nothing (a pipe, a log file, CI, a Ray job, --json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from jobs.console import err, out

Advance = Callable[[int], None]
_BOARDS: list[Progress] = []


def live(as_json: bool) -> bool:
    """Bars only for a person: not under --json, and only when stdout and stderr are a
    terminal (a redirected stdout is a script reading it, whatever stderr is)."""
    return not as_json and out.is_terminal and err.is_terminal


class _Counted(ProgressColumn):
    """A column shown for counted work only: a status line (`status()`) is its text alone."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task: Task) -> Text:
        shown = self.column.render(task)
        return Text("") if task.fields.get("status") else shown  # type: ignore[return-value]


@contextmanager
def drawing(live: bool) -> Iterator[Progress | None]:
    """The board for the block (None, and nothing drawn, when not `live`); the bars vanish
    when it ends, so the summary printed after them reads as if they were never there."""
    if not live:
        yield None
        return
    board = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        _Counted(BarColumn()),
        _Counted(MofNCompleteColumn()),
        _Counted(TimeRemainingColumn()),
        console=err,
        transient=True,
    )
    with board:
        _BOARDS.append(board)
        try:
            yield board
        finally:
            _BOARDS.remove(board)


def status(board: Progress, text: str) -> Callable[[str], None]:
    """A line of text on the board (no bar), and how to change it."""
    line = board.add_task(text, total=None, status=True)
    return lambda changed: board.update(line, description=changed)


@contextmanager
def counting(label: str, total: int | None) -> Iterator[Advance]:
    """`advance(n)` for `total` units of work (None: not known beforehand, the count alone);
    a bar on the installed board, else a no-op."""
    if not _BOARDS:
        yield lambda n: None
        return
    board = _BOARDS[-1]
    task = board.add_task(label, total=total)
    try:
        yield lambda n: board.advance(task, n)
    finally:
        board.remove_task(task)


def drawn() -> bool:
    """Whether a board is installed: work done only to feed a bar (a counter) is skipped
    when nobody watches."""
    return bool(_BOARDS)
