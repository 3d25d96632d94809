"""The MLflow model registry as relay uses it: versions carry their bundle's sha256."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.errors import ServingError
from cluster.tracking.bundle import read_bundle

SHA_TAG = "relay.sha256"
MODEL_PATH = "model"  # the MLflow Model directory in the trial run (the version's source)
BUNDLE_PATH = "model/artifacts/bundle"  # the bundle inside it
BUNDLE_TAG = "relay.bundle_path"  # on each version; absent: a bundle from before MLflow Models
LEGACY_BUNDLE_PATH = "model"
PREVIOUS = "previous"  # the champion before the last promotion: a rollback target
REJECTED = "rejected"  # the last version a promotion gate turned down


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    run_id: str
    sha256: str
    bundle_path: str = LEGACY_BUNDLE_PATH


def resolve(client: Any, name: str, alias_or_version: str) -> ModelRef:
    """`champion` (an alias) or `3` (a version number) -> the registered version."""
    from mlflow.exceptions import MlflowException

    try:
        if str(alias_or_version).isdigit():
            mv = client.get_model_version(name, str(alias_or_version))
        else:
            mv = client.get_model_version_by_alias(name, alias_or_version)
    except MlflowException as exc:
        raise ServingError(
            f"model {name}@{alias_or_version} not found in the registry: {exc.message}"
        ) from None
    sha = (mv.tags or {}).get(SHA_TAG)
    if not sha:
        raise ServingError(
            f"model {name} version {mv.version} has no {SHA_TAG} tag: it was not "
            "registered by relay, so its integrity cannot be checked"
        )
    bundle = (mv.tags or {}).get(BUNDLE_TAG, LEGACY_BUNDLE_PATH)
    return ModelRef(
        name=name, version=int(mv.version), run_id=mv.run_id, sha256=sha, bundle_path=bundle
    )


def aliased(client: Any, name: str, alias: str) -> ModelRef | None:
    """The version holding `alias`, or None when no version holds it."""
    # search_model_versions leaves `aliases` empty on some stores; the model lists them all
    if alias not in (client.get_registered_model(name).aliases or {}):
        return None
    return resolve(client, name, alias)


def load_verified(client: Any, ref: ModelRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """Download the bundle and load it only if its digest matches the registry record."""
    with tempfile.TemporaryDirectory(prefix="relay-model-") as tmp:
        local = client.download_artifacts(ref.run_id, ref.bundle_path, tmp)
        return read_bundle(Path(local), ref.sha256)
