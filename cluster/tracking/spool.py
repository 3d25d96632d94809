"""Tracking records the server did not take: an append-only local journal, and its replay.

When the tracking server stays down past the retry window, the Tracker appends each call here
in order (JSON lines, artifact files copied beside them) instead of losing it. `relay tracking
sync` replays the journals with the same run ids, timestamps and steps. A cursor records how far
a replay got, so an interrupted sync resumes where it stopped; a journal is deleted only when all
of it went through.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path
from typing import Any

from cluster.errors import ClusterUnreachableError, ConfigError
from cluster.redact import HIDDEN, redacted
from cluster.tracking import retry

SPOOL = "tracking-spool"
RECORDS = "records.jsonl"
META = "journal.json"
CURSOR = "cursor"
FILE_OPS = ("log_artifact", "log_artifacts")


def spool_root(state_dir: str | Path) -> Path:
    return Path(state_dir).resolve() / SPOOL


class Journal:
    """One writer's journal: its own folder, so concurrent writers never interleave records."""

    def __init__(self, root: Path, uri: str):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.folder = root / f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.uri = uri
        self.count = 0

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably; a file or folder it names is copied into the journal."""
        if self.count == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            # never the password: sync then needs --tracking-uri with it
            (self.folder / META).write_text(json.dumps({"uri": redacted(self.uri)}))
        if record["op"] in FILE_OPS:
            source = Path(record["path"])
            copy = Path("files") / str(self.count) / source.name
            if source.is_dir():
                shutil.copytree(source, self.folder / copy)
            else:
                (self.folder / copy).parent.mkdir(parents=True)
                shutil.copy2(source, self.folder / copy)
            record = {**record, "path": str(copy)}
        with (self.folder / RECORDS).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.count += 1


def apply(client: Any, record: dict[str, Any], base: Path = Path("/")) -> None:
    """Send one record; relative artifact paths are taken from `base` (a journal folder)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    op, run_id = record["op"], record["run_id"]
    if op in FILE_OPS and not (base / record["path"]).resolve().is_relative_to(base.resolve()):
        raise ConfigError(f"spool record names {record['path']}, outside its journal {base}")
    if op == "log_batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step) for k, v, ts, step in record["metrics"]],
            params=[Param(k, v) for k, v in record["params"].items()],
            tags=[RunTag(k, v) for k, v in record["tags"].items()],
        )
    elif op == "set_terminated":
        client.set_terminated(run_id, record["status"], end_time=record["end_time"])
    elif op == "update_run":
        client.update_run(run_id, status=record["status"])
    elif op == "log_artifact":
        client.log_artifact(run_id, str(base / record["path"]), record["artifact_path"])
    elif op == "log_artifacts":
        client.log_artifacts(run_id, str(base / record["path"]), record["artifact_path"])
    elif op == "log_inputs":
        dataset = DatasetInput(
            Dataset(**record["dataset"]), [InputTag("mlflow.data.context", record["context"])]
        )
        client.log_inputs(run_id, [dataset])
    else:
        raise ValueError(f"unknown spool record op {op!r}")


def journals(root: Path) -> list[Path]:
    """Journals oldest first (their names start with a UTC timestamp)."""
    return sorted(p.parent for p in root.glob(f"*/{RECORDS}")) if root.is_dir() else []


def sync(root: Path, uri: str | None = None, retry_seconds: float = 30.0) -> dict[str, Any]:
    """Replay every journal under `root` to `uri` (default: the server each was meant for)."""

    started = time.perf_counter()
    replayed = 0
    found = journals(root)
    for folder in found:
        target = uri or json.loads((folder / META).read_text())["uri"]
        if f":{HIDDEN}@" in target:
            raise ConfigError(
                f"{folder} was meant for {target}: pass --tracking-uri with the password"
            )
        replayed += _replay(folder, target, retry_seconds)
        shutil.rmtree(folder)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return {
        "journals": len(found),
        "records": replayed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _replay(folder: Path, uri: str, retry_seconds: float) -> int:
    from mlflow.tracking import MlflowClient

    retry.own_http_retries(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    lines = (folder / RECORDS).read_text().splitlines()
    cursor = folder / CURSOR
    start = int(cursor.read_text()) if cursor.exists() else 0
    for index in range(start, len(lines)):
        try:
            record = json.loads(lines[index])
            with redirect_stdout(sys.stderr):  # MLflow prints run URLs; stdout is for --json
                retry.retry(partial(apply, client, record, folder), retry_seconds, uri)
        except ConfigError:
            raise  # a tampered journal: trying again will not help
        except Exception as exc:  # MLflow raises many types; the spool stays for the next try
            first = redacted(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
            raise ClusterUnreachableError(
                f"relay tracking sync stopped at record {index + 1} of {len(lines)} in {folder} "
                f"({first}); nothing was deleted: run it again when the server answers"
            ) from None
        temporary = cursor.with_suffix(".tmp")
        temporary.write_text(str(index + 1))
        temporary.replace(cursor)
    return len(lines) - start
