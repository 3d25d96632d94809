"""The inference log: every answered prediction, written off the request path.

A replica hands each answered request to `InferenceLog.add`, which only appends to a bounded
in-memory queue (no I/O and no waiting on the request path). A writer thread takes what has
queued every `flush_seconds` and writes it as one Parquet file under
`<path>/<model>/<UTC date>/`: written as a hidden temporary file and renamed, so a reader
never sees a half-written file, and a replica that dies loses only what it had not flushed.
The queue is bounded: when the writer cannot keep up or cannot write (a full disk, a folder
made read-only), rows are dropped and counted, never waited on, and the endpoint keeps
answering. Each file that is written carries the count dropped since the last one (and
`close` writes a last count), so `relay monitor` reports the loss. `close` (a replica's
graceful shutdown) drains the queue: a clean stop loses nothing that was answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.config import EPOCH_FORMATS

log = logging.getLogger("ray.serve")

PROBABILITY = "probability_"  # a classifier's column per class: probability_<class>
DROPS_KEY = b"relay.dropped"  # file metadata: rows dropped by this writer since its last file
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "category": pa.string()}


def input_type(column: dict[str, Any]) -> pa.DataType:
    """A request field's Arrow type; a timestamp is kept as it was sent (text or epoch number),
    and parsed by the monitor with the column's format, as ETL parses it."""
    if column["type"] == "timestamp":
        return pa.float64() if column.get("format") in EPOCH_FORMATS else pa.string()
    return _ARROW[column["type"]]


def log_schema(spec: dict[str, Any]) -> pa.Schema:
    """The columns of a model version's log files: who answered, when, how fast, the inputs
    (a struct: feature names never collide with these), the prediction."""
    inputs = pa.struct([pa.field(c["name"], input_type(c)) for c in spec["input_schema"]])
    fields = [
        pa.field("request_id", pa.string()),
        pa.field("record", pa.int32()),  # its place in the request (a batch has many)
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.int64()),
        pa.field("role", pa.string()),  # champion | challenger
        pa.field("route", pa.string()),  # predict | batch
        pa.field("latency_ms", pa.float64()),
        pa.field("inputs", inputs),
    ]
    if spec["task"] == "classification":
        fields.append(pa.field("prediction", pa.string()))
        classes = spec["features"]["label"]["classes"]
        fields += [pa.field(f"{PROBABILITY}{c}", pa.float64()) for c in classes]
    else:
        fields.append(pa.field("prediction", pa.float64()))
    return pa.schema(fields)


def log_folder(root: str, model: str) -> str:
    return f"{root.rstrip('/')}/{model}"


class Answered(NamedTuple):
    """One answered request as a replica hands it over: the writer thread, not the request,
    turns it into rows."""

    request_id: str
    time: float  # epoch seconds
    model_name: str
    model_version: int
    role: str
    route: str
    latency_ms: float
    inputs: list[dict[str, Any]]  # the records as the request validated them
    results: list[dict[str, Any]]  # the answer per record: prediction (and probabilities)


def table_of(schema: pa.Schema, answers: list[Answered]) -> pa.Table:
    """The rows of these answers, built column by column."""
    records = [r for a in answers for r in a.inputs]
    results = [r for a in answers for r in a.results]

    def each(value: Callable[[Answered], Any], kind: pa.DataType) -> pa.Array:
        """A per-request value, repeated for each of its records."""
        return pa.array([value(a) for a in answers for _ in a.inputs], kind)

    inputs = schema.field("inputs").type
    columns = {
        "request_id": each(lambda a: a.request_id, pa.string()),
        "record": pa.array([i for a in answers for i in range(len(a.inputs))], pa.int32()),
        "time": each(lambda a: round(a.time * 1e6), pa.int64()).cast(schema.field("time").type),
        "model_name": each(lambda a: a.model_name, pa.string()),
        "model_version": each(lambda a: a.model_version, pa.int64()),
        "role": each(lambda a: a.role, pa.string()),
        "route": each(lambda a: a.route, pa.string()),
        "latency_ms": each(lambda a: a.latency_ms, pa.float64()),
        "inputs": pa.StructArray.from_arrays(
            [pa.array([r.get(f.name) for r in records], f.type) for f in inputs],
            fields=list(inputs),
        ),
        "prediction": pa.array([r["prediction"] for r in results], schema.field("prediction").type),
    }
    for name in schema.names:
        if name.startswith(PROBABILITY):
            label = name[len(PROBABILITY) :]
            columns[name] = pa.array([r["probabilities"][label] for r in results], pa.float64())
    return pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)


class InferenceLog:
    """One replica's writer of the inference log (see the module docstring)."""

    def __init__(
        self,
        root: str,
        model: str,
        *,
        flush_seconds: float = 5.0,
        queue_rows: int = 100_000,
        on_written: Callable[[int], None] = lambda rows: None,
        on_dropped: Callable[[int], None] = lambda rows: None,
    ):
        self.fs, base = filesystem(log_folder(root, model))
        self.base = base.rstrip("/")
        self.flush_seconds, self.queue_rows = flush_seconds, queue_rows
        self.on_written, self.on_dropped = on_written, on_dropped
        self.writer_id = uuid.uuid4().hex[:12]  # file names: never two writers on one name
        self.lock = threading.Lock()  # requests come from the event loop and a thread pool
        self.queue: deque[tuple[pa.Schema, Answered]] = deque()
        self.queued = 0  # rows in the queue
        self.dropped = 0  # rows dropped since the last file written
        self.files = 0
        self.failing = False
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="relay-inference-log", daemon=True)
        self.thread.start()

    def add(self, schema: pa.Schema, answered: Answered) -> None:
        """Queue one answered request (its version's log schema); drop it when full."""
        rows = len(answered.inputs)
        with self.lock:
            full = self.stopping or self.queued + rows > self.queue_rows
            if full:
                self.dropped += rows
            else:
                self.queued += rows
                self.queue.append((schema, answered))
        if full:
            self.on_dropped(rows)

    def close(self, timeout: float = 20.0) -> None:
        """Write what is queued and stop (graceful shutdown)."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.flush_seconds)
            self._flush()
        self._flush()
        if self.dropped:  # the count must outlive this writer
            self._write(pa.table({}))

    def _flush(self) -> None:
        with self.lock:
            queued, self.queue, self.queued = self.queue, deque(), 0
        # one file per version's schema; grouped by identity (hashing a schema per request
        # cost more than building its table)
        taken: dict[int, tuple[pa.Schema, list[Answered]]] = {}
        for schema, answered in queued:
            taken.setdefault(id(schema), (schema, []))[1].append(answered)
        for schema, answers in taken.values():
            self._write(table_of(schema, answers))

    def _write(self, table: pa.Table) -> None:
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S%f}-{self.writer_id}-{self.files:06d}.parquet"
        folder = f"{self.base}/{now:%Y-%m-%d}"
        rows = table.num_rows
        with self.lock:
            dropped = self.dropped
        table = table.replace_schema_metadata({DROPS_KEY: json.dumps(dropped).encode()})
        try:
            self.fs.create_dir(folder, recursive=True)
            temporary = f"{folder}/.{name}.tmp"
            pq.write_table(table, temporary, filesystem=self.fs)
            self.fs.move(temporary, f"{folder}/{name}")
        except Exception as exc:  # a full disk, a read-only folder: count the loss, go on
            with contextlib.suppress(Exception):
                self.fs.delete_file(f"{folder}/.{name}.tmp")
            with self.lock:
                self.dropped += rows
            self.on_dropped(rows)
            if not self.failing:
                log.warning("inference log: cannot write under %s (%s); dropping", folder, exc)
            self.failing = True
            return
        if self.failing:
            log.warning("inference log: writing again under %s", folder)
        self.failing = False
        self.files += 1
        with self.lock:
            self.dropped -= dropped
        if rows:
            self.on_written(rows)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A URI's filesystem (s3://, gs://, file://) or a local path's."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)
