"""Content digests: the one way relay names files and folders by what is in them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


def stream_sha256(handle: BinaryIO) -> str:
    """sha256 of everything left in a readable binary stream, 1 MiB at a time."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return stream_sha256(handle)


def folder_sha256(root: Path, relpaths: Iterable[str]) -> str:
    """sha256 over `relpath:sha256` lines in sorted order: names and bytes both count."""
    lines = "".join(f"{rel}:{file_sha256(root / rel)}\n" for rel in sorted(relpaths))
    return hashlib.sha256(lines.encode()).hexdigest()
