"""Raw inputs: resolving a source to files (local or object store) and streaming their rows.

Files are read in batches so a task's memory is bounded by the batch size, not the file size.
CSV and JSON values arrive as strings, so a malformed value becomes a reject, not a crash; a
file Arrow cannot parse at all (mixed JSON types, bad UTF-8) is re-read by a slower
pure-Python reader instead of failing the stage.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from cluster.config import FileSource
from cluster.digests import stream_sha256
from cluster.errors import ConfigError, DataQualityError

SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_GLOB = set("*?[")
MAX_FIELD_CHARS = 1 << 26  # one CSV value up to 64 Mi characters (the csv module's is 128 Ki)


@dataclass(frozen=True)
class RawFile:
    uri: str  # a local absolute path, or scheme://path for an object store
    format: str
    size: int
    sha256: str = ""  # filled in by ETL before any row is read (jobs.etl.buildkey)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def raw_sha256(raw: RawFile) -> str:
    """The raw file's bytes, through the same filesystem layer that reads it."""
    fs, path = filesystem(raw.uri)
    with fs.open_input_stream(path) as handle:
        return stream_sha256(handle)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for a path or URI, and the path within it."""
    if "://" in uri:
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, ValueError) as exc:
            raise ConfigError(f"data.source.path: cannot open {uri}: {exc}") from None
        return fs, path
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def uri_of(fs: pafs.FileSystem, path: str) -> str:
    """A local path as is, anything else as scheme://path."""
    return path if isinstance(fs, pafs.LocalFileSystem) else f"{fs.type_name}://{path}"


def resolve_files(source: FileSource) -> list[RawFile]:
    """Every data file the source names, de-duplicated, in a stable order."""
    found = {raw.uri: raw for entry in entries(source) for raw in entry_files(entry, source.format)}
    return [found[k] for k in sorted(found)]


def entries(source: FileSource) -> list[str]:
    return [source.path] if isinstance(source.path, str) else source.path


def is_local(entry: str) -> bool:
    """A plain path or a file:// URI: checkable without the network (an object store is not)."""
    return "://" not in entry or entry.startswith("file://")


def offline_counts(source: FileSource) -> dict[str, int | None]:
    """Data files per entry of data.source.path, as a run resolves them; None for a remote
    URI, which only the network can check. `relay validate` prints these."""
    return {e: len(entry_files(e, source.format)) if is_local(e) else None for e in entries(source)}


def entry_files(entry: str, fmt: str | None) -> list[RawFile]:
    """The data files one path, folder or glob names; an entry that names none is an error,
    so a mistyped glob in a list cannot silently drop its share of the data."""
    fs, path = filesystem(entry)
    info = fs.get_file_info(path)  # a name that exists as written is never read as a glob
    if info.type == pafs.FileType.NotFound and _GLOB & set(path):
        base = path[: min(path.index(c) for c in _GLOB if c in path)].rsplit("/", 1)[0]
        infos = [i for i in _listing(fs, base or "/", entry) if fnmatch.fnmatchcase(i.path, path)]
    elif info.type == pafs.FileType.NotFound:
        raise ConfigError(f"data.source.path: {entry} does not exist{_relative_to(entry)}")
    else:
        infos = [info] if info.type == pafs.FileType.File else _listing(fs, path, entry)
    found: list[RawFile] = []
    for info in infos:
        kind = fmt or SUFFIXES.get(Path(info.path).suffix.lower())
        if kind is None:
            if len(infos) == 1:
                raise ConfigError(
                    f"data.source.format: cannot infer the format of {info.path}; "
                    "set it to csv, parquet or json"
                )
            continue  # a folder may hold READMEs and the like
        found.append(RawFile(uri=uri_of(fs, info.path), format=kind, size=info.size))
    if not found:
        raise ConfigError(
            f"data.source.path: {entry} matches no csv, parquet or json file"
            f"{_relative_to(entry)}; fix the path or glob"
        )
    return found


def _relative_to(entry: str) -> str:
    """Where a relative path was looked for: the current directory, not the config's."""
    if "://" in entry or Path(entry).expanduser().is_absolute():
        return ""
    return f" (relative paths are read from the current directory, {Path.cwd()})"


def _listing(fs: pafs.FileSystem, base: str, entry: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(f"data.source.path: cannot list {entry}: {exc}") from None
    return [
        i
        for i in infos
        if i.type == pafs.FileType.File
        and not any(part.startswith((".", "_")) for part in i.path[len(base) :].split("/"))
    ]


def column_names(raw: RawFile) -> list[str]:
    """The file's columns, read from its header or footer only."""
    fs, path = filesystem(raw.uri)
    if raw.format == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle).schema_arrow.names
    with fs.open_input_stream(path) as handle:
        head = handle.read(1 << 20)
    if raw.format == "csv":
        first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
        try:
            return next(csv.reader([first]), [])
        except csv.Error as exc:
            raise DataQualityError(
                f"{raw.uri}: the header line is not readable CSV ({exc}); save the file as "
                "UTF-8 CSV with one header line"
            ) from None
    names: dict[str, None] = {}
    for line in head.splitlines()[:100]:
        try:
            names.update(dict.fromkeys(json.loads(line)))
        except (ValueError, TypeError, AttributeError):
            continue
    return list(names)


def check_columns(raw: RawFile, declared: list[str], unknown_policy: str) -> list[str]:
    """Fail on missing declared columns (and on undeclared ones unless ignored)."""
    present = column_names(raw)
    missing = [n for n in declared if n not in present]
    unknown = [n for n in present if n not in declared]
    if missing:
        raise DataQualityError(
            f"{raw.uri}: declared column(s) {missing} are missing (the file has {present}); "
            "fix data.columns or the file"
        )
    if unknown and unknown_policy == "error":
        raise DataQualityError(
            f"{raw.uri}: column(s) {unknown} are not declared in data.columns; declare them "
            "(role: ignore to drop) or set etl.unknown_columns: ignore"
        )
    return unknown


def batches(
    raw: RawFile, names: list[str], batch_rows: int, fast: bool = True
) -> Iterator[pa.Table]:
    """Stream the declared columns of one file as tables of about `batch_rows` rows."""
    fs, path = filesystem(raw.uri)
    if raw.format == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=names):
                yield pa.Table.from_batches([batch])
        return
    strings = pa.schema([(n, pa.string()) for n in names])
    with fs.open_input_stream(path) as handle:
        if not fast:
            yield from _python_batches(handle, raw.uri, raw.format, strings, batch_rows)
        elif raw.format == "csv":
            from pyarrow import csv as pacsv

            convert = pacsv.ConvertOptions(
                column_types=strings, include_columns=names, strings_can_be_null=True
            )
            for block in _line_blocks(handle, batch_rows * 100, header=True):
                yield pacsv.read_csv(pa.BufferReader(block), convert_options=convert)
        else:
            from pyarrow import json as pajson

            for block in _line_blocks(handle, batch_rows * 200, header=False):
                table = pajson.read_json(pa.BufferReader(block))
                yield pa.table({n: _as_strings(table, n) for n in names}, schema=strings)


def _line_blocks(native: pa.NativeFile, block: int, header: bool) -> Iterator[pa.Buffer]:
    """Whole lines, about `block` bytes at a time (each CSV block led by the header line).

    Arrow's own streaming readers read ahead through the whole file (measured: 180 MB held
    for a 110 MB CSV); cutting at newlines here keeps memory flat. As in Arrow's default
    (`newlines_in_values=False`) and in JSON Lines, a newline always ends a row.
    """
    first, pending = b"", b""
    while True:
        data = native.read(block)
        if not data:
            break
        pending += data
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue
        lines, pending = pending[: cut + 1], pending[cut + 1 :]
        if header and not first:
            end = lines.index(b"\n") + 1
            first, lines = lines[:end], lines[end:]
        if lines.strip():
            yield pa.py_buffer(first + lines)
    if pending.strip():
        yield pa.py_buffer(first + pending)


def _as_strings(table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    column = table.column(name)
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_nested(column.type):
        raise pa.ArrowInvalid(f"nested values in column {name}")
    return column.cast(pa.string())


def _python_batches(
    handle, uri: str, fmt: str, schema: pa.Schema, batch_rows: int
) -> Iterator[pa.Table]:
    """The slow, forgiving reader: any bytes, any JSON types; values become strings.

    A CSV the csv module cannot split into rows (a bare carriage return in an unquoted
    field) fails the file with its line number: its rows cannot be counted, so none are kept.
    """
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    rows = csv.DictReader(text) if fmt == "csv" else _json_rows(text)
    buffer: list[dict] = []
    try:
        for row in rows:
            buffer.append(row)
            if len(buffer) >= batch_rows:
                yield _to_table(buffer, schema)
                buffer = []
    except csv.Error as exc:
        line = rows.line_num if isinstance(rows, csv.DictReader) else "?"
        raise DataQualityError(
            f"{uri}: not readable as CSV at line {line} ({exc}); fix or quote that field"
        ) from None
    if buffer:
        yield _to_table(buffer, schema)


def _json_rows(text) -> Iterator[dict]:
    for line in text:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        yield row if isinstance(row, dict) else {"__unparseable__": line}


def _to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    def text(value: object) -> str | None:
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else json.dumps(value)

    return pa.table(
        {n: pa.array([text(r.get(n)) for r in rows], pa.string()) for n in schema.names},
        schema=schema,
    )
