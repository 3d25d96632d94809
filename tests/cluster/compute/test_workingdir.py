"""A pipeline running as a Ray job keeps no state dir or tracking store in its working dir,
Ray's temporary copy of the project (with the Ray CLI itself: test_localcluster.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.compute.workingdir import JOB_CONFIG_ENV, job_working_dir, refuse_ephemeral_state
from cluster.configfile import parse_config
from cluster.errors import ConfigError
from tests.conftest import ci_raw, merge


def config(**override):
    return parse_config(merge(ci_raw(), override))


@pytest.fixture
def in_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a Ray job's driver: started in its unpacked working dir."""
    unpacked = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_3f2a9c"
    (unpacked / "configs").mkdir(parents=True)
    monkeypatch.chdir(unpacked / "configs")  # an entrypoint may cd within it
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_3f2a9c.zip"}, "metadata": {}}
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps(job))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return unpacked


def test_the_default_state_dir_and_store_are_refused_naming_both_and_the_fix(in_job):
    assert job_working_dir() == in_job.resolve()
    with pytest.raises(ConfigError) as refused:
        refuse_ephemeral_state(config(runtime={"state_dir": ".relay"}))
    message = str(refused.value)
    assert str(in_job.resolve()) in message
    assert "runtime.state_dir '.relay'" in message and "tracking.uri 'sqlite:///" in message
    assert "relay tracking up" in message


def test_a_local_store_inside_is_refused_even_with_the_state_dir_outside(in_job, tmp_path):
    outside = str(tmp_path / "shared")
    for uri in ("sqlite:///mlflow.db", "mlruns", f"file://{in_job}/mlruns"):
        cfg = config(runtime={"state_dir": outside}, tracking={"uri": uri})
        with pytest.raises(ConfigError, match=r"tracking\.uri") as refused:
            refuse_ephemeral_state(cfg)
        assert "runtime.state_dir" not in str(refused.value)
    fine = config(runtime={"state_dir": outside}, tracking={"uri": "http://127.0.0.1:5000"})
    refuse_ephemeral_state(fine)
    refuse_ephemeral_state(config(runtime={"state_dir": outside}))  # its sqlite is outside too


def test_outside_a_job_or_without_a_working_dir_nothing_is_refused(in_job, monkeypatch):
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {}}))  # e.g. the RayJob
    assert job_working_dir() is None
    refuse_ephemeral_state(config(runtime={"state_dir": ".relay"}))
    monkeypatch.delenv(JOB_CONFIG_ENV)  # relay run
    refuse_ephemeral_state(config(runtime={"state_dir": ".relay"}))
