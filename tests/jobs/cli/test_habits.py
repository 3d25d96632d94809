"""The CLI habits users bring from click/typer tools and the Ray CLI: `--version`, `-h`, shell
completion, fixed choices declared as choices (shown in help, refused before any work)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from jobs.cli.app import app

RELAY = [str(Path(sys.executable).parent / "relay")]


def invoke(args: list[str]) -> Result:
    """`relay ARGS` in this process, on a terminal wide enough that help lines do not wrap."""
    return CliRunner().invoke(app, args, prog_name="relay", env={"COLUMNS": "200"})


def test_version_prints_the_installed_version():
    done = subprocess.run([*RELAY, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"relay {metadata.version('relay')}"


@pytest.mark.parametrize("command", [[], ["run"], ["k8s", "render"], ["jobs", "list"]])
def test_short_help_is_the_long_help(command):
    short = invoke([*command, "-h"])
    assert short.exit_code == 0, short.output
    assert short.output == invoke([*command, "--help"]).output
    assert "Usage: relay" in short.output


def test_shell_completion_is_offered():
    shown = invoke(["--help"])
    assert "--install-completion" in shown.output and "--show-completion" in shown.output


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["run", "configs/ci.yaml", "--until", "train"], "--until", "'etl', 'tune', 'evaluate'"),
        (["submit", "configs/ci.yaml", "--until", "serve"], "--until", "'register', 'deploy'"),
        (["k8s", "render", "configs/ci.yaml", "--overlay", "tpu"], "--overlay", "'cpu', 'gpu'"),
        (["lineage", "configs/ci.yaml", "--format", "svg"], "--format", "'tree'"),
    ],
)
def test_a_value_outside_the_choices_is_refused_before_any_work(args, option, choices):
    result = invoke(args)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output and choices in result.output


def test_the_choices_show_in_help():
    assert "etl|tune|evaluate|register|deploy" in invoke(["run", "-h"]).output
    assert "cpu|gpu" in invoke(["k8s", "render", "-h"]).output


def test_until_takes_a_stage_in_any_case():
    """`--until Register` is the register stage (case-insensitive), checked by validate's
    cheap path: nothing beyond parsing runs for an invalid config."""
    result = invoke(["run", "no-such.yaml", "--until", "Register"])
    assert "Invalid value for '--until'" not in result.output
    assert result.exit_code == 2 and "no-such.yaml" in result.output


@pytest.mark.parametrize("group", ["cluster", "tracking"])
def test_down_with_nothing_running_is_a_no_op_that_says_so(tmp_path, group):
    result = invoke([group, "down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "nothing to stop" in result.output
