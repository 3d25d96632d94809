"""Probing a running endpoint: which versions it serves; waiting until it serves new ones."""

from __future__ import annotations

import time
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ServingError
from serving.client import get_json


def served_challenger(cfg: RelayConfig, client: Any) -> int | None:
    """The challenger version the config's endpoint routes a share to, if any."""
    from cluster.tracking.registry import aliased

    if cfg.serve.challenger_share <= 0:
        return None
    found = aliased(client, cfg.model.name, cfg.serve.challenger_alias)
    return found.version if found else None


def wait_for_version(
    endpoint: str, version: int, challenger: int | None = None, timeout: float = 60.0
) -> None:
    """Until the health route says `version` (and `challenger`): swaps go replica by replica."""
    deadline = time.monotonic() + timeout
    while True:
        health = get_json(f"{endpoint}/healthz")
        served = health["model_version"]
        if served == version and health["challenger_version"] == challenger:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"endpoint serves version {served}, expected {version}")
        time.sleep(0.5)
