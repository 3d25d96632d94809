"""The inference log of one model over a window of time, one table per model version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cluster.errors import ConfigError
from serving.inference_log import (
    ANSWERED_KEY,
    DROPS_KEY,
    REFUSED_KEY,
    filesystem,
    log_folder,
    lost,
)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
STAMP = "%Y%m%dT%H%M%S%f"  # how a log file's name starts: when it was written


@dataclass
class Window:
    since: datetime
    until: datetime
    versions: dict[int, pa.Table] = field(default_factory=dict)
    dropped: int = 0  # records the writers dropped, as the files written in the window say
    lost: int = 0  # records writers killed in the window were given and never wrote
    refused: dict[str, int] = field(default_factory=dict)  # status -> prediction requests
    answered: int = 0  # prediction requests answered, sampled out of the log or not
    files: int = 0

    @property
    def logged(self) -> int:
        return sum(t.num_rows for t in self.versions.values())


def start_of(text: str, now: datetime) -> datetime:
    """A window's start from `--since`: a duration back from `now` ('30m', '24h') or an
    ISO-8601 instant ('2026-12-01T09:00:00Z'; no zone means UTC), for a window that must
    begin exactly where something else did (a deploy, an incident)."""
    number, unit = text[:-1], text[-1:]
    if unit in UNITS and number.replace(".", "", 1).isdigit():  # no sign, exponent, inf, nan
        try:
            return now - timedelta(seconds=float(number) * UNITS[unit])
        except OverflowError:
            raise ConfigError(f"--since: {text!r} reaches back beyond the calendar") from None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since: {text!r} is neither a duration (a number and one of s, m, h, d, w: "
            "30m, 24h, 7d) nor an ISO-8601 instant (2026-12-01T09:00:00Z)"
        ) from None
    instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    if instant > now:
        raise ConfigError(f"--since: {text} is in the future (now is {now.isoformat()})")
    return instant


def read(root: str, model: str, since: datetime, version: int | None = None) -> Window:
    """The rows answered since `since` (all versions, or one), and the drops recorded."""
    fs, base = filesystem(log_folder(root, model))
    window = Window(since=since, until=datetime.now(UTC))
    window.lost = lost(fs, base, since.timestamp())
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    parts: dict[int, list[pa.Table]] = {}
    for info in found:
        if info.type != pafs.FileType.File or not _written_since(info.base_name, since):
            continue
        table = pq.read_table(info.path, filesystem=fs)
        window.files += 1
        metadata = table.schema.metadata or {}
        window.dropped += json.loads(metadata.get(DROPS_KEY, b"0"))
        window.answered += json.loads(metadata.get(ANSWERED_KEY, b"0"))
        for status, count in json.loads(metadata.get(REFUSED_KEY, b"{}")).items():
            window.refused[status] = window.refused.get(status, 0) + count
        if table.num_rows == 0:
            continue
        table = table.filter(pc.greater_equal(table["time"], pa.scalar(since, table["time"].type)))
        for v in pc.unique(table["model_version"]).to_pylist():
            if version is None or v == version:
                parts.setdefault(v, []).append(table.filter(pc.equal(table["model_version"], v)))
    window.versions = {
        v: pa.concat_tables(tables).replace_schema_metadata(None)
        for v, tables in sorted(parts.items())
    }
    return window


def _written_since(name: str, since: datetime) -> bool:
    """A finished log file written at or after `since` (its rows may start a flush earlier:
    they are filtered by their own time)."""
    if name.startswith(".") or not name.endswith(".parquet"):
        return False
    try:
        written = datetime.strptime(name[:21], STAMP).replace(tzinfo=UTC)
    except ValueError:
        return False
    return written >= since
