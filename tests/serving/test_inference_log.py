"""The inference log's writer on a real filesystem, without Ray: what it keeps, what it drops
and that a drop is always counted (the endpoint tests in tests/jobs/monitor run it in Serve)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from jobs.monitor.window import read
from serving.inference_log import COLUMNWISE, Answered, InferenceLog, Rows, log_schema

SPEC = {
    "task": "classification",
    "features": {"label": {"classes": ["no", "yes"]}},
    "input_schema": [
        {"name": "age", "type": "int"},
        {"name": "income", "type": "float"},
        {"name": "region", "type": "category"},
        {"name": "seen", "type": "timestamp", "format": "%Y-%m-%d"},
        {"name": "time", "type": "float"},  # a feature named like a log column: no clash
    ],
}
SCHEMA = log_schema(SPEC)


def answered(number: int, records: int = 1) -> Answered:
    inputs = [
        {"age": 30 + i, "income": None, "region": "north", "seen": "2024-05-01", "time": 1.5}
        for i in range(records)
    ]
    results = [{"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}] * records
    return Answered(f"r{number}", time.time(), "m", 3, "champion", "batch", 2.5, inputs, results)


def window(root: Path):
    return read(str(root), "m", datetime.now(UTC) - timedelta(minutes=5))


def test_rows_are_written_as_answered_with_typed_columns(tmp_path):
    log = InferenceLog(str(tmp_path), "m", flush_seconds=3600)
    log.add(SCHEMA, answered(1, records=3))
    log.add(SCHEMA, answered(2))
    log.close()
    (table,) = window(tmp_path).versions.values()
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["r1", "r1", "r1", "r2"]
    assert [r["inputs"]["age"] for r in rows] == [30, 31, 32, 30]
    assert rows[0]["inputs"] == {
        "age": 30,
        "income": None,
        "region": "north",
        "seen": "2024-05-01",
        "time": 1.5,
    }
    assert rows[0]["probability_yes"] == 0.75 and rows[0]["prediction"] == "yes"
    assert abs(rows[0]["time"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert table.schema.field("inputs").type.field("seen").type == "string"  # kept as sent
    # files are renamed into place: nothing hidden is left behind
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


def test_rows_beyond_the_queue_are_dropped_and_the_count_outlives_the_writer(tmp_path):
    drops: list[int] = []
    log = InferenceLog(
        str(tmp_path), "m", flush_seconds=3600, queue_rows=5, on_dropped=drops.append
    )
    for number in range(8):
        log.add(SCHEMA, answered(number))
    assert sum(drops) == 3
    log.close()  # the writer's last file carries the count
    found = window(tmp_path)
    assert (found.logged, found.dropped) == (5, 3)


def test_a_write_that_fails_counts_its_rows_and_the_next_file_reports_them(tmp_path):
    """The model's folder replaced by a file: writes fail (root ignores permission bits, so
    this is how a test breaks a folder); back, the first file carries what was lost."""
    drops: list[int] = []
    log = InferenceLog(str(tmp_path), "m", flush_seconds=0.05, on_dropped=drops.append)
    folder = tmp_path / "m"
    aside = tmp_path / "m.aside"  # the writer's tally lives in there
    folder.rename(aside)
    folder.write_text("not a folder")
    for number in range(4):
        log.add(SCHEMA, answered(number))
    deadline = time.monotonic() + 10
    while sum(drops) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(drops) == 4  # counted, not waited on: add() never blocked
    log.refuse(422)
    time.sleep(0.3)  # a file of counts alone fails too: it drops no rows, and the writer goes on
    folder.unlink()
    aside.rename(folder)
    log.add(SCHEMA, answered(9, records=2))
    log.answer()  # one sampled out
    log.close()
    assert 0 not in drops  # Ray's counters refuse 0: the writer thread died on one
    found = window(tmp_path)
    assert (found.logged, found.dropped) == (2, 4)
    assert (found.answered, found.refused) == (6, {"422": 1})  # kept until written
    files = sorted(p for p in folder.rglob("*.parquet"))
    assert pq.read_table(files[0]).num_rows == 2


KILLED = """
import os, signal, sys, time
from tests.serving.test_inference_log import SCHEMA, answered
from serving.inference_log import InferenceLog

log = InferenceLog(sys.argv[1], "m", flush_seconds=0.2)
log.add(SCHEMA, answered(1, records=3))
time.sleep(1.0)  # written
log.add(SCHEMA, answered(2, records=4))
log.add(SCHEMA, answered(3, records=1))
os.kill(os.getpid(), signal.SIGKILL)  # before the next flush
"""


def test_a_writer_killed_outright_leaves_its_loss_counted(tmp_path):
    """What a writer was given and never wrote is counted once it is dead (a live writer's
    queue is pending, not lost); a writer that closes cleanly leaves no tally behind."""
    root = Path(__file__).resolve().parents[2]
    alive = InferenceLog(str(tmp_path), "m", flush_seconds=3600)
    alive.add(SCHEMA, answered(9, records=2))  # queued in this live process
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path)],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    seen = window(tmp_path)
    assert (seen.logged, seen.dropped, seen.lost) == (3, 0, 5)
    alive.close()
    seen = window(tmp_path)
    assert (seen.logged, seen.lost) == (5, 5)  # the live one wrote its 2: not lost
    assert len(list((tmp_path / "m" / "_writers").iterdir())) == 1  # the dead one's only


def test_a_big_batch_is_queued_column_by_column_into_the_same_rows():
    """Requests of COLUMNWISE records or more take the column-wise path: same table."""
    spec = {**SPEC, "id_column": "customer"}
    schema = log_schema(spec)
    batch = answered(1, records=COLUMNWISE + 3)
    for i, record in enumerate(batch.inputs):
        record["customer"] = None if i == 2 else 1000 + i  # logged as text, None kept
    by_columns, by_values = Rows(schema), Rows(schema)
    by_columns.append(batch)
    by_values._append_each(batch)  # the value-by-value path, as a small request takes it
    batch_rows = len(batch.inputs)
    assert by_columns.rows == batch_rows
    table = by_columns.table()
    assert table.equals(by_values.table())
    assert table["record"].to_pylist() == list(range(batch_rows))
    assert table["id"].to_pylist()[:3] == ["1000", "1001", None]
    assert table["probability_yes"].to_pylist() == [0.75] * batch_rows
