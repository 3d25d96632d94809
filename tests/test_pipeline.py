"""The whole pipeline on configs/ci.yaml: real Ray, real MLflow store, real HTTP endpoint."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pyarrow.parquet as pq
import pytest

from cluster.config import parse_config
from cluster.errors import ServingError
from cluster.registry import load_verified, resolve
from cluster.tracking import PARENT_TAG, STAGE_TAG
from jobs import pipeline
from serving.model import Predictor
from tests.conftest import ci_raw, free_port, merge


@pytest.fixture(scope="module")
def run(ray_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from ray import serve

    state = tmp_path_factory.mktemp("pipeline")
    cfg = parse_config(
        merge(
            ci_raw(),
            {
                "runtime": {"state_dir": str(state)},
                "serve": {"port": free_port()},
                "tracking": {"uri": f"sqlite:///{state / 'mlflow.db'}"},
            },
        )
    )
    summary = pipeline.run(cfg, keep_serving=True)  # Ray is the fixture's: Serve stays up
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=summary["tracking_uri"], registry_uri=summary["tracking_uri"]
    )
    yield {"cfg": cfg, "summary": summary, "client": client}
    serve.shutdown()


def children(client, parent: str) -> list:
    return client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
    )


def test_summary_has_endpoint_version_digest_and_timings(run):
    s = run["summary"]
    assert s["model_version"] == 1 and s["model_alias"] == "champion"
    assert len(s["dataset_digest"]) == 64
    assert s["endpoint"].endswith("/credit/predict")
    assert set(s["stage_seconds"]) == {
        "ray",
        "etl",
        "tune",
        "evaluate",
        "register",
        "deploy",
        "predict",
    }
    assert s["total_seconds"] >= sum(s["stage_seconds"].values()) - 1
    assert s["prediction"]["matches_offline"] is True
    assert s["prediction"]["response"]["model_version"] == 1
    assert s["test_metrics"]["test_roc_auc"] > 0.6  # the synthetic label has real signal


def test_lineage_links_version_to_trial_tune_pipeline_etl_and_dataset(run):
    client, s = run["client"], run["summary"]
    mv = client.get_model_version_by_alias(s["model_name"], "champion")
    assert int(mv.version) == s["model_version"]
    assert mv.tags["relay.sha256"] == s["model_sha256"]
    assert mv.tags["relay.dataset_digest"] == s["dataset_digest"]

    trial = client.get_run(mv.run_id)
    assert trial.data.tags[STAGE_TAG] == "trial"
    assert trial.data.tags["relay.best_trial"] == "true"
    tune_run = client.get_run(trial.data.tags[PARENT_TAG])
    assert tune_run.data.tags[STAGE_TAG] == "tune"
    assert (
        tune_run.data.tags[PARENT_TAG] == s["pipeline_run_id"] == mv.tags["relay.pipeline_run_id"]
    )

    stages = {r.data.tags[STAGE_TAG]: r for r in children(client, s["pipeline_run_id"])}
    assert set(stages) == {"etl", "tune", "evaluate", "register", "deploy"}
    assert all(r.info.status == "FINISHED" for r in stages.values())
    etl_run = stages["etl"]
    assert mv.tags["relay.etl_run_id"] == etl_run.info.run_id
    assert etl_run.data.tags["relay.dataset_digest"] == s["dataset_digest"]
    assert etl_run.inputs.dataset_inputs[0].dataset.digest == s["dataset_digest"][:32]
    assert stages["deploy"].data.tags["relay.model_version"] == "1"

    pipeline_run = client.get_run(s["pipeline_run_id"])
    assert pipeline_run.info.status == "FINISHED"
    tags = pipeline_run.data.tags
    assert tags["relay.config_digest"] == run["cfg"].digest()
    assert tags["relay.ray_version"] == "2.58.0"
    assert "relay.git_commit" in tags
    artifacts = {a.path for a in client.list_artifacts(s["pipeline_run_id"])}
    assert {"config.yaml", "summary.json"} <= artifacts

    tune_artifacts = {a.path for a in client.list_artifacts(tune_run.info.run_id)}
    assert "learning_curves.png" in tune_artifacts
    assert tune_run.data.metrics["overhead_ratio"] > 0.5  # tiny CI trials: mostly overhead

    trials = children(client, tune_run.info.run_id)
    assert len(trials) == run["cfg"].tune.num_samples == 2
    # 2 CPUs, 1 per trial: both trials ran at once (and nothing deadlocked)
    assert max(t.info.start_time for t in trials) < min(t.info.end_time for t in trials)
    for t in trials:
        history = client.get_metric_history(t.info.run_id, "val_loss")
        assert len(history) == int(t.data.tags["relay.epochs_run"]) >= 1
        assert t.info.status == "FINISHED"


def test_http_predictions_equal_the_registered_model_offline(run):
    s, client = run["summary"], run["client"]
    ref = resolve(client, s["model_name"], "champion")
    predictor = Predictor(*load_verified(client, ref))
    names = [c["name"] for c in predictor.spec["input_schema"]]
    rows = pq.read_table(Path(s["dataset_path"]) / "test").select(names).slice(0, 20).to_pylist()
    offline = predictor.predict_records(rows)
    seen = set()
    with httpx.Client(timeout=30) as http:
        for row, expected in zip(rows, offline, strict=True):
            response = http.post(s["endpoint"], json=row)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["prediction"] == expected["prediction"]
            for cls, p in expected["probabilities"].items():
                assert body["probabilities"][cls] == pytest.approx(p, abs=1e-5)
            assert body["model_version"] == 1 and body["run_id"] == ref.run_id
            seen.add(body["request_id"])
    assert len(seen) == len(rows)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"income": 50000.0}, "age"),  # required fields missing
        ({"age": "old"}, "age"),  # wrong type
        ({"age": 5}, "age"),  # below min
        ({"region": "mars"}, "region"),  # not an allowed category
        ({"favourite_colour": "blue"}, "favourite_colour"),  # unknown field
    ],
)
def test_bad_requests_get_422_with_the_field(run, body, field):
    s = run["summary"]
    record = {**s["prediction"]["request"], **body}
    if field == "age" and "income" in body:
        record.pop("age")
    response = httpx.post(s["endpoint"], json=record, timeout=30)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_malformed_bodies_get_422_not_500(run):
    endpoint = run["summary"]["endpoint"]
    for content in (b"{not json", b"[1, 2]", b""):
        response = httpx.post(
            endpoint, content=content, timeout=30, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (content, response.status_code, response.text)


def test_schema_endpoint_describes_the_served_model(run):
    s = run["summary"]
    body = httpx.get(s["endpoint"].removesuffix("/predict") + "/schema", timeout=30).json()
    assert body["model"]["model_version"] == 1
    assert {c["name"] for c in body["input_schema"]} >= {"age", "region", "income"}
    assert "email" not in {c["name"] for c in body["input_schema"]}


def test_tampered_artifact_is_refused(run):
    s, client = run["summary"], run["client"]
    ref = resolve(client, s["model_name"], "champion")
    store = Path(urlparse(client.get_run(ref.run_id).info.artifact_uri).path)
    spec = store / "model" / "spec.json"
    original = spec.read_bytes()
    backup = spec.with_suffix(".bak")
    shutil.copy(spec, backup)
    try:
        spec.write_bytes(original.replace(b'"relu', b'"RELU') + b" ")
        with pytest.raises(ServingError, match="fails its integrity check"):
            load_verified(client, ref)
    finally:
        shutil.move(backup, spec)
    assert load_verified(client, ref)[0]["task"] == "classification"
