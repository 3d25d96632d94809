"""An MLflow tracking server on loopback: relay logs, registers, serves, traces over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from ray import serve
from typer.testing import CliRunner

from cluster.configfile import parse_config
from cluster.tracking import server as trackingserver
from jobs.cli.app import app
from jobs.pipeline import runner
from tests.conftest import free_port, merge


def test_pipeline_and_lineage_over_an_mlflow_server(ray_cluster, make_config, tmp_path):
    state = str(tmp_path / "server")
    record = trackingserver.up(state, free_port())
    try:
        assert trackingserver.up(state)["pid"] == record["pid"]  # up twice: the same server
        base = make_config(tune={"num_samples": 1})
        cfg = parse_config(
            merge(base.model_dump(mode="json"), {"tracking": {"uri": record["uri"]}})
        )
        summary = runner.run(cfg)  # the replica loads the model through the server too
        assert summary["tracking_uri"] == record["uri"]
        assert summary["prediction"]["matches_offline"] is True
        # artifacts went through the server into its own folder, not the job's
        assert list((Path(state) / "tracking" / "artifacts").rglob("bundle/model.safetensors"))

        uri = ["--tracking-uri", record["uri"]]
        lineage = CliRunner().invoke(
            app, ["lineage", f"models:/{cfg.model.name}@champion", "--json", *uri]
        )
        assert lineage.exit_code == 0, lineage.output
        chain = json.loads(lineage.output)
        assert chain["model"]["version"] == 1
        assert chain["dataset"]["digest"] == summary["dataset_digest"]
        assert len(chain["raw_files"]) == 2 and all(
            len(f["sha256"]) == 64 for f in chain["raw_files"]
        )
        listed = json.loads(CliRunner().invoke(app, ["runs", "--json", *uri]).output)
        assert [r["run_id"] for r in listed["runs"]] == [summary["pipeline_run_id"]]
    finally:
        serve.shutdown()  # the run deployed on the session's Ray: leave no Serve behind
        trackingserver.down(state)
    assert trackingserver.status(state) is None
    try:
        httpx.get(f"{record['uri']}/health", timeout=2)
        raise AssertionError("the server still answers after down")
    except httpx.TransportError:
        pass
