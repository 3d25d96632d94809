"""Which code a run ran: git where the checkout is, the passed commit where code travels without
its `.git` (a submitted job's working dir, an image)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from cluster.tracking.tracker import CODE_ENV, code_env, git_tags, provenance_tags


def git(folder: Path, *args: str) -> str:
    command = ["git", "-C", str(folder), "-c", "user.name=relay", "-c", "user.email=r@localhost"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


def make_checkout(folder: Path) -> Path:
    """A git repo at `folder` with one committed file, clean."""
    folder.mkdir()
    (folder / "train.py").write_text("epochs = 3\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "first")
    return folder


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path / "checkout")


def test_a_checkout_gives_its_commit_and_when_dirty_the_hash_of_its_diff(checkout):
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert git_tags(checkout) == {"relay.git_commit": head, "relay.git_dirty": "false"}
    (checkout / "train.py").write_text("epochs = 4\n")
    diff = git(checkout, "diff", "HEAD", "--binary").strip()
    assert git_tags(checkout) == {
        "relay.git_commit": head,
        "relay.git_dirty": "true",
        "relay.git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest(),
    }
    assert code_env(checkout) == {
        "RELAY_GIT_COMMIT": head,
        "RELAY_GIT_DIRTY": "true",
        "RELAY_GIT_DIFF_SHA256": hashlib.sha256(diff.encode()).hexdigest(),
    }
    assert git_tags(checkout.parent) == {} == code_env(checkout.parent)  # no checkout there


def test_code_without_its_git_records_the_commit_passed_to_it(checkout, tmp_path, monkeypatch):
    uploaded = tmp_path / "working_dir"  # what Ray unpacks: the files, no .git
    uploaded.mkdir()
    monkeypatch.chdir(uploaded)
    for name in CODE_ENV.values():
        monkeypatch.delenv(name, raising=False)
    assert provenance_tags()["relay.git_commit"] == "unknown"  # what a submitted job recorded

    for name, value in code_env(checkout).items():
        monkeypatch.setenv(name, value)
    tags = provenance_tags()
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert tags["relay.git_commit"] == tags["mlflow.source.git.commit"] == head
    assert tags["relay.git_dirty"] == "false" and tags["relay.git_source"] == "environment"

    monkeypatch.chdir(checkout)  # the passed commit wins: git here may be another checkout
    (checkout / "train.py").write_text("epochs = 5\n")
    assert provenance_tags()["relay.git_dirty"] == "false"
    monkeypatch.setenv("RELAY_GIT_COMMIT", "unknown")  # an image built without build args
    assert provenance_tags()["relay.git_dirty"] == "true"  # git then, as without the variables


SHOW_SOURCE = (
    "import json\nfrom cluster.tracking.tracker import source_tags\n"
    "print(json.dumps(source_tags()))\n"
)


def source_of(tmp_path: Path, how: str, *args: str, **env: str) -> dict[str, str]:
    """`source_tags()` in a process started as a console script (`relay ...`) or a module
    (`python -m pkg ...`)."""
    import json
    import os
    import sys

    if how == "script":
        (tmp_path / "relay").write_text(SHOW_SOURCE)
        command = [sys.executable, str(tmp_path / "relay"), *args]
    else:
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "__init__.py").write_text("")
        (tmp_path / "pkg" / "__main__.py").write_text(SHOW_SOURCE)
        command = [sys.executable, "-m", "pkg", *args]
    path = os.pathsep.join([str(tmp_path), str(Path(__file__).parents[3])])
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, **env},
    )
    return json.loads(done.stdout)


def test_the_source_is_the_command_that_ran_with_passwords_hidden(tmp_path):
    import getpass

    uri = "http://admin:s3cret@127.0.0.1:5000"
    tags = source_of(tmp_path, "script", "run", "configs/demo.yaml", "--tracking-uri", uri)
    assert tags["mlflow.source.name"] == (
        "relay run configs/demo.yaml --tracking-uri http://admin:***@127.0.0.1:5000"
    )
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"] == getpass.getuser()
    module = source_of(tmp_path, "module", "--config", "c.yaml", RELAY_SUBMISSION_ID="raysubmit_1")
    assert module["mlflow.source.name"].endswith(" -m pkg --config c.yaml")
    assert module["mlflow.source.type"] == "JOB"  # started by `relay submit`
