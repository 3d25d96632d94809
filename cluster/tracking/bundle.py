"""The model bundle: a JSON spec and the weight files it names, addressed by sha256.

This is the only model format that crosses the trust boundary into serving: the weight files
are in formats that load without pickle (safetensors, a library's own JSON/UBJ), and a bundle
whose bytes differ from the registered digest is refused before any of it is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.digests import folder_sha256
from cluster.errors import ServingError

SPEC = "spec.json"
LEGACY_FILES = ["model.safetensors"]  # bundles written before the spec listed its files


def files_of(spec: dict[str, Any]) -> list[str]:
    return list(spec.get("files", LEGACY_FILES))


def bundle_sha256(folder: Path, spec: dict[str, Any]) -> str:
    return folder_sha256(folder, [SPEC, *files_of(spec)])


def write_bundle(folder: Path, files: dict[str, bytes], spec: dict[str, Any]) -> str:
    """Write the weight files and a spec naming them; return the digest to register."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    spec = {**spec, "files": sorted(files)}
    (folder / SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return bundle_sha256(folder, spec)


def read_bundle(folder: Path, expected_sha256: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Verify the digest first, then return (spec, weight files' bytes); a mismatch refuses."""
    if not (folder / SPEC).is_file():
        raise ServingError(f"model bundle at {folder} is missing {SPEC}")
    spec = json.loads((folder / SPEC).read_text())
    missing = [name for name in files_of(spec) if not (folder / name).is_file()]
    if missing:
        raise ServingError(f"model bundle at {folder} is missing {missing}")
    actual = bundle_sha256(folder, spec)
    if actual != expected_sha256:
        raise ServingError(
            f"model bundle at {folder} fails its integrity check: sha256 {actual} does not "
            f"match the registered {expected_sha256}; refusing to serve it"
        )
    return spec, {name: (folder / name).read_bytes() for name in files_of(spec)}
