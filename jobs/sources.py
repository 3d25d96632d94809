"""Raw inputs: resolving a source to a sorted list of files, and reading one file."""

from __future__ import annotations

import glob
from pathlib import Path

import pyarrow as pa

from cluster.config import FileSource
from cluster.errors import ConfigError, DataQualityError

SUFFIXES = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}


def resolve_files(source: FileSource) -> list[tuple[Path, str]]:
    """(path, format) for every file the source names, in a stable order."""
    path = Path(source.path).expanduser()
    if path.is_dir():
        candidates = sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
        )
    elif any(ch in source.path for ch in "*?["):
        candidates = sorted(
            Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
        )
    elif path.is_file():
        candidates = [path]
    else:
        raise ConfigError(f"data.source.path: {source.path} does not exist")
    files = []
    for candidate in candidates:
        fmt = source.format or SUFFIXES.get(candidate.suffix.lower())
        if fmt is None:
            if path.is_file():
                raise ConfigError(
                    f"data.source.format: cannot infer the format of {candidate.name}; "
                    f"set format to one of csv, parquet, json"
                )
            continue  # a directory may hold READMEs and the like
        files.append((candidate.resolve(), fmt))
    if not files:
        raise ConfigError(f"data.source.path: no csv/parquet/json files found at {source.path}")
    return files


def read_table(path: Path, fmt: str, names: list[str]) -> pa.Table:
    """Read one file; CSV columns stay strings so a malformed value is a reject, not a crash."""
    if fmt == "csv":
        from pyarrow import csv

        table = csv.read_csv(
            path,
            convert_options=csv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True
            ),
        )
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        from pyarrow import json

        table = json.read_json(path)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise DataQualityError(
            f"{path}: declared column(s) {missing} are missing; the file has "
            f"{table.column_names}. Fix data.columns or the file"
        )
    return table
