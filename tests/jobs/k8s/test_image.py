"""The image carries its code's git provenance (it has no .git): `relay k8s build-args` gives
`docker build` the commit, dirty flag and diff hash, and the Dockerfile bakes them in as the
environment variables every run in a pod records."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cluster.tracking.tracker import CODE_ENV, code_env
from jobs.cli.app import app
from tests.cluster.tracking.test_provenance import git, make_checkout
from tests.conftest import ROOT


def test_build_args_carry_the_checkouts_commit_and_a_non_checkout_is_refused(tmp_path):
    checkout = make_checkout(tmp_path / "checkout")
    result = CliRunner().invoke(app, ["k8s", "build-args", "--project", str(checkout)])
    assert result.exit_code == 0, result.output
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert result.stdout.split() == [
        "--build-arg",
        f"RELAY_GIT_COMMIT={head}",
        "--build-arg",
        "RELAY_GIT_DIRTY=false",
    ]
    elsewhere = CliRunner().invoke(app, ["k8s", "build-args", "--project", str(tmp_path)])
    assert elsewhere.exit_code == 2 and "not a git checkout" in elsewhere.output


def test_the_dockerfile_bakes_each_build_arg_into_the_environment_of_its_runs(tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    env = " ".join(re.findall(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, re.M))
    checkout = make_checkout(tmp_path / "checkout")
    (checkout / "train.py").write_text("epochs = 4\n")  # dirty: all three are passed
    assert set(code_env(checkout)) == set(CODE_ENV.values())
    for name in CODE_ENV.values():
        assert re.search(rf"^ARG {name}=", dockerfile, re.M), f"no ARG {name}"
        assert f"{name}=${{{name}}}" in env, f"{name} is not in the image's environment"
    assert "org.opencontainers.image.revision=${RELAY_GIT_COMMIT}" in dockerfile
