"""Secret files relay generates (Serve token, Ray cluster token): random, owner-only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_secret_file(path: Path, prefix: str = "") -> Path:
    """Create a random token readable by its owner only (0600), unless one is there already.

    `prefix` goes before the token (`admin:` makes a `user:password` credentials file)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(prefix + secrets.token_urlsafe(32) + "\n")
    return path
