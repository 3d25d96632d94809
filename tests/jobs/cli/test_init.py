"""`relay init` writes a config that `relay validate` accepts and `relay run` runs, on real data.

The data are scikit-learn's bundled iris and diabetes tables (real measurements, no id
column), written as CSV with their feature names as the header.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_diabetes, load_iris
from typer.testing import CliRunner

from cluster.configfile import load_config, parse_overrides
from jobs.cli.app import app
from jobs.pipeline import runner
from tests.conftest import free_port


def write(frame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["init", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("loader", "label", "task", "metric"),
    [
        (load_iris, "target", "classification", "test_accuracy"),
        (load_diabetes, "target", "regression", "test_r2"),
    ],
)
def test_init_then_run_serves_the_model_on_real_data(
    ray_cluster, tmp_path, monkeypatch, loader, label, task, metric
):
    monkeypatch.chdir(tmp_path)
    data = write(loader(as_frame=True).frame, tmp_path / f"{loader.__name__}.csv")
    code, output = init(str(data), "--label", label, "--output", "proposed.yaml")
    assert code == 0, output
    proposed = yaml.safe_load(Path("proposed.yaml").read_text())
    assert proposed["model"]["task"] == task
    assert not any(c.get("role") == "id" for c in proposed["data"]["columns"])  # none is a key
    assert f"{label}" in output and "label" in output  # one line per column, with its reason
    assert CliRunner().invoke(app, ["validate", "proposed.yaml"]).exit_code == 0

    cfg = load_config(
        Path("proposed.yaml"),
        parse_overrides(
            [
                f"serve.port={free_port()}",
                "tune.num_samples=2",
                "train.epochs=3",
                "runtime.num_cpus=2",
            ]
        ),
    )
    try:
        summary = runner.run(cfg)
    finally:
        from ray import serve

        serve.shutdown()  # the next test's Serve listens on its own port
    assert summary["prediction"]["matches_offline"] is True
    assert summary["model_version"] == 1
    assert metric in summary["test_metrics"]


def test_init_refuses_to_overwrite_and_names_a_missing_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write(load_iris(as_frame=True).frame, tmp_path / "iris.csv")
    assert init(str(data), "--label", "target")[0] == 0
    code, output = init(str(data), "--label", "target")
    assert code == 2 and "iris.yaml exists" in output
    code, output = init(str(data), "--label", "species", "--force")
    assert code == 2 and "has no column 'species'" in output and "petal length (cm)" in output
