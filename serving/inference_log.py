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
graceful shutdown) drains the queue: a clean stop loses nothing that was answered. A replica
killed outright loses what it had not written, and that loss is counted too (`Tally`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.config import EPOCH_FORMATS, ColumnType
from serving.values import parse

log = logging.getLogger("ray.serve")

PROBABILITY = "probability_"  # a classifier's column per class: probability_<class>
DROPS_KEY = b"relay.dropped"  # file metadata: rows dropped by this writer since its last file
REFUSED_KEY = b"relay.refused"  # file metadata: prediction requests refused since, by status
ANSWERED_KEY = b"relay.answered"  # file metadata: prediction requests answered since (unsampled)
TALLIES = "_writers"  # under the model's log folder: one tally per writer (not a date folder)
TALLY_SUFFIX = ".tally"
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
    ]
    if spec.get("id_column"):  # the caller's id of the record, as text, when it sent one
        fields.append(pa.field("id", pa.string(), metadata={b"column": spec["id_column"]}))
    fields += [
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.int64()),
        pa.field("role", pa.string()),  # champion | challenger | shadow
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


def inputs_of(table: pa.Table, spec: dict[str, Any]) -> pa.Table:
    """The logged inputs as columns like the training split's: timestamps parsed with their
    column's format, as ETL parses them."""
    struct = table["inputs"].combine_chunks()
    columns = {}
    for column in spec["input_schema"]:
        raw = struct.field(column["name"])
        if column["type"] == "timestamp":
            raw = parse(raw, ColumnType.timestamp, column.get("format"))[0]
        columns[column["name"]] = raw
    return pa.table(columns)


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


COLUMNWISE = 8  # records in a request from which `Rows` queues it column by column
_REQUEST_FIELDS = ("request_id", "model_name", "model_version", "role", "route", "latency_ms")


class Rows:
    """One version's queued rows, as a Python list per column.

    A queued request leaves only atomic values (text, numbers, None) behind, which Python's
    garbage collector does not track. Queuing the requests themselves (their lists, dicts and
    tuples: ~4 tracked objects each, alive until the flush) set off full collections over a
    replica's ~0.5M long-lived objects: 9.8 us per request queued with the collector on, 1.6
    with it off (torch, pyarrow and mlflow imported, as in a replica).
    """

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        classes = [n[len(PROBABILITY) :] for n in schema.names if n.startswith(PROBABILITY)]
        self.id = schema.field("id").metadata[b"column"].decode() if "id" in schema.names else None
        names = [*_REQUEST_FIELDS, "record", "time", "prediction", "id"]
        self.lists: dict[str, list[Any]] = {n: [] for n in names}
        # apart from the log's own columns: a feature may be named "time"
        self.inputs: dict[str, list[Any]] = {f.name: [] for f in schema.field("inputs").type}
        self.answers: dict[str, list[float]] = {c: [] for c in classes}
        self.rows = 0

    def append(self, answered: Answered) -> None:
        records, results = answered.inputs, answered.results
        if len(results) != len(records):
            raise ValueError(f"{len(records)} records but {len(results)} answers")
        if len(records) < COLUMNWISE:
            self._append_each(answered)
        else:
            self._append_columns(answered)
        self.rows += len(records)

    def _append_each(self, answered: Answered) -> None:
        """Value by value: 2 us per record, the least for a request of a few records."""
        lists, inputs, answers = self.lists, self.inputs, self.answers
        for place, (record, result) in enumerate(
            zip(answered.inputs, answered.results, strict=True)
        ):
            for name in _REQUEST_FIELDS:
                lists[name].append(getattr(answered, name))
            lists["record"].append(place)
            lists["time"].append(answered.time)
            lists["prediction"].append(result["prediction"])
            for name, values in inputs.items():
                values.append(record.get(name))
            for label, values in answers.items():
                values.append(result["probabilities"][label])
            if self.id:
                value = record.get(self.id)
                lists["id"].append(None if value is None else str(value))

    def _append_columns(self, answered: Answered) -> None:
        """Column by column, through iterators: ~6 us per request + 0.5 us per record (a
        256-record batch: 0.5 us per record instead of 1.1), one extension per column instead
        of one append per value."""
        lists, records, results = self.lists, answered.inputs, answered.results
        count = len(records)
        for name in _REQUEST_FIELDS:
            lists[name].extend(repeat(getattr(answered, name), count))
        lists["record"].extend(range(count))
        lists["time"].extend(repeat(answered.time, count))
        lists["prediction"].extend(map(itemgetter("prediction"), results))
        for name, values in self.inputs.items():
            values.extend(map(dict.get, records, repeat(name)))
        if self.answers:
            probabilities = list(map(itemgetter("probabilities"), results))
            for label, values in self.answers.items():
                values.extend(map(itemgetter(label), probabilities))
        if self.id:
            ids = map(dict.get, records, repeat(self.id))
            lists["id"].extend(None if value is None else str(value) for value in ids)

    def table(self) -> pa.Table:
        schema, lists = self.schema, self.lists
        inputs = schema.field("inputs").type
        micros = np.rint(np.asarray(lists["time"], np.float64) * 1e6).astype(np.int64)
        columns = {n: pa.array(lists[n], schema.field(n).type) for n in _REQUEST_FIELDS}
        columns |= {
            "record": pa.array(lists["record"], pa.int32()),
            "time": pa.array(micros).cast(schema.field("time").type),
            "inputs": pa.StructArray.from_arrays(
                [pa.array(self.inputs[f.name], f.type) for f in inputs], fields=list(inputs)
            ),
            "prediction": pa.array(lists["prediction"], schema.field("prediction").type),
            **{f"{PROBABILITY}{c}": pa.array(v, pa.float64()) for c, v in self.answers.items()},
        }
        if self.id:
            columns["id"] = pa.array(lists["id"], pa.string())
        return pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)


class Tally:
    """A writer's running count of the records handed to it, in a small memory-mapped file.

    The kernel keeps a shared mapping's pages when the process dies, so a replica killed
    outright (SIGKILL, the OOM killer) leaves the count of what it was given; its files say how
    many it wrote or counted as dropped, and the difference is the loss (`lost`). While the
    writer lives it holds a lock on the file: a reader that can take the lock knows it is gone.
    Local (or mounted) log folders only: an object store has no such file.
    """

    LAYOUT = struct.Struct("<qd")  # records handed over; epoch seconds of the latest

    def __init__(self, folder: str, writer_id: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{writer_id}{TALLY_SUFFIX}")
        # sized and locked under a hidden name first: a reader never sees it unlocked or empty
        building = os.path.join(folder, f".{writer_id}.tmp")
        self.fd = os.open(building, os.O_RDWR | os.O_CREAT, 0o644)  # open for its life
        try:
            os.ftruncate(self.fd, self.LAYOUT.size)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.map = mmap.mmap(self.fd, self.LAYOUT.size)
            os.rename(building, self.path)
        except OSError:
            os.close(self.fd)
            raise

    def count(self, records: int) -> None:
        self.LAYOUT.pack_into(self.map, 0, records, time.time())

    def remove(self) -> None:
        """Everything handed over is written or counted: nothing for a reader to find."""
        self.map.close()
        os.unlink(self.path)
        os.close(self.fd)


def lost(fs: pafs.FileSystem, base: str, since: float) -> int:
    """Records that writers killed since `since` (epoch seconds) were handed and never wrote
    nor counted as dropped: each dead writer's tally less the rows and drops of its files."""
    if not isinstance(fs, pafs.LocalFileSystem) or not os.path.isdir(f"{base}/{TALLIES}"):
        return 0
    total = 0
    for name in os.listdir(f"{base}/{TALLIES}"):
        if not name.endswith(TALLY_SUFFIX):
            continue
        try:
            with open(f"{base}/{TALLIES}/{name}", "rb") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive: what it holds is still to be written
                raw = file.read(Tally.LAYOUT.size)
        except FileNotFoundError:
            continue  # its writer closed cleanly meanwhile
        if len(raw) < Tally.LAYOUT.size:
            continue
        handed, latest = Tally.LAYOUT.unpack(raw)
        if latest >= since:
            total += handed - _accounted(base, name.removesuffix(TALLY_SUFFIX))
    return total


def _accounted(base: str, writer_id: str) -> int:
    """Rows one writer's files hold, plus the drops they record."""
    found = 0
    for folder, _, files in os.walk(base):
        for name in files:
            if name.endswith(".parquet") and f"-{writer_id}-" in name:
                meta = pq.read_metadata(os.path.join(folder, name))
                found += meta.num_rows + json.loads((meta.metadata or {}).get(DROPS_KEY, b"0"))
    return found


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
        on_table: Callable[[pa.Table], None] = lambda table: None,
    ):
        self.fs, base = filesystem(log_folder(root, model))
        self.base = base.rstrip("/")
        self.flush_seconds, self.queue_rows = flush_seconds, queue_rows
        self.on_written, self.on_dropped, self.on_table = on_written, on_dropped, on_table
        self.writer_id = uuid.uuid4().hex[:12]  # file names: never two writers on one name
        self.lock = threading.Lock()  # requests come from the event loop and a thread pool
        self.queue: dict[int, Rows] = {}  # per version's schema (by identity: hashing one per
        self.queued = 0  # rows in the queue           # request cost more than its rows)
        self.dropped = 0  # rows dropped since the last file written
        self.refused: dict[str, int] = {}  # status -> prediction requests refused since then
        self.answered = 0  # prediction requests answered since then, logged or sampled out
        self.files = 0
        self.failing = False
        self.handed = 0  # rows given to `add`, ever
        self.tally = None
        if isinstance(self.fs, pafs.LocalFileSystem):
            try:
                self.tally = Tally(f"{self.base}/{TALLIES}", self.writer_id)
            except OSError as exc:  # the log itself then fails and counts: no worse
                log.warning("inference log: no tally under %s (%s)", self.base, exc)
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="relay-inference-log", daemon=True)
        self.thread.start()

    def add(self, schema: pa.Schema, answered: Answered, request: bool = True) -> None:
        """Queue one answered request (its version's log schema); drop it when full.
        `request`: it counts as a request answered (a shadow's copy does not)."""
        rows = len(answered.inputs)
        with self.lock:
            self.answered += request  # `answer` counts the requests sampled out
            self.handed += rows
            if self.tally is not None:  # None once a clean close removed it
                self.tally.count(self.handed)
            full = self.stopping or self.queued + rows > self.queue_rows
            if full:
                self.dropped += rows
            else:
                self.queued += rows
                if (queued := self.queue.get(id(schema))) is None:
                    queued = self.queue[id(schema)] = Rows(schema)
                queued.append(answered)
        if full:
            self.on_dropped(rows)

    def refuse(self, status: int) -> None:
        """Count a prediction request answered with an error (4xx: what the client sent)."""
        with self.lock:
            self.refused[str(status)] = self.refused.get(str(status), 0) + 1

    def answer(self) -> None:
        """Count a prediction request answered, before sampling: the refusals' denominator."""
        with self.lock:
            self.answered += 1

    def close(self, timeout: float = 20.0) -> None:
        """Write what is queued and stop (graceful shutdown)."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)
        with self.lock:  # `add` counts under the same lock: never on a closed map
            if self.tally is not None and not self.thread.is_alive() and not self.dropped:
                self.tally.remove()
                self.tally = None

    def _run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.flush_seconds)
            try:
                self._flush()
            except Exception:  # the writer must outlive any one flush: the next one retries
                log.exception("inference log: a flush failed")
        self._flush()
        if self.dropped or self.refused or self.answered:  # the counts outlive this writer
            self._write(pa.table({}))

    def _flush(self) -> None:
        with self.lock:
            taken, self.queue, self.queued = self.queue, {}, 0
        for queued in taken.values():  # one file per version's schema
            try:
                table = queued.table()
            except Exception:  # rows it cannot build are dropped and counted, never silent
                log.exception("inference log: cannot build %d rows", queued.rows)
                rows = queued.rows
                with self.lock:
                    self.dropped += rows
                if rows:
                    self.on_dropped(rows)
                continue
            self._write(table)
        if not taken and (self.refused or self.answered):  # counts alone: written all the same
            self._write(pa.table({}))

    def _write(self, table: pa.Table) -> None:
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S%f}-{self.writer_id}-{self.files:06d}.parquet"
        folder = f"{self.base}/{now:%Y-%m-%d}"
        rows = table.num_rows
        with self.lock:
            dropped, refused, answered = self.dropped, self.refused, self.answered
            self.refused, self.answered = {}, 0  # in this file; back if it is not written
        metadata = {
            DROPS_KEY: json.dumps(dropped).encode(),
            REFUSED_KEY: json.dumps(refused),
            ANSWERED_KEY: json.dumps(answered),
        }
        table = table.replace_schema_metadata(metadata)
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
                for status, count in refused.items():
                    self.refused[status] = self.refused.get(status, 0) + count
                self.answered += answered
            if rows:  # a counts-only file lost no rows (Ray's counters refuse 0)
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
            try:
                self.on_table(table)  # the live drift gauges
            except Exception:
                log.exception("inference log: the written rows' consumer failed")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A URI's filesystem (s3://, gs://, file://) or a local path's."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)
