"""Batch inference: score raw files with a registered model version on Ray Data.

The rows go through the same validation as ETL (against the model's input schema) and the
same `Predictor` as the endpoint. A row that fails validation is kept in the output with
`relay_status = rejected` and its reasons, never dropped. The run is recorded in MLflow
(model version, input file hashes, input digest) and in `manifest.json` beside the output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.compute.runtime import ray_session
from cluster.config import Column, FileSource, RelayConfig
from cluster.errors import DataQualityError
from cluster.tracking.registry import ModelRef, load_verified, resolve
from cluster.tracking.tracker import Tracker
from cluster.writable import ensure_writable
from jobs import bars
from jobs.data.rows import REASONS_COLUMN, ROW_COLUMN, check_rows
from jobs.data.sources import RawFile, raw_sha256, resolve_files
from serving.model import Predictor

STATUS = "relay_status"
REASONS = "relay_reasons"
MANIFEST = "manifest.json"
EVERY_SECONDS = 0.2  # how often the bar reads the tally


class Scorer:
    """Validated rows predicted, the others explained, in input order."""

    def __init__(self, spec: dict[str, Any], weights: dict[str, bytes], version: int):
        self.predictor = Predictor(spec, weights)
        self.columns = [Column(**c) for c in spec["input_schema"]]
        self.classes = spec["features"]["label"].get("classes")
        self.version = version

    def __call__(self, table: pa.Table) -> pa.Table:
        checked = check_rows(table, self.columns, source="")
        rejected = checked.rejects.column(ROW_COLUMN).to_numpy()
        ok = np.ones(table.num_rows, dtype=bool)
        ok[rejected] = False
        reasons = np.full(table.num_rows, None, dtype=object)
        reasons[rejected] = checked.rejects.column(REASONS_COLUMN).to_pylist()
        output = self.predictor.predict_table(checked.good)
        columns: dict[str, pa.Array] = {}
        if self.classes:
            columns["prediction"] = _spread(np.array(self.classes)[output.argmax(1)], ok)
            for i, name in enumerate(self.classes):
                columns[f"probability_{name}"] = _spread(output[:, i], ok)
        else:
            columns["prediction"] = _spread(output, ok)
        columns[STATUS] = pa.array(np.where(ok, "scored", "rejected"))
        columns[REASONS] = pa.array(reasons, type=pa.string())
        columns["model_version"] = pa.array(np.full(table.num_rows, self.version))
        for name, values in columns.items():
            table = table.append_column(name, values)
        return table


_scorers: dict[str, Scorer] = {}


def score_batch(
    table: pa.Table,
    spec: dict[str, Any],
    weights: dict[str, bytes],
    ref: ModelRef,
    tally: Any = None,
) -> pa.Table:
    """The map_batches function. Tasks, not an actor pool: a task fuses with the read, so it
    runs on a single free CPU (an actor would hold it while the reads wait for another);
    the Scorer is cached per worker process. `tally` (a `Tally` actor, when a bar is drawn)
    counts the records scored."""
    if ref.sha256 not in _scorers:
        _scorers.clear()
        _scorers[ref.sha256] = Scorer(spec, weights, ref.version)
    scored = _scorers[ref.sha256](table)
    if tally is not None:
        tally.add.remote(table.num_rows)  # not waited on: the bar may lag, the work does not
    return scored


class Tally:
    """Records scored so far, added by the scoring tasks, read by the driver's bar."""

    def __init__(self) -> None:
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows

    def read(self) -> int:
        return self.rows


def _write(scored: Any, path: str, tally: Any) -> None:
    """`scored.write_parquet(path)` in this thread (signals and errors as ever); with a tally,
    a thread beside it moves the bar as the records are scored."""
    import threading

    import ray

    if tally is None:
        scored.write_parquet(path)
        return
    stop = threading.Event()
    with bars.counting("predict: records scored", None) as advance:

        def follow() -> None:
            seen = 0
            while not stop.wait(EVERY_SECONDS):
                now = ray.get(tally.read.remote())
                advance(now - seen)
                seen = now

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        try:
            scored.write_parquet(path)
        finally:
            stop.set()
            watcher.join()


def _spread(values: np.ndarray, ok: np.ndarray) -> pa.Array:
    """Values for the scored rows, nulls for the rejected ones, in input order."""
    full = np.empty(len(ok), dtype=values.dtype)
    full[ok] = values
    return pa.array(full, mask=~ok)


def batch(
    cfg: RelayConfig,
    inputs: list[str],
    output: Path,
    model: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Score `inputs` (files, folders, globs, URIs) into Parquet under `output`."""
    import ray

    files = resolve_files(FileSource(kind="files", path=inputs))
    manifest = [{"uri": f.uri, "size": f.size, "sha256": raw_sha256(f)} for f in files]
    lines = "".join(f"{m['uri']}:{m['sha256']}\n" for m in manifest)
    input_digest = hashlib.sha256(lines.encode()).hexdigest()
    output = output.resolve()
    if output.exists() and any(output.iterdir()):
        raise DataQualityError(f"--output {output} is not empty: choose a new folder")
    ensure_writable(output, "--output")
    tracker = Tracker.from_config(cfg)
    ref = resolve(tracker.client, cfg.model.name, model or cfg.serve.alias)
    spec, weights = load_verified(tracker.client, ref)  # checked once, before any worker
    tags = _lineage_tags(ref, input_digest)
    with (
        ray_session(cfg.runtime, address),
        tracker.run("predict", stage="predict", tags=tags) as run_id,
    ):
        dataset = _read(files, [c["name"] for c in spec["input_schema"]])
        tally = ray.remote(num_cpus=0)(Tally).remote() if bars.drawn() else None
        scored = dataset.map_batches(
            score_batch,
            fn_kwargs={"spec": spec, "weights": weights, "ref": ref, "tally": tally},
            batch_format="pyarrow",
        )
        _write(scored, str(output / "predictions"), tally)
        status = pq.read_table(output / "predictions", columns=[STATUS]).column(STATUS)
        counts = {
            "rows_scored": int(np.sum(status.to_numpy(zero_copy_only=False) == "scored")),
            "rows_rejected": int(np.sum(status.to_numpy(zero_copy_only=False) == "rejected")),
        }
        summary = {
            "predict_run_id": run_id,
            "model": {"name": ref.name, "version": ref.version, "run_id": ref.run_id},
            "model_sha256": ref.sha256,
            "input_digest": input_digest,
            "inputs": manifest,
            "output": str(output / "predictions"),
            **counts,
        }
        (output / MANIFEST).write_text(json.dumps(summary, indent=2))
        tracker.log(run_id, params={"inputs": len(files), "output": str(output)}, metrics=counts)
        tracker.log_artifact(run_id, output / MANIFEST)
    return summary


def _lineage_tags(ref: ModelRef, input_digest: str) -> dict[str, str]:
    return {
        "relay.model_name": ref.name,
        "relay.model_version": str(ref.version),
        "relay.model_run_id": ref.run_id,
        "relay.sha256": ref.sha256,
        "relay.input_digest": input_digest,
    }


def _read(files: list[RawFile], names: list[str]) -> Any:
    """One Ray Dataset over every file; model inputs read as text so validation sees raw values."""
    import ray
    from pyarrow import csv as pacsv

    by_format: dict[str, list[str]] = {}
    for f in files:
        by_format.setdefault(f.format, []).append(f.uri)
    parts = []
    for fmt, uris in sorted(by_format.items()):
        if fmt == "csv":
            text = pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True
            )
            parts.append(ray.data.read_csv(uris, convert_options=text))
        elif fmt == "parquet":
            parts.append(ray.data.read_parquet(uris))
        else:
            parts.append(ray.data.read_json(uris))
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    missing = sorted(set(names) - set(dataset.schema().names))
    if missing:
        raise DataQualityError(
            f"input files lack the model's input column(s) {missing}; it needs {names}"
        )
    return dataset
