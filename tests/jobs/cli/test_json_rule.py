"""One output rule for every command (issue #21): a human form by default; with `--json`, one
typed JSON object on the last line of stdout.

Here: every command takes `--json`, and the commands that need no Ray, model or cluster keep
the rule. The others are checked where their tests already run them: the cluster and jobs
commands, `submit` and `reproduce` in tests/cluster/compute/test_localcluster.py, `predict`,
`lineage` and `runs` in tests/jobs/pipeline/test_pipeline.py, `monitor`, `feedback` and
`rollout auto` in tests/jobs/monitor/test_monitor.py, `data profile` in tests/jobs/etl.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from jobs.cli.app import app
from tests.cli_output import assert_human, json_object
from tests.conftest import CI_CONFIG, ROOT, free_port, write_csv


def commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words (`jobs stop`), groups walked (typer's own click: by duck type)."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


EVERY = sorted(commands(typer.main.get_command(app)))


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def both(args: list[str]) -> tuple[Result, dict[str, Any]]:
    """The human form (checked not to be JSON) and the object `--json` prints."""
    human, machine = invoke(args), invoke([*args, "--json"])
    assert human.exit_code == 0, human.output
    assert machine.exit_code == 0, machine.output
    assert_human(human)
    return human, json_object(machine)


def test_the_cli_has_the_commands_this_file_names():
    assert len(EVERY) >= 29 and ("jobs", "stop") in EVERY and ("rollout", "auto") in EVERY


@pytest.mark.parametrize("command", EVERY, ids=" ".join)
def test_every_command_takes_json(command):
    leaf: Any = typer.main.get_command(app)
    for name in command:
        leaf = leaf.commands[name]
    assert "--json" in {opt for p in leaf.params for opt in getattr(p, "opts", [])}


def test_validate():
    human, checked = both(["validate", str(CI_CONFIG)])
    assert "valid (pipeline 'credit-ci'" in human.stdout
    assert checked["valid"] is True and checked["pipeline"] == "credit-ci"
    assert len(checked["config_digest"]) == 64 and checked["config_digest"][:12] in human.stdout


def test_init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"id": i, "size": 50.5 + i, "city": "ab"[i % 2], "price": 100 * i} for i in range(40)]
    write_csv(tmp_path / "houses.csv", rows)
    args = ["init", "houses.csv", "--label", "price", "--force"]
    human, proposed = both(args)
    assert "size" in human.stdout and Path(proposed["output"]).name == "houses.yaml"
    assert proposed["task"] == "regression"
    assert {c["name"] for c in proposed["columns"]} == {"id", "size", "city", "price"}


def test_k8s_render_validate_and_build_args(tmp_path):
    out = tmp_path / "k8s-out"
    human, rendered = both(["k8s", "render", str(CI_CONFIG), "--output", str(out)])
    assert rendered["objects"] > 0 and isinstance(rendered["objects"], int)
    assert "RayService" in rendered["kinds"] and f"{rendered['objects']} objects" in human.stdout
    _, checked = both(["k8s", "validate", str(out)])
    assert checked["valid"] is True and checked["objects"] == rendered["objects"]
    human, baked = both(["k8s", "build-args", "--project", str(ROOT)])
    assert isinstance(baked["git_dirty"], bool) and len(baked["git_commit"]) == 40
    assert human.stdout.strip() == baked["build_args"]  # the flags `docker build $(...)` takes


def test_tracking_sync_with_nothing_spooled(tmp_path):
    human, synced = both(["tracking", "sync", "--state-dir", str(tmp_path)])
    assert human.stdout.startswith("replayed 0 records from 0 journals")
    assert (synced["journals"], synced["records"]) == (0, 0)


@pytest.mark.parametrize(
    ("group", "nothing"),
    [
        ("cluster", {"stopped": [], "forced": [], "killed_leftovers": []}),
        ("tracking", {"stopped": None}),
    ],
)
def test_down_with_nothing_running(tmp_path, group, nothing):
    human, stopped = both([group, "down", "--state-dir", str(tmp_path)])
    assert human.stdout == "" and "nothing to stop" in human.stderr
    assert stopped == nothing


def test_tracking_up_and_down(tmp_path):
    """A real server (a few seconds): `up` again reports the running one, `down` stops it."""
    state = str(tmp_path)
    started = invoke(["tracking", "up", "--port", str(free_port()), "--state-dir", state, "--json"])
    try:
        assert started.exit_code == 0, started.output
        record = json_object(started)
        assert isinstance(record["pid"], int) and record["auth"] == "none"
        again = invoke(["tracking", "up", "--state-dir", state])
        assert again.exit_code == 0, again.output
        assert_human(again)
        assert f"tracking uri: {record['uri']}" in again.stdout
    finally:
        stopped = invoke(["tracking", "down", "--state-dir", state])
    assert stopped.exit_code == 0, stopped.output
    assert_human(stopped)
    assert stopped.stdout.strip() == (
        f"stopped the tracking server at {record['uri']} (pid {record['pid']})"
    )
