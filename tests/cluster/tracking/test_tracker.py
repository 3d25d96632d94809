"""The Tracker's run block on a real sqlite store: what ended the block is what the caller sees."""

from __future__ import annotations

import sqlite3

import pytest

from cluster.tracking.tracker import Tracker


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
