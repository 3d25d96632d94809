"""A rollout where the replicas follow the aliases (a RayService's case: its operator owns the
Serve config): with no Ray address, moving the aliases is the whole act. A real sqlite
registry; no Ray is used (none is needed, and none could redeploy a RayService)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from mlflow.tracking import MlflowClient

from cluster.configfile import parse_config
from cluster.tracking.registry import SHA_TAG
from cluster.tracking.tracker import STAGE_TAG
from tests.conftest import ci_raw, merge


def registry(tmp_path: Path, versions: int) -> tuple[Any, MlflowClient]:
    """A config whose replicas poll the aliases, and a sqlite registry with `versions`
    relay-tagged versions of its model (version 1 the champion)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = {"runtime": {"state_dir": str(tmp_path)}, "tracking": {"uri": uri}}
    cfg = parse_config(merge(ci_raw(), {**raw, "serve": {"poll_alias_seconds": 2}}))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(cfg.model.name)
    (tmp_path / "bundle").mkdir()
    for _ in range(versions):
        bundle = str(tmp_path / "bundle")
        client.create_model_version(cfg.model.name, bundle, tags={SHA_TAG: "0" * 64})
    client.set_registered_model_alias(cfg.model.name, "champion", "1")
    return cfg, client


def no_ray_address() -> Any:
    """The environment without RAY_ADDRESS (the test session's Ray is not the endpoint's)."""
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return mock.patch.dict(os.environ, environment, clear=True)


def test_promote_and_rollback_move_the_aliases_without_ray(tmp_path):
    from jobs.deploy import rollout

    cfg, client = registry(tmp_path, versions=2)
    name = cfg.model.name
    with no_ray_address():
        started = rollout.start(cfg, version=2)
        promoted = rollout.promote(cfg, tags={"relay.decided_by_run": "abc"})
        client.set_registered_model_alias(name, "challenger", "1")
        rolled_back = rollout.rollback(cfg)
    assert (started["model_version"], started["challenger_version"]) == (1, 2)
    assert (promoted["model_version"], promoted["challenger_version"]) == (2, None)
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2
    assert int(client.get_model_version_by_alias(name, "previous").version) == 1
    assert rolled_back["challenger_version"] is None
    assert "challenger" not in client.get_registered_model(name).aliases
    assert {started["swapped_by"], promoted["swapped_by"]} == {"alias polling"}
    tags = client.get_run(promoted["rollout_run_id"]).data.tags
    assert tags[STAGE_TAG] == "rollout" and tags["relay.decided_by_run"] == "abc"


def test_a_decision_does_not_act_on_a_version_it_did_not_judge(tmp_path):
    """The monitor judged version 2; meanwhile the challenger alias moved to 3: neither a
    promote nor a rollback of that decision touches the aliases."""
    from cluster.errors import ServingError
    from jobs.deploy import rollout

    cfg, client = registry(tmp_path, versions=3)
    name = cfg.model.name
    client.set_registered_model_alias(name, "challenger", "3")
    with no_ray_address():
        for act in (rollout.promote, rollout.rollback):
            with pytest.raises(ServingError, match="moved to version 3 after the monitor judged"):
                act(cfg, expected=2)
    aliases = client.get_registered_model(name).aliases
    assert (int(aliases["champion"]), int(aliases["challenger"])) == (1, 3)
