"""The house's shape: the import contracts in pyproject.toml hold, and they catch a break.

`lint-imports` runs in CI through the README's test command; here it also runs on a copy of
the tree with one import planted that runs up the layers, which must fail it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import ROOT

PACKAGES = ("cluster", "serving", "jobs")
LINT = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on `tree`, importing the packages from it (not the installed ones)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(LINT, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and pyproject.toml that a test may break."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold_on_the_tree(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        # a stage reaching up into the pipeline (how the old import loop began)
        ("jobs/etl/dedupe.py", "from jobs.pipeline import runner", "jobs: cli > pipeline"),
        # a stage importing another stage for a type, instead of jobs.artifacts
        ("jobs/deploy/stage.py", "from jobs.register import stage", "jobs: cli > pipeline"),
        # the substrate importing what runs on it
        ("cluster/errors.py", "import serving.client", "relay: jobs > serving > cluster"),
        # MLflow tracking reaching up into the Ray connection
        ("cluster/tracking/spool.py", "from cluster.compute import runtime", "cluster: compute"),
        # a function-level import counts too: it is how the old loops hid
        ("serving/auth.py", "def _up():\n    from jobs import artifacts", "relay: jobs > serving"),
    ],
)
def test_a_planted_upward_import_breaks_a_contract(
    tree: Path, module: str, planted: str, contract: str
) -> None:
    target = tree / module
    target.write_text(target.read_text() + f"\n\n{planted}\n")
    result = lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_no_import_loops_even_through_function_level_imports() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    loops = [
        (a, b)
        for a in sorted(graph.modules)
        for b in graph.find_modules_directly_imported_by(a)
        if a < b and graph.chain_exists(importer=b, imported=a)
    ]
    assert loops == []


def test_jobs_shows_the_pipeline() -> None:
    modules = sorted(p.name for p in (ROOT / "jobs").glob("*.py"))
    assert len(modules) <= 8, modules
    stages = [p.parent.name for p in (ROOT / "jobs").glob("*/stage.py")]
    assert {"etl", "tune", "evaluate", "register", "deploy"} <= set(stages)
