"""Paths that escape, folders that cannot be written: refused up front, naming the field."""

from __future__ import annotations

import errno
import json
import os

import pytest
from typer.testing import CliRunner

from cluster.configfile import parse_config
from cluster.errors import ConfigError
from cluster.tracking import spool
from cluster.writable import ensure_writable
from jobs.cli.app import app
from jobs.pipeline import runner
from jobs.pipeline.command import run_command
from tests.conftest import CI_CONFIG, ci_raw, merge


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"name": "../../etc"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"model": {"name": "../model"}}, "model.name"),
        ({"model": {"name": "a/b"}}, "model.name"),
        ({"serve": {"route_prefix": "/../admin"}}, "serve.route_prefix"),
    ],
)
def test_names_that_become_paths_or_routes_cannot_escape(override, field):
    """name -> <state_dir>/datasets/<name>, model.name -> registry, route -> URL path."""
    with pytest.raises(ConfigError, match=rf"  - {field}: String should match pattern"):
        parse_config(merge(ci_raw(), override))


def test_unwritable_state_dir_is_refused_before_ray_starts(make_config, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = make_config(runtime={"state_dir": str(blocker / "state")})
    with pytest.raises(ConfigError, match=r"^runtime.state_dir: .*a-file/state is not writable"):
        runner.run(cfg, until="etl")
    storage = make_config(tune={"storage_path": str(blocker / "tune")})
    with pytest.raises(ConfigError, match=r"^tune.storage_path: .* is not writable"):
        runner.run(storage, until="etl")

    code = run_command(CI_CONFIG, overrides=[f"runtime.state_dir={blocker}/state"])
    assert code == 2
    assert "runtime.state_dir:" in capsys.readouterr().err


def test_full_disk_names_the_field_and_the_fix(tmp_path, monkeypatch):
    def full(fd: int) -> None:  # a full disk cannot be made here without mounting one
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ConfigError) as info:
        ensure_writable(tmp_path / "state", "runtime.state_dir")
    assert str(info.value).startswith("runtime.state_dir: ")
    assert "No space left on device" in str(info.value) and "free space" in str(info.value)
    assert list((tmp_path / "state").iterdir()) == []  # the probe does not stay behind


@pytest.mark.parametrize("escape", ["../../../etc/hostname", "/etc/hostname"])
def test_sync_refuses_a_journal_that_points_outside_itself(tmp_path, escape):
    journal = spool.Journal(spool.spool_root(tmp_path), "http://127.0.0.1:9")
    journal.append({"op": "update_run", "run_id": "r" * 32, "status": "RUNNING"})
    with (journal.folder / spool.RECORDS).open("a") as handle:  # tampered after the fact
        record = {"op": "log_artifact", "run_id": "r" * 32, "path": escape, "artifact_path": None}
        handle.write(json.dumps(record) + "\n")
    (journal.folder / spool.CURSOR).write_text("1")  # the first record went through earlier
    result = CliRunner().invoke(app, ["tracking", "sync", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "outside its journal" in result.output
    assert spool.journals(spool.spool_root(tmp_path)) == [journal.folder]  # kept, not half-done
