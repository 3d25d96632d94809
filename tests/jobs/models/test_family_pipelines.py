"""Each model family end to end on the CI data: trained, evaluated, promoted, served, and the
endpoint answering what the registered model answers offline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from cluster.tracking.registry import load_verified, resolve
from jobs.pipeline import runner
from serving.model import Predictor
from tests.tasks import task_config


@pytest.mark.parametrize(
    ("family", "task"),
    [
        ("linear", "binary"),
        ("linear", "regression"),
        ("gbdt", "binary"),
        ("gbdt", "multiclass"),
        ("gbdt", "regression"),
    ],
)
def test_a_family_is_promoted_and_serves_what_it_was_evaluated_as(
    ray_cluster, make_config, tmp_path, family, task
):
    from ray import serve

    cfg = task_config(
        make_config,
        tmp_path,
        task,
        model={"family": family},
        tune={"num_samples": 1, "search_space": None},  # the family's own default space
    )
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
    for answer, expected in zip(served.json()["predictions"], offline, strict=True):
        if task == "regression":
            assert answer["prediction"] == pytest.approx(expected["prediction"], rel=1e-6)
        else:
            assert answer["prediction"] == expected["prediction"]
            assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)

    assert summary["model_version"] == 1 and ref.version == 1  # promoted
    assert spec["family"] == family
    if family == "linear":  # one affine map, no hidden layer
        assert spec["files"] == ["model.safetensors"] and spec["architecture"]["depth"] == 0
        assert set(spec["hyperparameters"]) == {"lr", "weight_decay", "batch_size"}
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
