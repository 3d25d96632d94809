"""The model bundle: safetensors weights + a JSON spec, addressed by sha256.

This is the only model format that crosses the trust boundary into serving: nothing in it
is unpickled, and a bundle whose bytes differ from the registered digest is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.digests import folder_sha256
from cluster.errors import ServingError

WEIGHTS = "model.safetensors"
SPEC = "spec.json"
FILES = (WEIGHTS, SPEC)


def bundle_sha256(folder: Path) -> str:
    return folder_sha256(folder, FILES)


def write_bundle(folder: Path, state_dict: dict[str, Any], spec: dict[str, Any]) -> str:
    """Write weights and spec; return the bundle digest to record at registration."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS))
    (folder / SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return bundle_sha256(folder)


def read_bundle(folder: Path, expected_sha256: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the digest first, then load (spec, tensors); a mismatch refuses to load."""
    from safetensors.torch import load_file

    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise ServingError(f"model bundle at {folder} is missing {missing}")
    actual = bundle_sha256(folder)
    if actual != expected_sha256:
        raise ServingError(
            f"model bundle at {folder} fails its integrity check: sha256 {actual} does not "
            f"match the registered {expected_sha256}; refusing to serve it"
        )
    spec = json.loads((folder / SPEC).read_text())
    return spec, load_file(str(folder / WEIGHTS))
