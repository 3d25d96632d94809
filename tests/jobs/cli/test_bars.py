"""Progress bars are for a person at a terminal: drawn on a real pseudo-terminal, never into a
pipe (a script, CI, a log file). Batch `relay predict`'s bar is checked beside the model it
scores with, in tests/jobs/pipeline/test_pipeline.py."""

from __future__ import annotations

import os
from pathlib import Path

from jobs import bars
from tests.conftest import ROOT
from tests.jobs.cli.test_cli import RELAY, run, write_config
from tests.terminal import on_terminal, plain

ETL_BAR = "etl: files read and validated"


def test_without_a_board_counting_draws_and_counts_nothing():
    assert not bars.drawn()
    with bars.drawing(False) as board, bars.counting("work", 3) as advance:
        advance(3)  # a no-op: nobody watches
    assert board is None and not bars.drawn()


def test_a_board_is_there_only_while_drawing():
    with bars.drawing(True) as board, bars.counting("work", 2) as advance:
        assert board is not None and bars.drawn()
        advance(2)
        (task,) = [t for t in board.tasks if t.description == "work"]
        assert task.completed == 2
    assert not bars.drawn()


def test_relay_run_counts_etl_files_at_a_terminal_and_draws_nothing_into_a_pipe(tmp_path: Path):
    """Each run its own state folder: a second ETL over the same files would reuse the
    dataset, reading no file, and show no bar either way."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    folders = tmp_path / "terminal", tmp_path / "pipe"
    for folder in folders:
        folder.mkdir()
    config = write_config(folders[0])
    code, shown = on_terminal([*RELAY, "run", str(config), "--until", "etl"], folders[0], env)
    text = plain(shown)
    assert code == 0, text[-3000:]
    assert f"{ETL_BAR} " in text and "/2 " in text.split(ETL_BAR, 1)[1]  # ci.yaml: two files
    assert "finished in" in text.split(ETL_BAR)[-1]  # the summary after the bars

    piped = run([*RELAY, "run", str(write_config(folders[1])), "--until", "etl"], folders[1])
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert ETL_BAR not in piped.stdout + piped.stderr
    assert "\x1b[" not in piped.stdout + piped.stderr  # no cursor moves, no colours
    assert "relay ▸ etl" in piped.stderr  # the stage lines still say where it is
