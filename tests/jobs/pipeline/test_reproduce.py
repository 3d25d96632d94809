"""Reproducing a recorded run: the same inputs give the same dataset and metrics, or a diff."""

from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from cluster.errors import ConfigError
from cluster.tracking.tracker import CODE_ENV, Tracker
from jobs.cli.app import app
from jobs.etl.synthetic import make_rows
from jobs.pipeline import runner
from jobs.pipeline.lineage import artifact_text
from jobs.pipeline.reproduce import NotReproducedError, reproduce
from tests.conftest import write_csv


def test_reproduce_matches_then_names_the_edited_raw_file(ray_cluster, make_config, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rows, _ = make_rows(0, 3000, seed=1, bad_row_rate=0.0)
    write_csv(raw / "a.csv", rows.slice(0, 1500).to_pylist())
    write_csv(raw / "b.csv", rows.slice(1500, 1500).to_pylist())
    cfg = make_config(
        source={"kind": "files", "path": str(raw)},
        tune={"scheduler": "fifo", "num_samples": 1},  # FIFO: the same trial, bit for bit
    )
    first = runner.run(cfg, until="evaluate")
    uri, original = first["tracking_uri"], first["pipeline_run_id"]

    # the tree may be dirty while developing; CI's clone is clean
    result = reproduce(original, uri, allow_code_change=True)
    assert result["reproduced"] and result["differences"] == []
    assert result["dataset_digest"] == first["dataset_digest"]
    tracker = Tracker(uri, first["experiment_id"])
    rerun = tracker.client.get_run(result["rerun_run_id"])
    assert rerun.data.tags["relay.reproduces"] == original

    data = (raw / "a.csv").read_bytes()
    (raw / "a.csv").write_bytes(data.replace(b"north", b"south", 1))
    with pytest.raises(NotReproducedError) as failed:
        reproduce(original, uri, allow_code_change=True)
    assert failed.value.exit_code == 7
    assert f"raw file {raw / 'a.csv'}: sha256" in str(failed.value)
    assert "b.csv" not in str(failed.value)
    cli = CliRunner().invoke(
        app, ["reproduce", original, "--tracking-uri", uri, "--allow-code-change"]
    )
    assert cli.exit_code == 7 and "did not reproduce" in cli.output and "a.csv" in cli.output

    tracker.client.set_tag(original, "relay.git_commit", "0" * 40)
    with pytest.raises(ConfigError, match=r"refusing to reproduce: code commit .* differs"):
        reproduce(original, uri)


def test_a_run_from_a_clean_checkout_reproduces_exactly(
    ray_cluster, make_config, tmp_path, monkeypatch
):
    """The path a user takes: no --allow-code-change. Relay records the commit of the checkout
    it runs in, so both runs here run in a clean one of their own (this working tree may be
    dirty); the rerun's own outputs are compared, not only reproduce's verdict."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "recorded"], check=True)
    monkeypatch.chdir(checkout)
    for env in CODE_ENV.values():
        monkeypatch.delenv(env, raising=False)
    cfg = make_config(tune={"scheduler": "fifo", "num_samples": 1})
    first = runner.run(cfg, until="evaluate")
    uri = first["tracking_uri"]
    tracker = Tracker(uri, first["experiment_id"])
    assert tracker.client.get_run(first["pipeline_run_id"]).data.tags["relay.git_dirty"] == "false"

    result = reproduce(first["pipeline_run_id"], uri)
    assert result["reproduced"] and result["differences"] == [] and result["warnings"] == []
    rerun = json.loads(artifact_text(tracker.client, result["rerun_run_id"], "summary.json"))
    assert rerun["pipeline_run_id"] == result["rerun_run_id"] != first["pipeline_run_id"]
    assert rerun["dataset_digest"] == first["dataset_digest"]
    assert rerun["best_hyperparameters"] == first["best_hyperparameters"]
    assert rerun["test_metrics"] == pytest.approx(first["test_metrics"], abs=1e-6)
    assert rerun["best_val"] == pytest.approx(first["best_val"], abs=1e-6)
