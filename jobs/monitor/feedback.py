"""`relay feedback`: the outcomes of logged predictions, joined to them by request id.

A feedback file (CSV or Parquet) has `request_id`, the label column under its configured name
and, for records of a batch request, `record` (their place in it; 0 when absent). Instead of
the request id it may give the data's declared id column, for requests that sent it: the
outcome then belongs to that id's latest logged prediction. It may carry
the sensitive columns too (never model inputs, so requests do not): the fairness gaps are then
computed on the live outcomes. A row whose label or sensitive value is not what its column
declares, that matches no logged prediction, or that repeats another row's key is quarantined
with its reason, as ETL quarantines a bad row;
the rest is kept under `<log>/<model>/_feedback/`, where `relay monitor` joins it to the
window's predictions for the live metrics. Over `etl.max_reject_rate` quarantined, the
command fails (exit 3) after writing both files: nothing it was given is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.config import RelayConfig, Role
from cluster.errors import ConfigError, DataQualityError
from serving.inference_log import filesystem, log_folder
from serving.launch import inference_log_path
from serving.values import parse

FEEDBACK = "_feedback"  # under the model's log folder; not a date folder, so not read as log
KEYS = ["request_id", "record"]


def read_input(
    path: Path, label: str, sensitive: Sequence[str] = (), id_name: str | None = None
) -> pa.Table:
    """The file's keys (request id, or the declared id as `id`), label and sensitive columns,
    as text (validation sees the values as given)."""
    if not path.is_file():
        raise ConfigError(f"--input: {path} is not a file")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "request_id": pa.string(),
                    label: pa.string(),
                    **{name: pa.string() for name in [*sensitive, *([id_name] if id_name else [])]},
                },
                strings_can_be_null=True,
            ),
        )
    keyed = "request_id" in table.column_names or (id_name and id_name in table.column_names)
    if label not in table.column_names or not keyed:
        by = f"request_id (or the id column {id_name!r})" if id_name else "request_id"
        raise ConfigError(
            f"--input: {path} has columns {table.column_names}: feedback needs {by} and the "
            f"label {label!r} (and record, for the records of a batch request)"
        )
    nothing = pa.nulls(len(table), pa.string())
    record = table["record"] if "record" in table.column_names else pa.array([0] * len(table))
    ids = {"id": table[id_name].cast(pa.string())} if id_name in table.column_names else {}
    return pa.table(
        {
            "request_id": (
                table["request_id"].cast(pa.string())
                if "request_id" in table.column_names
                else nothing
            ),
            **ids,
            "record": pc.fill_null(record.cast(pa.int32()), 0),
            "label": table[label].cast(pa.string()),
            **{n: table[n].cast(pa.string()) for n in sensitive if n in table.column_names},
        }
    )


class Logged(NamedTuple):
    keys: set[tuple[str, int]]  # (request_id, record) of every logged prediction
    by_id: dict[str, tuple[str, int]]  # a declared id -> its latest prediction's key


def logged(root: str, model: str) -> Logged:
    """The keys of every prediction in the model's log, and of each declared id's latest."""
    fs, base = filesystem(log_folder(root, model))
    keys: set[tuple[str, int]] = set()
    latest: dict[str, tuple[Any, tuple[str, int]]] = {}
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    for info in found:
        if info.type != pafs.FileType.File or f"/{FEEDBACK}/" in info.path:
            continue
        if info.base_name.startswith(".") or not info.base_name.endswith(".parquet"):
            continue
        schema = pq.read_schema(info.path, filesystem=fs)
        if "request_id" not in schema.names:  # a writer's drop count alone
            continue
        ided = "id" in schema.names
        table = pq.read_table(
            info.path, columns=[*KEYS, *(["id", "time"] if ided else [])], filesystem=fs
        )
        found = list(zip(table["request_id"].to_pylist(), table["record"].to_pylist(), strict=True))
        keys.update(found)
        if ided:
            for ident, at, key in zip(
                table["id"].to_pylist(), table["time"].to_pylist(), found, strict=True
            ):
                if ident is not None and (ident not in latest or at > latest[ident][0]):
                    latest[ident] = (at, key)
    return Logged(keys, {ident: key for ident, (_, key) in latest.items()})


def by_id(table: pa.Table, ids: dict[str, tuple[str, int]]) -> pa.Table:
    """Rows keyed by the declared id get the request id and record of its latest prediction
    (an id never logged keeps none: quarantined)."""
    if "id" not in table.column_names:
        return table
    requests, records = table["request_id"].to_pylist(), table["record"].to_pylist()
    for i, ident in enumerate(table["id"].to_pylist()):
        if requests[i] is None and ident in ids:
            requests[i], records[i] = ids[ident]
    table = table.set_column(
        table.schema.get_field_index("request_id"), "request_id", pa.array(requests, pa.string())
    )
    return table.set_column(
        table.schema.get_field_index("record"), "record", pa.array(records, pa.int32())
    )


def reasons(cfg: RelayConfig, table: pa.Table, known: set[tuple[str, int]]) -> list[str | None]:
    """Per row: why it is quarantined, or None."""
    column = cfg.data.label
    labels = table["label"].combine_chunks()
    _, bad = parse(labels, column.type, column.format)
    allowed = column.categories if isinstance(column.categories, list) else None
    groups = {
        c.name: (table[c.name].to_pylist(), c.categories)
        for c in cfg.data.by_role(Role.sensitive)
        if c.name in table.column_names and isinstance(c.categories, list)
    }
    seen: set[tuple[str, int]] = set()
    out: list[str | None] = []
    keys = zip(table["request_id"].to_pylist(), table["record"].to_pylist(), strict=True)
    ids = table["id"].to_pylist() if "id" in table.column_names else [None] * len(table)
    rows = zip(keys, ids, labels.to_pylist(), bad, strict=True)
    for (request, record), ident, label, unparsed in rows:
        key = (request, record)
        if request is None and ident is not None:
            out.append(f"no logged prediction has this {cfg.data.id.name if cfg.data.id else 'id'}")
        elif request is None or label is None:
            out.append("request_id or label empty")
        elif unparsed or (allowed is not None and label not in allowed):
            valid = allowed if allowed is not None else f"a {column.type.value}"
            out.append(f"label {label!r} is not {valid}")
        elif outside := _undeclared(groups, len(out)):
            out.append(outside)
        elif key not in known:
            out.append("no logged prediction has this request_id and record")
        elif key in seen:
            out.append("a second outcome for the same request_id and record")
        else:
            out.append(None)
        seen.add(key)
    return out


def _undeclared(groups: dict[str, tuple[list[Any], list[str]]], row: int) -> str | None:
    """Why a row's sensitive value is not one its column declares (empty is a group)."""
    for name, (values, allowed) in groups.items():
        if values[row] is not None and values[row] not in allowed:
            return f"{name} {values[row]!r} is not one of {allowed}"
    return None


def run(cfg: RelayConfig, path: Path) -> dict[str, Any]:
    """Validate, keep and quarantine one feedback file; the summary."""
    root = inference_log_path(cfg)
    sensitive = [c.name for c in cfg.data.by_role(Role.sensitive)]
    id_name = cfg.data.id.name if cfg.data.id else None
    found = logged(root, cfg.model.name)
    table = by_id(read_input(path, cfg.data.label.name, sensitive, id_name), found.by_id)
    why = reasons(cfg, table, found.keys)
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
    """Every accepted outcome (request_id, record, label and the sensitive columns given; a
    file without one has it empty), the latest per key."""
    fs, base = filesystem(f"{log_folder(root, model)}/{FEEDBACK}")
    found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    parts = [
        pq.read_table(i.path, filesystem=fs)
        for i in sorted(found, key=lambda i: i.base_name)
        if i.base_name.startswith("feedback-")
    ]
    if not parts:
        return None
    table = pa.concat_tables(parts, promote_options="default")
    # the last file's outcome wins: keep each key's row with the latest `received`
    latest = table.group_by(KEYS).aggregate([("received", "max")])
    kept = table.join(latest, keys=[*KEYS, "received"], right_keys=[*KEYS, "received_max"])
    return kept.drop_columns(["received"])
