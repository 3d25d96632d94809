"""Shared by the k8s tests: the KubeRay CRDs (or a clear skip) and small object helpers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from cluster.errors import ConfigError
from jobs.k8s.crds import Crd, crd_dir, load_crds


def kuberay_crds() -> dict[tuple[str, str], Crd]:
    try:
        return load_crds(crd_dir())
    except ConfigError as exc:
        pytest.skip(f"KubeRay CRDs unavailable: {exc}")


def mutated(obj: dict[str, Any], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    change(out)
    return out


def by_kind(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found
