"""`relay feedback`: the outcomes of logged predictions, joined to them by request id.

A feedback file (CSV or Parquet) has `request_id`, the label column under its configured name
and, for records of a batch request, `record` (their place in it; 0 when absent). A row whose
label does not parse as the label column declares, that matches no logged prediction, or that
repeats another row's key is quarantined with its reason, as ETL quarantines a bad row;
the rest is kept under `<log>/<model>/_feedback/`, where `relay monitor` joins it to the
window's predictions for the live metrics. Over `etl.max_reject_rate` quarantined, the
command fails (exit 3) after writing both files: nothing it was given is lost.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.config import RelayConfig
from cluster.errors import ConfigError, DataQualityError
from serving.inference_log import filesystem, log_folder
from serving.launch import inference_log_path
from serving.values import parse

FEEDBACK = "_feedback"  # under the model's log folder; not a date folder, so not read as log
KEYS = ["request_id", "record"]


def read_input(path: Path, label: str) -> pa.Table:
    """The file's key and label columns, as text (validation sees the values as given)."""
    if not path.is_file():
        raise ConfigError(f"--input: {path} is not a file")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"request_id": pa.string(), label: pa.string()},
                strings_can_be_null=True,
            ),
        )
    missing = [c for c in ("request_id", label) if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"--input: {path} lacks column(s) {missing}: feedback needs request_id and the "
            f"label {label!r} (and record, for the records of a batch request)"
        )
    record = table["record"] if "record" in table.column_names else pa.array([0] * len(table))
    return pa.table(
        {
            "request_id": table["request_id"].cast(pa.string()),
            "record": pc.fill_null(record.cast(pa.int32()), 0),
            "label": table[label].cast(pa.string()),
        }
    )


def logged_keys(root: str, model: str) -> set[tuple[str, int]]:
    """(request_id, record) of every prediction in the model's log."""
    fs, base = filesystem(log_folder(root, model))
    keys: set[tuple[str, int]] = set()
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    for info in found:
        if info.type != pafs.FileType.File or f"/{FEEDBACK}/" in info.path:
            continue
        if info.base_name.startswith(".") or not info.base_name.endswith(".parquet"):
            continue
        schema = pq.read_schema(info.path, filesystem=fs)
        if "request_id" not in schema.names:  # a writer's drop count alone
            continue
        table = pq.read_table(info.path, columns=KEYS, filesystem=fs)
        keys.update(zip(table["request_id"].to_pylist(), table["record"].to_pylist(), strict=True))
    return keys


def reasons(cfg: RelayConfig, table: pa.Table, known: set[tuple[str, int]]) -> list[str | None]:
    """Per row: why it is quarantined, or None."""
    column = cfg.data.label
    labels = table["label"].combine_chunks()
    _, bad = parse(labels, column.type, column.format)
    allowed = column.categories if isinstance(column.categories, list) else None
    seen: set[tuple[str, int]] = set()
    out: list[str | None] = []
    keys = zip(table["request_id"].to_pylist(), table["record"].to_pylist(), strict=True)
    for (request, record), label, unparsed in zip(keys, labels.to_pylist(), bad, strict=True):
        key = (request, record)
        if request is None or label is None:
            out.append("request_id or label empty")
        elif unparsed or (allowed is not None and label not in allowed):
            valid = allowed if allowed is not None else f"a {column.type.value}"
            out.append(f"label {label!r} is not {valid}")
        elif key not in known:
            out.append("no logged prediction has this request_id and record")
        elif key in seen:
            out.append("a second outcome for the same request_id and record")
        else:
            out.append(None)
        seen.add(key)
    return out


def run(cfg: RelayConfig, path: Path) -> dict[str, Any]:
    """Validate, keep and quarantine one feedback file; the summary."""
    root = inference_log_path(cfg)
    table = read_input(path, cfg.data.label.name)
    why = reasons(cfg, table, logged_keys(root, cfg.model.name))
    bad = np.array([w is not None for w in why], dtype=bool)
    now = datetime.now(UTC)
    received = pa.array([now] * len(table), pa.timestamp("us", tz="UTC"))
    fs, base = filesystem(f"{log_folder(root, cfg.model.name)}/{FEEDBACK}")
    fs.create_dir(base, recursive=True)
    stem = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
    written = {}
    for kind, mask in (("feedback", ~bad), ("quarantine", bad)):
        part = table.filter(pa.array(mask)).append_column("received", received.filter(mask))
        if kind == "quarantine":
            part = part.append_column("reason", pa.array([w for w in why if w is not None]))
        if part.num_rows:
            written[kind] = f"{base}/{kind}-{stem}.parquet"
            pq.write_table(part, written[kind], filesystem=fs)
    counts: dict[str, int] = {}
    for w in why:
        if w is not None:
            counts[w] = counts.get(w, 0) + 1
    summary = {
        "rows": len(table),
        "accepted": int((~bad).sum()),
        "quarantined": int(bad.sum()),
        "reasons": counts,
        "files": written,
    }
    rate = summary["quarantined"] / max(len(table), 1)
    if rate > cfg.etl.max_reject_rate:
        raise DataQualityError(
            f"{summary['quarantined']} of {len(table)} feedback rows quarantined ({rate:.1%} > "
            f"etl.max_reject_rate {cfg.etl.max_reject_rate:.1%}): {counts}; kept in "
            f"{written.get('quarantine')}"
        )
    return summary


def outcomes(root: str, model: str) -> pa.Table | None:
    """Every accepted outcome (request_id, record, label), the latest per key."""
    fs, base = filesystem(f"{log_folder(root, model)}/{FEEDBACK}")
    found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    parts = [
        pq.read_table(i.path, columns=[*KEYS, "label", "received"], filesystem=fs)
        for i in sorted(found, key=lambda i: i.base_name)
        if i.base_name.startswith("feedback-")
    ]
    if not parts:
        return None
    table = pa.concat_tables(parts)
    # the last file's outcome wins: keep each key's row with the latest `received`
    latest = table.group_by(KEYS).aggregate([("received", "max")])
    return table.join(latest, keys=[*KEYS, "received"], right_keys=[*KEYS, "received_max"]).select(
        [*KEYS, "label"]
    )
