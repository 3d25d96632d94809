"""The ETL build key: everything that shapes a dataset *and* its metadata.

The content digest covers rows and column types only, so two builds can share it while their
metadata differs (column roles, PII scan findings, the raw files lineage points at). The build
key covers the raw files' bytes (sha256), the declared schema with roles, the ETL settings, the
seed, the task and the PII secret's fingerprint: a re-run with an equal key can reuse the
published dataset without reading a row, and any change to those builds it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from cluster.config import RelayConfig
from jobs.data.sources import RawFile, raw_sha256

BUILD_FORMAT = 1  # bump when ETL's output for the same inputs changes


def with_sha256(files: list[RawFile]) -> list[RawFile]:
    """The files with their sha256 filled in (hashed in threads: hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(files)))) as pool:
        shas = list(pool.map(raw_sha256, files))
    return [replace(f, sha256=sha) for f, sha in zip(files, shas, strict=True)]


def key_input(
    cfg: RelayConfig, files: list[RawFile], pii_key: bytes | None, digest_format: int
) -> dict[str, Any]:
    """What the key is a hash of (recorded in dataset.json, so a rebuild can be explained)."""
    return {
        "format": BUILD_FORMAT,
        "digest_format": digest_format,
        "seed": cfg.seed,
        "task": cfg.model.task,
        "source": cfg.data.source.model_dump(mode="json"),
        "columns": [c.model_dump(mode="json") for c in cfg.data.columns],
        "etl": cfg.etl.model_dump(mode="json"),
        # a keyed fingerprint: hashed PII values change with the secret, the secret stays secret
        "pii_key": hmac.new(pii_key, b"relay.etl.build-key", hashlib.sha256).hexdigest()
        if pii_key
        else None,
        "files": [[f.uri, f.format, f.size, f.sha256] for f in files],
    }


def build_key(key_input: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key_input, sort_keys=True).encode()).hexdigest()
