"""Fail before any work when a folder relay must write to cannot take a file."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from cluster.errors import ConfigError


def ensure_writable(path: str | Path, field: str) -> Path:
    """Create `path` if needed and write a probe file in it, or say which field to fix."""
    folder = Path(path).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".relay-probe-") as probe:
            probe.write(b"relay")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space on that disk, or point it at another one"
        else:
            fix = "choose a folder you can write to, or fix its permissions"
        raise ConfigError(
            f"{field}: {folder} is not writable ({exc.strerror or exc}); {fix}"
        ) from None
    return folder
