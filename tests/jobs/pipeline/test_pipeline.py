"""The whole pipeline on configs/ci.yaml: real Ray, real MLflow store, real HTTP endpoint."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.compute.serveflags import haproxy_binary
from cluster.config import ServeConfig
from cluster.configfile import parse_config
from cluster.errors import ServingError
from cluster.processes import alive
from cluster.tracking.registry import aliased, load_verified, resolve
from cluster.tracking.tracker import PARENT_TAG, STAGE_TAG
from jobs.pipeline import runner
from serving.model import Predictor
from tests.cli_output import assert_human, json_object, json_output, own_stdout
from tests.conftest import ROOT, ci_raw, free_port, load_table, merge, ours_titled, write_csv
from tests.terminal import on_terminal, plain


@pytest.fixture(scope="module")
def run(ray_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from ray import serve

    state = tmp_path_factory.mktemp("pipeline")
    cfg = parse_config(
        merge(
            ci_raw(),
            {
                "runtime": {"state_dir": str(state)},
                "serve": {"port": free_port(), "max_request_records": 50},
                "tracking": {"uri": f"sqlite:///{state / 'mlflow.db'}"},
                # the swap test re-runs this config: ASHA's timing may pick a slightly
                # different best trial, which must still be promoted
                "gates": {"model": {"beat_champion": {"margin": -0.05}}},
            },
        )
    )
    summary = runner.run(cfg, keep_serving=True)  # Ray is the fixture's: Serve stays up
    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=summary["tracking_uri"], registry_uri=summary["tracking_uri"]
    )
    token = Path(summary["token_file"]).read_text().strip()
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        yield {"cfg": cfg, "summary": summary, "client": client, "http": http, "token": token}
    serve.shutdown()


@pytest.fixture
def serves_v1_after(run) -> Iterator[None]:
    """For a test that changes what is served: afterwards the module's state is back (version 1
    the champion, no challenger, one replica, no alias polling), so no test depends on order."""
    yield
    from jobs.deploy.probe import wait_for_version
    from serving.launch import serve_app

    client, name, cfg = run["client"], run["summary"]["model_name"], run["cfg"]
    if aliased(client, name, cfg.serve.challenger_alias):
        client.delete_registered_model_alias(name, cfg.serve.challenger_alias)
    client.set_registered_model_alias(name, cfg.serve.alias, "1")
    endpoint, _ = serve_app(cfg, run["summary"]["tracking_uri"])
    wait_for_version(endpoint, 1)


@pytest.fixture
def other_version(run) -> int:
    """A registered version besides 1 (the swap test's, or one registered here, unserved)."""
    client, name = run["client"], run["summary"]["model_name"]
    versions = {int(v.version) for v in client.search_model_versions(f"name='{name}'")}
    if versions == {1}:
        versions.add(runner.run(run["cfg"], until="register")["model_version"])
        client.set_registered_model_alias(name, run["cfg"].serve.alias, "1")  # as it was
    return max(versions)


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


def test_the_model_run_names_its_data_as_mlflow_datasets_the_ui_can_read(run):
    """The best trial (the model version's run) and the tune run list the splits as MLflow
    datasets with contexts training/validation/test; the evaluate run the test split; each
    schema is MLflow's `mlflow_colspec`, which the UI's dataset drawer renders (issue #21)."""
    from mlflow.types import Schema

    client, s = run["client"], run["summary"]
    mv = client.get_model_version_by_alias(s["model_name"], "champion")
    trial = client.get_run(mv.run_id)
    tune = client.get_run(trial.data.tags[PARENT_TAG])
    evaluate = client.get_run(mv.tags["relay.evaluate_run_id"])
    etl = client.get_run(mv.tags["relay.etl_run_id"])
    assert not [m for m in etl.data.metrics if m.startswith(("rejects.", "pii_found."))]
    rejects = load_table(client, etl, "rejects.json")
    found = zip(rejects["column"], rejects["reason"], rejects["rows"], strict=True)
    assert {f"{c}:{r}": n for c, r, n in found} == s["rejects"]  # one table, not 1 chart each
    rows = s["rows"]
    for used, contexts in (
        (trial, {"training": "train", "validation": "val", "test": "test"}),
        (tune, {"training": "train", "validation": "val", "test": "test"}),
        (evaluate, {"test": "test"}),
    ):
        found = {
            i.tags[0].value: i.dataset for i in used.inputs.dataset_inputs if i.tags
        }  # the context is the input's mlflow.data.context tag
        assert set(found) == set(contexts), used.data.tags[STAGE_TAG]
        for context, split in contexts.items():
            dataset = found[context]
            assert dataset.name == f"{run['cfg'].name}-{split}"
            assert dataset.digest == s["dataset_digest"][:32]
            assert json.loads(dataset.source)["uri"].endswith(f"/{split}")
            assert json.loads(dataset.profile) == {"num_rows": rows[f"rows_{split}"]}
            schema = Schema.from_json(json.dumps(json.loads(dataset.schema)["mlflow_colspec"]))
            types = {c.name: str(c.type) for c in schema.inputs}
            assert types["age"].endswith("long") and types["income"].endswith("double")
            assert types["region"].endswith("string")
            assert schema.inputs[schema.input_names().index("income")].required is False
            assert schema.inputs[schema.input_names().index("age")].required is True


def test_relay_ui_serves_the_store_with_links_to_the_model_training_views_and_stops_on_sigterm(
    run,
):
    """`relay ui CONFIG` starts the MLflow UI on the run's store (127.0.0.1, a free port),
    prints links that open the experiment, the pipeline run and its version in the
    machine-learning view, and on SIGTERM stops the server it started, exit 0 (issue #21)."""
    import subprocess
    import sys

    import yaml

    s = run["summary"]
    config = Path(s["dataset_path"]).parents[2] / "ui-config.yaml"
    config.write_text(yaml.safe_dump(run["cfg"].model_dump(mode="json", exclude_none=True)))
    relay = str(Path(sys.executable).parent / "relay")
    ui = subprocess.Popen(
        [relay, "ui", str(config), "--json"], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        shown = json.loads(ui.stdout.readline())
        base, links = shown["url"], shown["links"]
        assert base.startswith("http://127.0.0.1:")
        experiment = s["experiment_id"]
        view = "?workflowType=machine_learning"
        assert links == {
            "experiment": f"{base}/#/experiments/{experiment}{view}",
            "run": f"{base}/#/experiments/{experiment}/runs/{s['pipeline_run_id']}{view}",
            "model_version": f"{base}/#/models/{s['model_name']}/versions/1{view}",
        }
        page = httpx.get(base + "/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        got = httpx.get(
            f"{base}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment}
        ).json()["experiment"]
        kind = {t["key"]: t["value"] for t in got["tags"]}["mlflow.experimentKind"]
        assert kind == "custom_model_development"  # opens as a model-training experiment
        version = httpx.get(
            f"{base}/api/2.0/mlflow/model-versions/get",
            params={"name": s["model_name"], "version": "1"},
        )
        assert version.status_code == 200
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    assert not alive(shown["pid"])  # the server it started
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/health", timeout=5)


def test_every_run_has_mlflows_source_user_and_a_description_of_its_outcome(run):
    """The MLflow UI's Source, Created by and Description columns: set on every run, each
    description saying what that stage produced (issue #21)."""
    import getpass

    client, s = run["client"], run["summary"]
    pipeline = client.get_run(s["pipeline_run_id"])
    stages = {r.data.tags[STAGE_TAG]: r for r in children(client, s["pipeline_run_id"])}
    tune = stages["tune"]
    trials = children(client, tune.info.run_id)
    for each in [pipeline, *stages.values(), *trials]:
        tags = each.data.tags
        assert tags["mlflow.user"] == getpass.getuser(), tags[STAGE_TAG]
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
        assert tags["mlflow.note.content"], tags[STAGE_TAG]
    name, test = s["model_name"], s["test_metrics"]
    note = pipeline.data.tags["mlflow.note.content"]
    assert f"{name} version 1 promoted, served at {s['endpoint']}" in note
    assert s["dataset_digest"][:12] in note and "tune " in note
    best = next(t for t in trials if t.data.tags.get("relay.best_trial") == "true")
    assert f"trial {best.info.run_id}" in tune.data.tags["mlflow.note.content"]
    assert (
        f"{len(trials)} trials (random search, asha scheduler)"
        in tune.data.tags["mlflow.note.content"]
    )
    assert (
        f"roc_auc {test['test_roc_auc']:.4g}" in stages["evaluate"].data.tags["mlflow.note.content"]
    )
    assert f"{name} version 1 promoted: all" in stages["register"].data.tags["mlflow.note.content"]
    assert (
        f"served at {s['endpoint'].removesuffix('/predict')}"
        in stages["deploy"].data.tags["mlflow.note.content"]
    )


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
    (served,) = stages["deploy"].inputs.dataset_inputs  # the deploy run consumed the version
    assert served.dataset.name == f"{s['model_name']}@champion"
    assert served.dataset.digest == s["model_sha256"][:32]

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
    for row, expected in zip(rows, offline, strict=True):
        response = run["http"].post(s["endpoint"], json=row)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["prediction"] == expected["prediction"]
        for cls, p in expected["probabilities"].items():
            assert body["probabilities"][cls] == pytest.approx(p, abs=1e-5)
        assert body["model_version"] == 1 and body["run_id"] == ref.run_id
        seen.add(body["request_id"])
    assert len(seen) == len(rows)

    batch = run["http"].post(s["endpoint"] + "/batch", json={"records": rows})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model_version"] == 1 and len(body["predictions"]) == len(rows)
    for served, expected in zip(body["predictions"], offline, strict=True):
        assert served["prediction"] == expected["prediction"]
        assert served["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)


def test_mlflow_and_oip_protocols_answer_as_predict_does(run):
    """`/invocations` (MLflow's scoring protocol) and OIP v2 `infer` give /predict's answers for
    the same records, one and many, with the version and lineage ids, behind the same token."""
    s, http = run["summary"], run["http"]
    base, name = s["endpoint"].removesuffix("/predict"), s["model_name"]
    predictor = Predictor(*load_verified(run["client"], resolve(run["client"], name, "1")))
    names = [c["name"] for c in predictor.spec["input_schema"]]
    rows = pq.read_table(Path(s["dataset_path"]) / "test").select(names).slice(0, 6).to_pylist()
    rows[1] = {**rows[1], "income": None}  # a null travels in each protocol
    for some in (rows[:1], rows):
        expected = [http.post(s["endpoint"], json=r).json() for r in some]
        split = {"columns": names, "data": [[r[n] for n in names] for r in some]}
        for body in ({"dataframe_records": some}, {"dataframe_split": split}):
            answer = http.post(base + "/invocations", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-relay-model-version"] == "1"
            assert answer.headers["x-relay-lineage-id"].startswith(f"{name}/1/")
            for got, want in zip(answer.json()["predictions"], expected, strict=True):
                assert got["prediction"] == want["prediction"]
                for cls, p in want["probabilities"].items():
                    assert got[f"probability_{cls}"] == pytest.approx(p, abs=1e-6)
        meta = httpx.get(f"{base}/v2/models/{name}", timeout=30).json()
        types = {t["name"]: t["datatype"] for t in meta["inputs"]}
        inputs = [
            {"name": n, "datatype": types[n], "shape": [len(some)], "data": [r[n] for r in some]}
            for n in names
        ]
        for path in (f"/v2/models/{name}/infer", f"/v2/models/{name}/versions/1/infer"):
            answer = http.post(base + path, json={"id": "req-7", "inputs": inputs})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["model_name"], body["model_version"], body["id"]) == (name, "1", "req-7")
            assert body["parameters"]["lineage_id"].startswith(f"{name}/1/")
            outputs = {t["name"]: t for t in body["outputs"]}
            assert outputs["prediction"]["datatype"] == "BYTES"
            assert outputs["prediction"]["data"] == [w["prediction"] for w in expected]
            for cls in expected[0]["probabilities"]:
                column = outputs[f"probability_{cls}"]
                assert column["datatype"] == "FP64" and column["shape"] == [len(some)]
                want = [w["probabilities"][cls] for w in expected]
                assert column["data"] == pytest.approx(want, abs=1e-6)
    assert types["age"] == "INT64" and types["region"] == "BYTES" and types["income"] == "FP64"
    assert meta["versions"] == ["1"]
    body = {"dataframe_records": rows[:1]}
    assert httpx.post(base + "/invocations", json=body, timeout=30).status_code == 401
    infer = f"{base}/v2/models/{name}/infer"
    assert httpx.post(infer, json={"inputs": inputs}, timeout=30).status_code == 401


def test_protocol_routes_refuse_bad_requests_in_their_own_shape(run):
    s, http = run["summary"], run["http"]
    base, name = s["endpoint"].removesuffix("/predict"), s["model_name"]
    record = s["prediction"]["request"]
    bad = http.post(
        base + "/invocations", json={"dataframe_records": [record, {**record, "age": 5}]}
    )
    assert bad.status_code == 400, bad.text
    assert bad.json()["error_code"] == "BAD_REQUEST" and "record 1: age" in bad.json()["message"]
    garbled = http.post(
        base + "/invocations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbled.status_code == 400 and "not JSON" in garbled.json()["message"]
    tensor = {"name": "age", "datatype": "BYTES", "shape": [1], "data": ["old"]}
    wrong_type = http.post(f"{base}/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert wrong_type.status_code == 400 and "'age' is INT64, not BYTES" in wrong_type.text
    for path in ("/v2/models/other/infer", f"/v2/models/{name}/versions/9/infer"):
        missing = http.post(base + path, json={"inputs": [tensor]})
        assert missing.status_code == 404 and "not served here" in missing.json()["error"]
    assert httpx.get(f"{base}/v2/models/{name}/versions/9", timeout=30).status_code == 404
    import jsonschema

    openapi = httpx.get(base + "/openapi.json", timeout=30).json()
    for route, code, answer in (
        ("/invocations", "400", bad),
        ("/v2/models/{name}/infer", "400", wrong_type),
        ("/v2/models/{name}/versions/{version}/infer", "404", missing),
    ):  # each body fits the schema OpenAPI documents for it
        documented = openapi["paths"][route]["post"]["responses"][code]["content"]
        schema = documented["application/json"]["schema"]
        jsonschema.validate(answer.json(), {**schema, **openapi})


def test_probes_split_liveness_from_readiness_in_both_conventions(run):
    base, name = run["summary"]["endpoint"].removesuffix("/predict"), run["summary"]["model_name"]
    answers = {
        path: httpx.get(base + path, timeout=30)
        for path in ("/livez", "/readyz", "/ping", "/v2/health/live", "/v2/health/ready",
                     f"/v2/models/{name}/ready", "/v2")
    }  # fmt: skip
    assert {p: a.status_code for p, a in answers.items()} == dict.fromkeys(answers, 200)
    assert answers["/livez"].json() == {"status": "live"}
    assert answers["/readyz"].json()["model_version"] == 1
    assert answers["/v2/health/ready"].json() == {"ready": True}
    assert answers["/v2"].json()["name"] == "relay"


def app_answer(send: Callable[[], httpx.Response], tries: int = 40) -> httpx.Response:
    """The app's own (JSON) answer to `send`. A new app makes HAProxy reload its routes; a
    request on a connection kept alive from before can meet the old HAProxy process, which
    answers a plain-text 404 for the app it never knew (seen once in CI)."""
    for _ in range(tries):
        response = send()
        if response.headers.get("content-type", "").startswith("application/json"):
            return response
        time.sleep(0.25)
    return response


def test_an_app_built_before_its_champion_exists_answers_503_then_serves_the_registered_one(run):
    """KubeRay applies the RayService with the RayJob that trains its first version: the
    builder must not fail without a champion. Its replicas are live, not ready (503), and
    answer 503 until a version is registered under the alias; then they serve it, checking
    records against it with the typed routes' 422s (issue #21)."""
    from ray import serve

    from jobs.deploy.probe import wait_for_version
    from serving.launch import serve_app

    s, client, http = run["summary"], run["client"], run["http"]
    name, record = "credit-pending", s["prediction"]["request"]
    raw = merge(
        run["cfg"].model_dump(mode="json"),
        {"model": {"name": name}, "serve": {"route_prefix": "/pending", "poll_alias_seconds": 0.5}},
    )
    cfg = parse_config(raw)
    base, _ = serve_app(cfg, s["tracking_uri"])  # the model is not even registered yet
    try:
        assert app_answer(lambda: httpx.get(f"{base}/livez", timeout=30)).status_code == 200
        assert app_answer(lambda: httpx.get(f"{base}/readyz", timeout=30)).status_code == 503
        ready = app_answer(lambda: httpx.get(f"{base}/v2/health/ready", timeout=30))
        assert ready.json() == {"ready": False}
        waiting = app_answer(lambda: http.post(f"{base}/predict", json=record))
        assert waiting.status_code == 503 and "not loaded yet" in waiting.text
        trained = client.get_model_version(s["model_name"], "1")  # registered as the job would
        client.create_registered_model(name)
        copy = client.create_model_version(
            name, trained.source, run_id=trained.run_id, tags=trained.tags
        )
        client.set_registered_model_alias(name, "champion", copy.version)
        wait_for_version(base, 1)
        answer = http.post(f"{base}/predict", json=record)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == s["prediction"]["response"]["prediction"]
        assert answer.json()["model_name"] == name
        bad = http.post(f"{base}/predict", json={**record, "age": 5})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "age"]
        batch = http.post(f"{base}/predict/batch", json={"records": [record, {**record, "age": 5}]})
        assert batch.status_code == 422
        assert batch.json()["detail"][0]["loc"] == ["body", "records", 1, "age"]
        both = http.post(f"{base}/invocations", json={"dataframe_records": [record, record]})
        assert both.status_code == 200 and len(both.json()["predictions"]) == 2
    finally:
        serve.delete(name)
        if client.search_registered_models(f"name = '{name}'"):
            client.delete_registered_model(name)


def test_prediction_routes_need_the_bearer_token(run):
    s = run["summary"]
    token_file = Path(s["token_file"])
    assert token_file.stat().st_mode & 0o777 == 0o600
    record = s["prediction"]["request"]
    for url, body in ((s["endpoint"], record), (s["endpoint"] + "/batch", {"records": [record]})):
        missing = httpx.post(url, json=body, timeout=30)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(url, json=body, timeout=30, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and "invalid bearer token" in wrong.text
    base = s["endpoint"].removesuffix("/predict")
    health = httpx.get(base + "/healthz", timeout=30)  # probes need no token
    assert health.status_code == 200
    assert health.json()["status"] == "ready" and health.json()["model_version"] == 1


def test_batch_route_bounds_and_locates_errors(run):
    s, http = run["summary"], run["http"]
    record = s["prediction"]["request"]
    too_many = http.post(s["endpoint"] + "/batch", json={"records": [record] * 51})
    assert too_many.status_code == 422 and "at most 50 items" in too_many.text
    bad = http.post(
        s["endpoint"] + "/batch", json={"records": [record, record, {**record, "age": 5}]}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "records", 2, "age"]
    empty = http.post(s["endpoint"] + "/batch", json={"records": []})
    assert empty.status_code == 200 and empty.json()["predictions"] == []


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
    response = run["http"].post(s["endpoint"], json=record)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_malformed_bodies_get_422_not_500(run):
    endpoint = run["summary"]["endpoint"]
    for content in (b"{not json", b"[1, 2]", b""):
        response = run["http"].post(
            endpoint, content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (content, response.status_code, response.text)


def test_schema_endpoint_describes_the_served_model(run):
    s = run["summary"]
    body = httpx.get(s["endpoint"].removesuffix("/predict") + "/schema", timeout=30).json()
    assert body["model"]["model_version"] == 1
    assert {c["name"] for c in body["input_schema"]} >= {"age", "region", "income"}
    assert "email" not in {c["name"] for c in body["input_schema"]}

    openapi = httpx.get(s["endpoint"].removesuffix("/predict") + "/openapi.json", timeout=30)
    fields = openapi.json()["components"]["schemas"]["PredictRequest"]["properties"]
    assert fields["age"]["type"] == "integer" and fields["age"]["minimum"] == 18
    assert fields["region"]["enum"] == ["north", "south", "east", "west"]
    assert "email" not in fields


def test_openapi_documents_each_error_the_endpoint_answers(run):
    """Issue #16: OpenAPI listed only 200 and 422. Each documented code is produced here by a
    request, and its body checked against the schema OpenAPI gives for it."""
    import jsonschema

    s, http = run["summary"], run["http"]
    base = s["endpoint"].removesuffix("/predict")
    openapi = httpx.get(base + "/openapi.json", timeout=30).json()
    assert openapi["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "scheme": "bearer"}
    }
    record = s["prediction"]["request"]
    as_json = {"Content-Type": "application/json"}
    bad = {**record, "age": 5}  # below its minimum
    for route, body, invalid, limit in (
        ("/predict", record, bad, 64 * 1024),
        ("/predict/batch", {"records": [record]}, {"records": [bad]}, 64 * 1024 * 50),
    ):  # 64 KiB per record, up to max_request_records (50) on the batch route
        operation = openapi["paths"][route]["post"]
        assert operation["security"] == [{"HTTPBearer": []}]
        documented = operation["responses"]
        assert set(documented) == {"200", "400", "401", "403", "413", "422"}
        assert f"over {limit} bytes" in documented["413"]["description"]
        url = base + route
        answers = {
            "400": http.post(url, content=b'{"age": "\xff"}', headers=as_json),  # not UTF-8
            "401": httpx.post(url, json=body, timeout=30),
            "403": httpx.post(url, json=body, timeout=30, headers={"Authorization": "Bearer x"}),
            "413": http.post(url, content=b" " * (limit + 1), headers=as_json),
            "422": http.post(url, json=invalid),
        }
        for code, answer in answers.items():
            assert answer.status_code == int(code), (route, code, answer.text)
            (media,) = documented[code]["content"]
            assert answer.headers["content-type"].split(";")[0] == media, (route, code)
            schema = {**documented[code]["content"][media]["schema"], **openapi}
            jsonschema.validate(
                answer.json() if media == "application/json" else answer.text, schema
            )
        assert answers["401"].headers["www-authenticate"] == "Bearer"
        assert "WWW-Authenticate" in documented["401"]["headers"]


def test_tampered_artifact_is_refused(run):
    s, client = run["summary"], run["client"]
    ref = resolve(client, s["model_name"], "champion")
    store = Path(urlparse(client.get_run(ref.run_id).info.artifact_uri).path)
    spec = store / ref.bundle_path / "spec.json"
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


def test_batch_predict_scores_files_and_keeps_rejected_rows(run, tmp_path):
    from jobs.predict.batch import MANIFEST, REASONS, STATUS, batch

    s, client = run["summary"], run["client"]
    test = pq.read_table(Path(s["dataset_path"]) / "test").drop_columns(["defaulted"])
    rows = test.slice(0, 30).to_pylist()
    rows[5]["age"] = "abc"
    rows[7]["region"] = "mars"
    raw = tmp_path / "new.csv"
    write_csv(raw, rows)
    result = batch(run["cfg"], [str(raw)], tmp_path / "scored")
    assert (result["rows_scored"], result["rows_rejected"]) == (28, 2)
    assert result["inputs"][0]["sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "scored" / MANIFEST).read_text()) == result

    out = pq.read_table(result["output"]).to_pylist()
    by_id = {r["customer_id"]: r for r in out}
    assert len(by_id) == 30
    bad = {rows[5]["customer_id"]: "age:type", rows[7]["customer_id"]: "region:set"}
    for customer, reason in bad.items():
        assert by_id[customer][STATUS] == "rejected" and by_id[customer][REASONS] == reason
        assert by_id[customer]["prediction"] is None
    ref = resolve(client, s["model_name"], "champion")
    predictor = Predictor(*load_verified(client, ref))
    names = [c["name"] for c in predictor.spec["input_schema"]]
    good = [r for r in test.slice(0, 30).to_pylist() if r["customer_id"] not in bad]
    offline = predictor.predict_records([{n: r[n] for n in names} for r in good])
    for row, expected in zip(good, offline, strict=True):
        scored = by_id[row["customer_id"]]
        assert scored[STATUS] == "scored" and scored["model_version"] == 1
        assert scored["prediction"] == expected["prediction"]
        assert scored["probability_1"] == pytest.approx(expected["probabilities"]["1"], abs=1e-5)

    tags = client.get_run(result["predict_run_id"]).data.tags
    assert tags[STAGE_TAG] == "predict" and tags["relay.model_version"] == "1"
    assert tags["relay.input_digest"] == result["input_digest"]


def test_relay_predict_draws_its_bar_only_at_a_terminal_and_never_under_json(
    run, ray_cluster, tmp_path
):
    """Batch `relay predict` on a real pseudo-terminal (a process of its own, a driver on the
    session's Ray): a bar counts the records scored and vanishes before the summary; with
    --json, or not at a terminal, nothing is drawn."""
    import sys

    import yaml
    from typer.testing import CliRunner

    from jobs.cli.app import app

    test = pq.read_table(Path(run["summary"]["dataset_path"]) / "test").drop_columns(["defaulted"])
    write_csv(tmp_path / "new.csv", test.slice(0, 40).to_pylist())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(run["cfg"].model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)

    def predict(folder: str, *extra: str) -> list[str]:
        args = [str(config), "--input", str(tmp_path / "new.csv"), "--output", folder]
        return ["predict", *args, "--address", ray_cluster.address, *extra]

    def at_terminal(*args: str) -> str:
        code, shown = on_terminal([sys.executable, "-m", "jobs.cli", *args], tmp_path, env)
        assert code == 0, plain(shown)[-3000:]
        return plain(shown)

    drawn = at_terminal(*predict(str(tmp_path / "a")))
    assert "predict: records scored" in drawn
    assert "scored 40 rows, rejected 0" in drawn.split("predict: records scored")[-1]
    quiet = at_terminal(*predict(str(tmp_path / "b"), "--json"))
    assert "records scored" not in quiet
    assert json.loads(quiet.strip().splitlines()[-1])["rows_scored"] == 40
    piped = CliRunner().invoke(app, predict(str(tmp_path / "c")))
    assert piped.exit_code == 0, piped.output
    assert "records scored" not in piped.output and "\x1b[" not in piped.output
    assert_human(piped)
    machine = CliRunner().invoke(app, predict(str(tmp_path / "d"), "--json"))
    assert json_object(machine)["rows_rejected"] == 0


def test_client_and_cli_send_records_to_the_endpoint(run):
    from typer.testing import CliRunner

    from jobs.cli.app import app
    from serving.client import Client, EndpointError

    s = run["summary"]
    record = s["prediction"]["request"]
    client = Client(s["endpoint"], token=run["token"])
    assert client.predict(record)["prediction"] == s["prediction"]["response"]["prediction"]
    assert client.health()["model_version"] == 1
    with pytest.raises(EndpointError) as refused:
        Client(s["endpoint"]).predict(record)
    assert refused.value.status == 401

    base = s["endpoint"].removesuffix("/predict")
    cli = ["predict", "--endpoint", base, "--token-file", s["token_file"], "--record"]
    ok = CliRunner().invoke(app, [*cli, json.dumps([record, record]), "--json"])
    assert ok.exit_code == 0, ok.output
    (first, _) = json_object(ok, text=("prediction",))["predictions"]  # a class label
    assert first["prediction"] == s["prediction"]["response"]["prediction"]
    shown = CliRunner().invoke(app, [*cli, json.dumps(record)])  # for a person: one line each
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"{first['prediction']}  (")
    assert "version 1  lineage " in shown.output and "{" not in shown.output
    bad = CliRunner().invoke(app, [*cli, json.dumps({**record, "age": 5})])
    assert bad.exit_code == 6 and "greater than or equal to 18" in bad.output


def test_lineage_tree_and_dot_views_show_the_raw_files_and_unknown_formats_are_refused(run):
    """The README's headline command (the default tree view) and the other views, issue #16."""
    from typer.testing import CliRunner

    from jobs.cli.app import app

    s = run["summary"]
    uri = ["--tracking-uri", s["tracking_uri"]]
    target = f"models:/{s['model_name']}@champion"
    wide = {"COLUMNS": "400"}  # a terminal wide enough for the paths: rich crops at the width
    tree = CliRunner().invoke(app, ["lineage", target, *uri], env=wide)
    assert tree.exit_code == 0, tree.output
    manifest = json.loads((Path(s["dataset_path"]) / "dataset.json").read_text())["manifest"]
    for m in manifest:
        assert f"{m['bytes']:,} bytes  sha256 {m['sha256'][:16]}" in tree.output
    assert f"raw files ({len(manifest)})" in tree.output
    hp = s["best_hyperparameters"]  # typed: `lr=0.003`, not a Python dict repr
    assert ", ".join(f"{k}={v}" for k, v in hp.items()) in tree.output
    assert f"{run['cfg'].tune.num_samples} trials" in tree.output
    dot = CliRunner().invoke(app, ["lineage", target, "--format", "dot", *uri])
    assert own_stdout(dot).startswith("digraph lineage {") and "raw0 -> etl;" in dot.output
    for i, m in enumerate(manifest):
        label = f"{Path(m['path']).name} sha256 {m['sha256'][:12]}"
        assert f'raw{i} [label="{label}"];' in dot.output
    yaml_view = CliRunner().invoke(app, ["lineage", target, "--format", "yaml", *uri])
    assert yaml_view.exit_code == 2
    assert all(choice in yaml_view.output for choice in ("tree", "json", "mermaid", "dot"))


def test_a_predictions_lineage_id_resolves_to_the_raw_file_hashes(run):
    from typer.testing import CliRunner

    from jobs.cli.app import app
    from jobs.pipeline.lineage import CHAIN_KEYS

    s = run["summary"]
    response = run["http"].post(s["endpoint"], json=s["prediction"]["request"]).json()
    assert response["lineage_id"].startswith(f"{s['model_name']}/1/")
    uri = ["--tracking-uri", s["tracking_uri"]]
    result = CliRunner().invoke(app, ["lineage", response["lineage_id"], "--json", *uri])
    assert result.exit_code == 0, result.output
    chain = json_object(result)
    assert tuple(chain) == CHAIN_KEYS  # a stable shape for scripts
    assert chain["model"]["version"] == 1 and chain["model"]["sha256"] == s["model_sha256"]
    assert chain["dataset"]["digest"] == s["dataset_digest"]
    manifest = json.loads((Path(s["dataset_path"]) / "dataset.json").read_text())["manifest"]
    assert {f["sha256"] for f in chain["raw_files"]} == {m["sha256"] for m in manifest}
    assert len(chain["raw_files"]) == 2
    assert chain["pipeline"]["run_id"] == s["pipeline_run_id"]
    assert [d["stage"] for d in chain["deployments"]] == ["deploy"]

    for target in (f"models:/{s['model_name']}@champion", s["pipeline_run_id"]):
        same = CliRunner().invoke(app, ["lineage", target, "--json", *uri])
        assert json_output(same)["model"]["version"] == 1, same.output
    graph = CliRunner().invoke(
        app, ["lineage", f"{s['model_name']}/1", "--format", "mermaid", *uri]
    )
    assert own_stdout(graph).startswith("graph LR") and "raw0 --> etl" in graph.output
    artifacts = {a.path for a in run["client"].list_artifacts(s["pipeline_run_id"])}
    assert {"lineage.mmd", "lineage.svg"} <= artifacts  # the text, and the image the UI draws
    unknown = CliRunner().invoke(app, ["lineage", "a/b/c/d", *uri])
    assert unknown.exit_code == 2 and "expected models:/name@alias" in unknown.output
    no_run = CliRunner().invoke(app, ["lineage", "deadbeef", *uri])
    assert no_run.exit_code == 2 and "is not a run of a relay pipeline" in no_run.output

    listed = json_object(CliRunner().invoke(app, ["runs", "--json", *uri]))
    mine = next(r for r in listed["runs"] if r["run_id"] == s["pipeline_run_id"])
    assert mine["status"] == "FINISHED" and mine["model_version"] == 1
    assert mine["dataset_digest"] == s["dataset_digest"] and "best_val_loss" in mine["best"]
    started = run["client"].get_run(s["pipeline_run_id"]).info.start_time
    assert datetime.fromisoformat(mine["started"]) == datetime.fromtimestamp(started / 1000, UTC)


def test_the_python_api_reads_runs_and_lineage_as_the_cli_prints_them(run):
    """`jobs.client.Relay`: what `relay runs --json` and `relay lineage --json` print, as
    typed values for a notebook (issue #21)."""
    from typer.testing import CliRunner

    from jobs.cli.app import app
    from jobs.client import PipelineRun, Relay

    s = run["summary"]
    relay = Relay(tracking_uri=s["tracking_uri"])
    runs = relay.runs(limit=50)
    assert all(isinstance(r, PipelineRun) for r in runs)
    (ours,) = [r for r in runs if r.run_id == s["pipeline_run_id"]]
    assert (ours.status, ours.model_version, ours.dataset_digest) == (
        "FINISHED",
        1,
        s["dataset_digest"],
    )
    assert set(ours.best) == {f"best_{k}" for k in s["best_val"] if k.startswith("val")}
    uri = ["--tracking-uri", s["tracking_uri"]]
    listed = json_output(CliRunner().invoke(app, ["runs", "--json", "--limit", "50", *uri]))
    assert [r["run_id"] for r in listed["runs"]] == [r.run_id for r in runs]
    target = f"models:/{s['model_name']}@champion"
    printed = json_output(CliRunner().invoke(app, ["lineage", target, "--json", *uri]))
    assert relay.lineage(target) == printed and printed["model"]["version"] == 1


def test_lineage_json_is_typed_and_a_missing_version_or_alias_is_one_line_exit_2(run):
    """Issue #16: tags were written with str(v), so --json held a Python dict repr and strings
    for counts and flags; a missing version printed MLflow's traceback, an alias exited 6."""
    from typer.testing import CliRunner

    from jobs.cli.app import app

    s, client = run["summary"], run["client"]
    uri = ["--tracking-uri", s["tracking_uri"]]
    found = CliRunner().invoke(app, ["lineage", s["pipeline_run_id"], "--json", *uri])
    chain = json_output(found)
    assert chain["tune"]["best_hyperparameters"] == s["best_hyperparameters"]
    assert isinstance(chain["tune"]["best_hyperparameters"]["hidden_size"], int)
    assert chain["tune"]["trials"] == run["cfg"].tune.num_samples  # an int, not "2"
    assert chain["best_trial"]["params"] == s["best_hyperparameters"]  # same values, typed
    dirty = chain["pipeline"]["git_dirty"]  # a flag, or None where the code is not in git
    assert dirty is None if chain["pipeline"]["git_commit"] == "unknown" else type(dirty) is bool
    deployed = chain["deployments"][0]  # the first deploy of version 1 (a rollout may follow)
    started = client.get_run(deployed["run_id"]).info.start_time
    assert datetime.fromisoformat(deployed["started"]) == datetime.fromtimestamp(
        started / 1000, UTC
    )
    name = s["model_name"]
    for target, expected in (
        (f"models:/{name}/99", f"model {name} has no version 99; its versions: "),
        (f"{name}/99/some-request", f"model {name} has no version 99; its versions: "),
        (
            f"models:/{name}@nosuchalias",
            f"model {name} has no alias 'nosuchalias'; its aliases: champion (version ",
        ),
        ("models:/no-such-model@champion", "no model named 'no-such-model' in this store; "),
    ):
        missing = CliRunner().invoke(app, ["lineage", target, *uri])
        assert missing.exit_code == 2, missing.output
        assert f"error: {expected}" in missing.stderr and "Traceback" not in missing.output
        assert own_stdout(missing) == ""


def test_moving_the_alias_swaps_the_served_model_under_load(run, serves_v1_after):
    """A second pipeline run registers a new version; its deploy swaps it in while requests
    flow (from version 1, the module's champion)."""
    s, http, client = run["summary"], run["http"], run["client"]
    registered = client.search_model_versions(f"name='{s['model_name']}'")
    new = max(int(v.version) for v in registered) + 1
    record = s["prediction"]["request"]
    stop = threading.Event()
    outcomes: list[tuple[int, int | None]] = []
    errors: list[Exception] = []  # a dropped connection is a failed swap: kept, not lost

    def load() -> None:
        while not stop.is_set():
            try:
                response = http.post(s["endpoint"], json=record)
                version = response.json().get("model_version") if response.is_success else None
                outcomes.append((response.status_code, version))
            except Exception as exc:  # the thread goes on: a later request may still fail
                errors.append(exc)
            time.sleep(0.02)

    generator = threading.Thread(target=load)
    generator.start()
    try:
        second = runner.run(run["cfg"], keep_serving=True)
        time.sleep(1.0)
    finally:
        stop.set()
        generator.join(timeout=60)
    assert not generator.is_alive() and errors == [], errors[:3]
    assert second["model_version"] == new
    statuses = [status for status, _ in outcomes]
    assert len(statuses) > 50 and set(statuses) == {200}, statuses
    versions = [version for _, version in outcomes]
    assert versions[0] == 1 and versions[-1] == new
    assert versions == sorted(versions)  # once swapped, never back


def test_champion_challenger_rollout_splits_promotes_and_rolls_back(
    run, other_version, serves_v1_after
):
    """Another version the champion, version 1 its challenger: split, roll back, promote."""
    from jobs.deploy import rollout

    s, http, client = run["summary"], run["http"], run["client"]
    other = other_version
    client.set_registered_model_alias(s["model_name"], "champion", str(other))
    cfg = parse_config(
        merge(run["cfg"].model_dump(mode="json"), {"serve": {"challenger_share": 0.5}})
    )
    record = s["prediction"]["request"]

    def versions(n: int) -> Counter:
        return Counter(
            http.post(s["endpoint"], json=record).json()["model_version"] for _ in range(n)
        )

    started = rollout.start(cfg, version=1)
    assert (started["model_version"], started["challenger_version"]) == (other, 1)
    split = versions(200)
    assert set(split) == {1, other} and min(split.values()) > 50, split  # 50% +- noise

    rolled_back = rollout.rollback(cfg)
    assert rolled_back["challenger_version"] is None
    assert versions(30) == Counter({other: 30})

    rollout.start(cfg, version=1)
    promoted = rollout.promote(cfg)
    assert (promoted["model_version"], promoted["challenger_version"]) == (1, None)
    assert versions(30) == Counter({1: 30})
    assert int(client.get_model_version_by_alias(s["model_name"], "previous").version) == other
    tags = client.get_run(promoted["rollout_run_id"]).data.tags
    assert tags["relay.rollout_action"] == "promote" and tags[STAGE_TAG] == "rollout"


def test_polling_replicas_follow_the_alias_without_a_redeploy(run, other_version, serves_v1_after):
    """Version 1 the champion, then another, then 1 again: the replicas follow by polling."""
    from jobs.deploy.probe import wait_for_version
    from serving.client import get_json
    from serving.launch import serve_app

    s, client = run["summary"], run["client"]
    cfg = parse_config(
        merge(run["cfg"].model_dump(mode="json"), {"serve": {"poll_alias_seconds": 0.5}})
    )
    endpoint, _ = serve_app(cfg, s["tracking_uri"])
    wait_for_version(endpoint, 1)
    for version in (other_version, 1):
        client.set_registered_model_alias(s["model_name"], "champion", str(version))
        moved = time.monotonic()
        wait_for_version(endpoint, version, timeout=15)  # no deploy: the replica noticed
        print(f"alias -> {version}: served after {time.monotonic() - moved:.1f} s")
    assert get_json(f"{endpoint}/healthz")["model_version"] == 1


def test_a_request_alone_is_answered_without_waiting_for_a_batch(run, serves_v1_after):
    """A batch wait is only worth paying when other requests are queued: with a 20 s wait, a
    lone request still answers within the client's 10 s (the batch would have waited the
    20 s for 15 more), and answers what the registered model answers."""
    from jobs.deploy.probe import wait_for_version
    from serving.launch import serve_app

    s = run["summary"]
    cfg = parse_config(
        merge(run["cfg"].model_dump(mode="json"), {"serve": {"batch_wait_timeout_s": 20}})
    )
    endpoint, _ = serve_app(cfg, s["tracking_uri"])
    wait_for_version(endpoint, 1)
    record = s["prediction"]["request"]
    for _ in range(3):
        answer = run["http"].post(f"{endpoint}/predict", json=record, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == s["prediction"]["response"]["prediction"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_bodies_get_4xx_never_5xx(run, data):
    """Arbitrary JSON, and valid records with one field replaced by arbitrary JSON."""
    s, http = run["summary"], run["http"]
    record = s["prediction"]["request"]
    field = data.draw(st.sampled_from([*record, "unknown"]))
    body = data.draw(JSON | st.just({**record, field: data.draw(JSON)}))
    route = data.draw(st.sampled_from(["", "/batch"]))
    if route and data.draw(st.booleans()):
        body = {"records": [body]}
    response = http.post(
        s["endpoint"] + route,
        content=json.dumps(body).encode(),  # NaN and Infinity too: Python writes them
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code != 200:
        assert response.status_code == 422 and response.json()["detail"]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_protocol_bodies_get_their_4xx_never_5xx(run, data):
    """Arbitrary JSON, bare or in an MLflow / OIP envelope, and valid requests with one part
    replaced by arbitrary JSON: a 200 or the protocol's 400."""
    s, http = run["summary"], run["http"]
    base, name = s["endpoint"].removesuffix("/predict"), s["model_name"]
    record, junk = s["prediction"]["request"], data.draw(JSON)
    if data.draw(st.booleans()):
        route, error = "/invocations", "message"
        key = data.draw(st.sampled_from([*record, "x"]))
        bodies = [
            {data.draw(st.sampled_from(["dataframe_records", "dataframe_split", "inputs"])): junk},
            {"dataframe_records": [{**record, key: junk}]},
            {"dataframe_split": {"columns": list(record), "data": junk}},
        ]
    else:
        route, error = f"/v2/models/{name}/infer", "error"
        meta = http.get(f"{base}/v2/models/{name}").json()
        tensors = [{**t, "shape": [1], "data": [record.get(t["name"])]} for t in meta["inputs"]]
        i = data.draw(st.integers(0, len(tensors) - 1))
        part = data.draw(st.sampled_from(["name", "datatype", "shape", "data"]))
        broken = [*tensors[:i], {**tensors[i], part: junk}, *tensors[i + 1 :]]
        bodies = [{"inputs": junk}, {"inputs": broken}, {"inputs": tensors, "outputs": junk}]
    body = data.draw(st.sampled_from([junk, *bodies]))
    response = http.post(
        base + route,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (route, body, response.status_code, response.text)
    if response.status_code != 200:
        assert response.status_code == 400 and response.json()[error], (route, body)


class Load:
    """Plain HTTP requests and the retrying client in two loops, until the block ends.

    `raw_status` holds each plain request's status, 0 for a connection error; `app_404s`
    counts the 404s relay's app answered (JSON) rather than the ingress (HAProxy's plain-text
    "Path ... not found" while it has no routes yet).
    """

    def __init__(self, run: dict[str, Any], retries: int = 4):
        from serving.client import Client

        self.run, self.record = run, run["summary"]["prediction"]["request"]
        self.client = Client(run["summary"]["endpoint"], token=run["token"], retries=retries)
        self.stop = threading.Event()
        self.raw_status: list[int] = []
        self.app_404s = 0
        self.client_errors: list[Exception] = []
        self.threads = [threading.Thread(target=self._raw), threading.Thread(target=self._client)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def failed(self) -> list[int]:
        return [code for code in self.raw_status if code != 200]

    def _raw(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.run["http"].post(self.run["summary"]["endpoint"], json=self.record)
                self.raw_status.append(answer.status_code)
                if answer.status_code == 404 and answer.text.startswith("{"):
                    self.app_404s += 1
            except httpx.TransportError:
                self.raw_status.append(0)
            if self.raw_status[-1] != 200:
                time.sleep(REFUSED_PAUSE_S)  # a failure returns at once: don't spin

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.predict(self.record)
            except Exception as exc:  # any failure the caller would see
                self.client_errors.append(exc)


REFUSED_PAUSE_S = 0.1
# Seconds until a killed Serve process is replaced and requests succeed again (measured here:
# controller 2.5 s, requests kept flowing; the ingress ~7 s with relay's 2 s proxy health
# check, ~31 s with Serve's default 10 s). The default ingress is HAProxy, run by Serve's
# HAProxyManager actor (the Python proxy stays as its fallback): a dead HAProxy fails the
# manager's health check, a dead manager takes its HAProxy with it, and either way the
# controller starts a new pair. While the ingress is away its port refuses connections: the
# plain loop fails at most once per REFUSED_PAUSE_S; the client's retries ride it out. A new
# HAProxy answers 404 (plain text) until Serve hands it the routes, a moment after it starts.
# Bounds only a real failure breaks, not a slow machine: the controller's claim is that
# requests flow meanwhile (30 s: replaced at all); the ingress's 20 s sits between relay's
# ~7 s and the default's ~31 s, so it breaks only when the 2 s health check is lost.
SERVE_PROCESS_LOSS = {
    "ray::ServeController": 30.0,
    "ray::ProxyActor": 20.0,
    "ray::HAProxyManager": 20.0,
    haproxy_binary(): 20.0,
}
assert ServeConfig().ingress == "haproxy"  # what the session's Ray runs (tests/conftest.py)


@pytest.mark.parametrize("title", list(SERVE_PROCESS_LOSS))
def test_losing_serves_controller_or_proxy_under_load_recovers_alone(run, title):
    """SIGKILL Serve's controller (replicas keep serving) or its HTTP proxy (the port goes
    dark until the controller starts a new one): Serve recovers without intervention, plain
    requests fail at most with connection errors, 5xx or the new ingress's 404 before it has
    its routes, the retrying client not at all.
    """
    endpoint = run["summary"]["endpoint"]
    deadline = time.monotonic() + 30
    while len(before := pids(title)) != 1:  # an HAProxy reload leaves the old one a moment
        assert time.monotonic() < deadline, before
        time.sleep(0.2)
    with Load(run, retries=7) as load:  # backoff 0.2 s doubling: ~25 s in all
        time.sleep(1)
        os.kill(next(iter(before)), signal.SIGKILL)
        killed_at = time.monotonic()
        recovered = None
        while time.monotonic() - killed_at < 40:
            if pids(title) - before and answers(run, endpoint):
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.2)
        requests_at_recovery = len(load.raw_status)
        time.sleep(1)
    assert recovered is not None, f"{title} was not replaced"
    assert len(load.raw_status) > requests_at_recovery
    failed = load.failed()
    print(
        f"{title} loss: {len(failed)} of {len(load.raw_status)} raw requests failed "
        f"{set(failed)}, client retried {load.client.retried}, recovered in {recovered:.1f} s"
    )
    assert recovered <= SERVE_PROCESS_LOSS[title]
    if title in ("ray::ServeController", "ray::ProxyActor"):
        assert failed == []  # HAProxy and the replica serve without them (the fallback idle)
    assert len(failed) <= recovered / REFUSED_PAUSE_S + 5 and set(failed) <= {0, 404, 500, 502, 503}
    assert load.app_404s == 0  # a 404 only from an ingress that has no routes yet
    assert load.client_errors == []


def answers(run: dict[str, Any], endpoint: str) -> bool:
    try:
        return run["http"].post(endpoint, json=run["summary"]["prediction"]["request"]).is_success
    except httpx.TransportError:
        return False


def test_losing_a_replica_under_load_costs_retries_not_failures(run, serves_v1_after):
    """Two replicas, one SIGKILLed mid-load: raw HTTP sees a few failures, the retrying client
    none."""
    from ray import serve

    from serving.launch import serve_app

    s = run["summary"]
    two = {"serve": {"num_replicas": 2, "replica_cpus": 0.5}}
    cfg = parse_config(merge(run["cfg"].model_dump(mode="json"), two))
    serve_app(cfg, s["tracking_uri"])

    def running() -> int:
        status = serve.status().applications[cfg.model.name].deployments["ModelServer"]
        return status.replica_states.get("RUNNING", 0)

    deadline = time.monotonic() + 60
    while running() != 2 or len(pids(REPLICA)) != 2:
        assert time.monotonic() < deadline, "two replicas never came up"
        time.sleep(0.2)
    before = pids(REPLICA)
    with Load(run) as load:
        time.sleep(2)
        os.kill(min(before), signal.SIGKILL)
        killed_at = time.monotonic()
        recovered = None
        while time.monotonic() - killed_at < 60:
            if pids(REPLICA) - before and running() == 2:  # a new process, reported running
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.2)
        requests_at_recovery = len(load.raw_status)
        time.sleep(2)
    assert recovered is not None, "the replica was not replaced"
    assert len(load.raw_status) > requests_at_recovery  # traffic flowed before, during and after
    failed = load.failed()
    print(
        f"replica loss: {len(failed)} of {len(load.raw_status)} raw requests failed "
        f"{set(failed)}, client retried {load.client.retried}, recovered in {recovered:.1f} s"
    )
    # a request on the killed replica is lost: HAProxy drops its connection (0), Serve's proxy
    # answers 500; the rest go to the other replica
    assert len(failed) <= max(5, 0.01 * len(load.raw_status))
    assert set(failed) <= {0, 500, 502, 503}
    assert load.client_errors == []


REPLICA = "ray::ServeReplica"


def pids(title: str) -> set[int]:
    """Our Ray's processes titled `title`: another Ray on the machine is not ours to kill."""
    return ours_titled(title.encode())
