"""The Tracker's run block on a real sqlite store: what ended the block is what the caller sees."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from cluster.tracking.tracker import Tracker
from tests.conftest import ROOT, load_table


def test_an_interrupt_is_not_masked_when_the_failed_end_cannot_be_written(tmp_path):
    """Ctrl-C mid-write can leave the sqlite store locked: the FAILED end then fails too, and
    the KeyboardInterrupt (exit 130, the resume hint) must still reach the CLI."""
    db = tmp_path / "mlflow.db"
    tracker = Tracker.open(f"sqlite:///{db}", "interrupted", retry_seconds=0.5)
    lock = sqlite3.connect(db, timeout=0)
    with pytest.raises(KeyboardInterrupt), tracker.run("pipeline") as run_id:
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the store
        raise KeyboardInterrupt
    lock.rollback()
    run = tracker.client.get_run(run_id)
    assert run.info.status == "RUNNING"  # reopened by --resume, not lost


INTERRUPTED_WRITES = textwrap.dedent(
    """
    import _thread, random, signal, sys, threading
    from cluster import interrupts
    from cluster.tracking.tracker import Tracker

    interrupts.install()
    tracker = Tracker.open(sys.argv[1], "interrupted")
    random.seed(7)
    for i in range(30):
        # the signal lands at a random point of the run: its start or one of its writes
        delay = random.uniform(0.0, 0.05)
        threading.Timer(delay, _thread.interrupt_main, args=(signal.SIGTERM,)).start()
        try:
            with tracker.run("pipeline") as run_id:
                while True:
                    tracker.log(run_id, metrics={"loss": 0.5})
        except KeyboardInterrupt:
            pass
    for run in tracker.client.search_runs([tracker.experiment_id], max_results=100):
        print(run.info.status)
    """
)


def test_a_sigterm_landing_inside_a_write_still_ends_the_run_failed(tmp_path):
    """Seen in CI: the signal cut a sqlite write, its transaction stayed open, the FAILED end
    waited for the lock and was lost (the run stayed RUNNING). Writes now finish first."""
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WRITES, f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # the old code waited 20 s for the lock at each interrupt
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["FAILED"] * 30


def test_tables_are_mlflow_run_tables_the_ui_lists(tmp_path):
    """`log_tables` writes what `MlflowClient.load_table` reads and lists each in the run's
    `mlflow.loggedArtifacts` tag, the UI's cue to show it as a table."""
    import json

    tracker = Tracker.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "tables")
    with tracker.run("etl", stage="etl") as run_id:
        tracker.log_tables(
            run_id,
            {
                "rejects.json": {
                    "column": ["age", "region"],
                    "reason": ["type", "set"],
                    "rows": [14, 3],
                },
                "pii_found.json": {"column": [], "finding": [], "rows": []},
            },
        )
    run = tracker.client.get_run(run_id)
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "rejects.json", "type": "table"},
        {"path": "pii_found.json", "type": "table"},
    ]
    table = load_table(tracker.client, run, "rejects.json")
    assert table[["column", "reason", "rows"]].values.tolist() == [
        ["age", "type", 14],
        ["region", "set", 3],
    ]
    empty = load_table(tracker.client, run, "pii_found.json")
    assert list(empty.columns[:3]) == ["column", "finding", "rows"] and len(empty) == 0
