"""One config seed, many derived seeds: stable across processes, Python versions and machines."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *scope: object) -> int:
    """A 31-bit seed for `scope` (e.g. ("trial", params)); Python's hash() is salted per process."""
    text = ":".join([str(seed), *(str(s) for s in scope)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
