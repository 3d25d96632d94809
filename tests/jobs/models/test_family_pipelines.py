"""Each model family end to end on the CI data: trained, evaluated, promoted, served, and the
endpoint answering what the registered model answers offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from cluster.errors import GateFailedError
from cluster.tracking.registry import load_verified, resolve
from jobs.pipeline import runner
from jobs.predict.batch import STATUS, batch
from serving.model import Predictor
from tests.conftest import fluent_uri
from tests.tasks import task_config

USERMODELS = Path(__file__).resolve().parents[2] / "fixtures" / "usermodels"


def pyfunc_predictions(tracking_uri: str, model_uri: str, rows: list[dict]) -> Any:
    """`mlflow.pyfunc.load_model(model_uri).predict(DataFrame)`, as an MLflow user calls it."""
    import mlflow
    import pandas as pd

    with fluent_uri(tracking_uri):
        model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(pd.DataFrame(rows))


@pytest.mark.parametrize(
    ("family", "task"),
    [
        ("linear", "binary"),
        ("linear", "regression"),
        ("gbdt", "binary"),
        ("gbdt", "multiclass"),
        ("gbdt", "regression"),
        ("torch", "binary"),  # tests/fixtures/usermodels/widenet.py
    ],
)
def test_a_family_is_promoted_and_serves_what_it_was_evaluated_as(
    ray_cluster, make_config, tmp_path, family, task
):
    from ray import serve

    model = {"family": family} | ({"module": "widenet:build"} if family == "torch" else {})
    cfg = task_config(
        make_config,
        tmp_path,
        task,
        model=model,
        tune={"num_samples": 1, "search_space": None},  # the family's own default space
    )
    cfg._folder = USERMODELS  # as if the config file sat beside the user's module
    try:
        summary = runner.run(cfg, keep_serving=True)  # the session's Ray: Serve stays up
        client = MlflowClient(summary["tracking_uri"], summary["tracking_uri"])
        ref = resolve(client, cfg.model.name, "champion")
        spec, files = load_verified(client, ref)
        predictor = Predictor(spec, files)
        names = [c["name"] for c in spec["input_schema"]]
        test = pq.read_table(Path(summary["dataset_path"]) / "test").select(names)
        rows = test.slice(0, 25).to_pylist()
        token = Path(summary["token_file"]).read_text().strip()
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            served = http.post(summary["endpoint"] + "/batch", json={"records": rows})
    finally:
        serve.shutdown()
    assert served.status_code == 200, served.text
    offline = predictor.predict_records(rows)
    answers = served.json()["predictions"]
    for answer, expected in zip(answers, offline, strict=True):
        if task == "regression":
            assert answer["prediction"] == pytest.approx(expected["prediction"], rel=1e-6)
        else:
            assert answer["prediction"] == expected["prediction"]
            assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)

    # batch scoring (`relay predict --input`) answers what the endpoint answered
    source = tmp_path / "rows.parquet"
    pq.write_table(test.slice(0, 25), source)
    scored_file = pq.read_table(batch(cfg, [str(source)], tmp_path / "scored")["output"])
    assert scored_file.column(STATUS).to_pylist() == ["scored"] * 25
    if task == "regression":
        served_values = [a["prediction"] for a in answers]
        assert scored_file.column("prediction").to_pylist() == pytest.approx(
            served_values, rel=1e-6
        )
    else:
        assert scored_file.column("prediction").to_pylist() == [a["prediction"] for a in answers]
        for cls in answers[0]["probabilities"]:
            served_values = [a["probabilities"][cls] for a in answers]
            batch_values = scored_file.column(f"probability_{cls}").to_pylist()
            assert batch_values == pytest.approx(served_values, abs=1e-6)

    # the version is an MLflow Model: pyfunc answers what the endpoint answered
    scored = pyfunc_predictions(summary["tracking_uri"], f"models:/{cfg.model.name}@champion", rows)
    if task == "regression":
        served_values = [a["prediction"] for a in answers]
        assert list(scored["prediction"]) == pytest.approx(served_values, rel=1e-6)
    else:
        assert list(scored["prediction"]) == [a["prediction"] for a in answers]
        for cls in answers[0]["probabilities"]:
            served_values = [a["probabilities"][cls] for a in answers]
            assert list(scored[f"probability_{cls}"]) == pytest.approx(served_values, abs=1e-6)
    assert summary["model_version"] == 1 and ref.version == 1  # promoted
    assert spec["family"] == family
    library = {"linear": "torch", "gbdt": "xgboost", "torch": "torch"}[family]
    assert spec["library"]["name"] == library
    card = client.get_model_version(cfg.model.name, "1").description
    assert f"- Family: {family} ({library} {spec['library']['version']})" in card
    if family == "linear":  # one affine map, no hidden layer
        assert spec["files"] == ["model.safetensors"] and spec["architecture"]["depth"] == 0
        assert set(spec["hyperparameters"]) == {"lr", "weight_decay", "batch_size"}
    if family == "torch":  # the user's module travels in the bundle, its hash on the spec
        assert spec["files"] == ["model.safetensors", "module.py"]
        source = (USERMODELS / "widenet.py").read_bytes()
        assert spec["architecture"]["module_sha256"] == hashlib.sha256(source).hexdigest()
        assert spec["architecture"]["kwargs"] == {"width": 32, "blocks": 1}
        tags = client.get_model_version(cfg.model.name, "1").tags
        assert tags["relay.module"] == "widenet:build"
        assert tags["relay.module_sha256"] == spec["architecture"]["module_sha256"]
    if family == "gbdt":  # xgboost's own UBJSON, cut to the best round
        assert spec["files"] == ["model.ubj"] and spec["architecture"]["type"] == "xgboost"
        assert 1 <= spec["architecture"]["rounds"] <= spec["hyperparameters"]["num_boost_round"]
    tune_run = client.get_run(
        client.search_runs(
            [summary["experiment_id"]], "tags.`relay.stage` = 'tune'", max_results=1
        )[0].info.run_id
    )
    assert tune_run.data.params["family"] == family
    metrics = summary["test_metrics"]
    if task == "regression":  # the loan amount is linear in age, late payments and region
        assert metrics["test_r2"] > 0.8, metrics
    elif task == "multiclass":  # home ownership follows age and region (10% noise)
        assert metrics["test_accuracy"] > 0.8, metrics
    else:
        assert metrics["test_roc_auc"] > 0.6, metrics


def test_a_gbdt_trial_over_two_workers_boosts_on_both_shards_and_keeps_the_best_round(
    ray_cluster, make_config
):
    """workers_per_trial 2: an XGBoostTrainer run per trial; Ray joins the two workers into
    XGBoost's collective, rank 0's checkpoint (cut to the best round) is what is evaluated."""
    from serving.families.trees import BOOSTER, load_booster

    cfg = make_config(
        model={"family": "gbdt", "hyperparameters": {"num_boost_round": 60}},
        tune={"num_samples": 1, "scheduler": "fifo", "search_space": None},
        train={"workers_per_trial": 2, "cpus_per_trial": 2},
    )
    summary = runner.run(cfg, until="evaluate")
    assert summary["test_metrics"]["test_roc_auc"] > 0.6, summary["test_metrics"]
    client = MlflowClient(summary["tracking_uri"])
    (trial,) = client.search_runs([summary["experiment_id"]], "tags.`relay.stage` = 'trial'")
    rounds = int(trial.data.tags["relay.epochs_run"])
    assert trial.data.tags["relay.trial_status"] in ("completed", "early_stopped")
    steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_loss")]
    assert steps == sorted(steps) and steps[-1] == rounds  # reported with each checkpoint
    (train_run,) = (Path(cfg.runtime.state_dir) / "tune" / "train").iterdir()
    assert train_run.name.startswith(cfg.name)  # the Train run, named after the trial
    (checkpoint,) = train_run.glob(f"checkpoint_*/{BOOSTER}")
    kept = load_booster(checkpoint.read_bytes()).num_boosted_rounds()
    assert 1 <= kept <= rounds <= 60


def test_mlflow_models_serve_answers_as_relays_endpoint(ray_cluster, make_config, tmp_path):
    """`mlflow models serve -m models:/<name>@champion` (MLflow's own server, in this
    environment) scores a registered version; its answers are the Predictor's."""
    import subprocess
    import sys
    import time

    from cluster.processes import stop_groups
    from tests.conftest import free_port

    cfg = make_config(model={"family": "linear"}, tune={"num_samples": 1, "search_space": None})
    summary = runner.run(cfg, until="register")
    uri = summary["tracking_uri"]
    client = MlflowClient(uri, uri)
    predictor = Predictor(*load_verified(client, resolve(client, cfg.model.name, "champion")))
    names = [c["name"] for c in predictor.spec["input_schema"]]
    rows = pq.read_table(Path(summary["dataset_path"]) / "test").select(names).slice(0, 5)
    rows = rows.to_pylist()
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    command = [f"{bin_dir}/mlflow", "models", "serve", "-m", f"models:/{cfg.model.name}@champion"]
    command += ["--env-manager", "local", "-p", str(port), "-w", "1"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not come up"
            time.sleep(0.5)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": rows}, timeout=30
        )
        bad = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_records": [{**rows[0], "age": "old"}]},
            timeout=30,
        )
    finally:
        stop_groups([server.pid])
        log.close()
    assert answer.status_code == 200, answer.text
    expected = predictor.predict_records(rows)
    for got, want in zip(answer.json()["predictions"], expected, strict=True):
        assert got["prediction"] == want["prediction"]
        for cls, p in want["probabilities"].items():
            assert got[f"probability_{cls}"] == pytest.approx(p, abs=1e-6)
    assert bad.status_code == 400 and "age" in bad.text


def test_a_user_build_that_raises_fails_its_trial_with_the_traceback_not_the_search(
    ray_cluster, make_config
):
    from cluster.errors import TrainingFailedError

    cfg = make_config(
        model={"family": "torch", "module": "raising:build"},
        tune={"num_samples": 1, "search_space": None},
    )
    cfg._folder = USERMODELS
    with pytest.raises(TrainingFailedError) as failed:
        runner.run(cfg, until="tune")
    assert failed.value.exit_code == 10
    assert "widths under 64 are not supported yet (got 8)" in str(failed.value)
    client = MlflowClient(cfg.tracking.uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == cfg.name]
    (trial,) = client.search_runs([experiment.experiment_id], "tags.`relay.stage` = 'trial'")
    assert trial.data.tags["relay.trial_status"] == "failed"
    assert "ValueError: widths under 64" in trial.data.tags["relay.trial_error"]
    traceback = Path(client.download_artifacts(trial.info.run_id, "error.txt")).read_text()
    assert "<relay model.module raising>" in traceback and "in build" in traceback


def test_families_are_searched_side_by_side_and_judged_against_another_familys_champion(
    ray_cluster, make_config, tmp_path
):
    """tune.families: one search per family under one tune run, the best across them wins;
    the champion it must beat is a version of another family, scored on this run's test rows."""
    first = task_config(
        make_config,
        tmp_path,
        "regression",
        model={"family": "gbdt"},
        tune={"num_samples": 1, "search_space": None},
    )
    champion = runner.run(first, until="register")
    assert champion["model_version"] == 1
    both = first.model_copy(
        update={"tune": first.tune.model_copy(update={"families": ["linear", "gbdt"]})}
    )
    try:
        summary = runner.run(both, until="register")
    except GateFailedError as exc:  # the champion may win: the gate decided it, as it should
        summary = exc.summary
    client = MlflowClient(summary["tracking_uri"])
    trials = client.search_runs([summary["experiment_id"]], "tags.`relay.stage` = 'trial'")
    tune_run = client.get_run(
        client.get_run(summary["best_trial_run_id"]).data.tags["mlflow.parentRunId"]
    )
    mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == tune_run.info.run_id]
    assert sorted(t.data.tags["relay.family"] for t in mine) == ["gbdt", "linear"]
    per_family = {f: tune_run.data.metrics[f"best_val_loss_{f}"] for f in ("linear", "gbdt")}
    winner = min(per_family, key=per_family.get)
    assert tune_run.data.tags["relay.best_family"] == winner == summary["model_family"]
    assert json.loads(tune_run.data.params["families"]) == ["linear", "gbdt"]
    version = client.get_model_version(both.model.name, "2")
    assert f"- Family: {winner} (" in version.description
    beat = next(r for r in summary["gates"]["results"] if r["gate"] == "model.beat_champion")
    assert beat["value"] is not None  # the gbdt champion was scored on this run's test split


@pytest.mark.parametrize("family", ["gbdt", "torch"])
def test_a_run_of_each_family_reproduces(ray_cluster, make_config, family):
    from jobs.pipeline.reproduce import reproduce

    model = {"family": family} | ({"module": "widenet:build"} if family == "torch" else {})
    cfg = make_config(
        model=model, tune={"num_samples": 1, "scheduler": "fifo", "search_space": None}
    )
    cfg._folder = USERMODELS
    first = runner.run(cfg, until="evaluate")
    result = reproduce(first["pipeline_run_id"], first["tracking_uri"], allow_code_change=True)
    assert result["reproduced"] and result["differences"] == []
    assert result["dataset_digest"] == first["dataset_digest"]
