"""The production loop on a real endpoint: requests in, inference log rows out, `relay monitor`
judging them against the served version's training data.

One pipeline run serves for the module (real Ray, MLflow store, Serve HTTP on 127.0.0.1); its
replicas flush the log every 0.3 s. Each test reads only the rows of its own window (`since`
from its own start), so no test depends on another's traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.configfile import parse_config
from jobs.artifacts import Dataset
from jobs.cli.app import app
from jobs.monitor.window import read
from jobs.pipeline import runner
from serving.launch import inference_log_path
from serving.values import request_record
from tests.cli_output import json_output
from tests.conftest import ci_raw, free_port, merge, write_csv

FLUSH_SECONDS = 0.3


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    from ray import serve

    state = tmp_path_factory.mktemp("monitor")
    raw = merge(
        ci_raw(),
        {
            "runtime": {"state_dir": str(state)},
            "serve": {"port": free_port(), "log": {"flush_seconds": FLUSH_SECONDS}},
            "tracking": {"uri": f"sqlite:///{state / 'mlflow.db'}"},
            "tune": {"num_samples": 1},
            "train": {"epochs": 2},
        },
    )
    cfg = parse_config(raw)
    summary = runner.run(cfg, keep_serving=True)
    config_file = state / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    dataset = Dataset.open(Path(summary["dataset_path"]))
    test = pq.read_table(dataset.path / "test").to_pylist()
    schema = dataset.meta["input_schema"]
    token = Path(summary["token_file"]).read_text().strip()
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        yield {
            "cfg": cfg,
            "config_file": config_file,
            "summary": summary,
            "http": http,
            "records": [
                request_record(schema, {c["name"]: row[c["name"]] for c in schema}) for row in test
            ],
            "labels": [row[cfg.data.label.name] for row in test],
            "log": inference_log_path(cfg),
        }
    serve.shutdown()


def fresh_window() -> datetime:
    """A window start over 2 s after every earlier test's rows."""
    time.sleep(2.5)
    return datetime.now(UTC)


def seconds_since(start: datetime) -> str:
    """`--since` for a window that starts at most 1 s before `start`: after earlier rows."""
    return f"{math.ceil((datetime.now(UTC) - start).total_seconds())}s"


def send(served: dict[str, Any], records: list[dict[str, Any]], batch: int = 0) -> list[dict]:
    """POST the records (one by one, or `batch` at a time); the answers, in order."""
    endpoint, http = served["summary"]["endpoint"], served["http"]
    answers: list[dict] = []
    if not batch:
        for record in records:
            response = http.post(endpoint, json=record)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        return answers
    for start in range(0, len(records), batch):
        response = http.post(f"{endpoint}/batch", json={"records": records[start : start + batch]})
        assert response.status_code == 200, response.text
        body = response.json()
        answers += [{**p, "request_id": body["request_id"]} for p in body["predictions"]]
    return answers


def logged(served: dict[str, Any], start: datetime, rows: int, timeout: float = 30) -> Any:
    """The window since `start` once it holds `rows` rows (the replica flushes on a timer)."""
    name = served["cfg"].model.name
    deadline = time.monotonic() + timeout
    while True:
        window = read(served["log"], name, start)
        if window.logged >= rows or time.monotonic() > deadline:
            return window
        time.sleep(FLUSH_SECONDS)


def monitor(served: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["monitor", str(served["config_file"]), "--json", *args])
    return result.exit_code, json_output(result, last_line=True)


def test_every_answered_record_is_logged_with_its_inputs_and_answer(served):
    start = fresh_window()
    records = served["records"][:40]
    singles = send(served, records[:10])
    batched = send(served, records[10:], batch=15)
    window = logged(served, start, len(records))
    (version,) = window.versions
    rows = window.versions[version].to_pylist()
    assert len(rows) == len(records) and window.dropped == 0
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["request_id"], []).append(row)
    # a single request is one row; a batch request's rows share its id, in request order
    assert [len(by_id[a["request_id"]]) for a in singles] == [1] * 10
    assert sorted(len(v) for v in by_id.values())[-2:] == [15, 15]
    answered = singles + batched
    logged_rows = [r for a in singles for r in by_id[a["request_id"]]] + [
        r for rid in dict.fromkeys(a["request_id"] for a in batched) for r in by_id[rid]
    ]
    for record, answer, row in zip(records, answered, logged_rows, strict=True):
        assert row["inputs"] == record  # what was sent, as sent
        assert row["prediction"] == answer["prediction"]
        for label, p in answer["probabilities"].items():
            assert row[f"probability_{label}"] == pytest.approx(p, abs=1e-12)
        assert row["model_version"] == version and row["role"] == "champion"
        assert row["latency_ms"] > 0
    assert {r["route"] for r in logged_rows[:10]} == {"predict"}
    assert {r["route"] for r in logged_rows[10:]} == {"batch"}


def test_clean_held_out_traffic_passes(served):
    start = fresh_window()
    records = served["records"]
    send(served, records, batch=100)
    logged(served, start, len(records))
    code, report = monitor(served, "--since", seconds_since(start))
    assert code == 0, report["alerts"]
    (version,) = report["versions"]
    assert version["predictions"] == len(records) and version["judged"]
    drift = {name: f["drift"] for name, f in version["features"].items() if f["drift"] is not None}
    assert drift and max(drift.values()) < 0.2  # held-out rows look like the training split
    assert report["predictions_logged"] == len(records) and report["alerts"] == []


def test_drift_planted_in_one_feature_of_half_the_traffic_alerts_on_that_feature(served):
    """Half the requests are real held-out rows, the other half the same rows with income
    four times higher: income drifts, nothing else does, the exit code is 9, and --retrain
    runs the pipeline, recording why."""
    start = fresh_window()
    records = served["records"]
    planted = [{**r, "income": None if r["income"] is None else r["income"] * 4} for r in records]
    send(served, records + planted, batch=100)
    logged(served, start, 2 * len(records))
    code, report = monitor(served, "--since", seconds_since(start), "--retrain")
    assert code == 9
    (version,) = report["versions"]
    over = {
        name
        for name, f in version["features"].items()
        if f["drift"] is not None and f["drift"] > 0.2
    }
    assert over == {"income"}
    gates = {a["gate"] for a in report["alerts"]}
    assert "features.drift" in gates
    (feature_alert,) = [a for a in report["alerts"] if a["gate"] == "features.drift"]
    assert "income" in feature_alert["reason"]
    # the decision is an MLflow run the version points at, with its report and plots
    client = MlflowClient(served["summary"]["tracking_uri"])
    run = client.get_run(report["run_id"])
    assert run.data.tags["relay.monitor_passed"] == "false"
    assert run.data.metrics[f"v{version['version']}.income.drift"] > 0.2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"monitor_report.txt", "monitor_report.json", "plots"} <= artifacts
    plotted = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert f"plots/v{version['version']}_inputs.png" in plotted
    name = served["cfg"].model.name
    tagged = client.get_model_version(name, str(version["version"])).tags
    assert tagged["relay.last_monitor_run"] == run.info.run_id
    # --retrain: a pipeline run up to register, which names the monitor run behind it
    retrained = report["retrained"]
    pipeline = client.get_run(retrained["pipeline_run_id"])
    assert pipeline.data.tags["relay.triggered_by_monitor_run"] == run.info.run_id
    assert retrained["model_version"] == version["version"] + 1


def test_an_unwritable_log_drops_and_counts_and_the_endpoint_keeps_answering(served):
    """Mid-load the model's log folder becomes a file (root ignores permission bits, so a
    read-only folder would not stop this test's writes): every request is still answered, and
    every answered record is either in the log or counted as dropped."""
    start = fresh_window()
    records = served["records"][:300]
    folder = Path(served["log"]) / served["cfg"].model.name
    aside = folder.with_name(folder.name + ".aside")
    send(served, records[:100], batch=20)
    logged(served, start, 100)
    folder.rename(aside)
    folder.write_text("not a folder")
    try:
        send(served, records[100:200], batch=20)  # every one answered (asserted in send)
        time.sleep(3 * FLUSH_SECONDS)  # the writer tries, fails and counts
    finally:
        folder.unlink()
        aside.rename(folder)
    send(served, records[200:], batch=20)
    window = logged(served, start, 200)
    assert window.logged + window.dropped == len(records)
    assert window.dropped > 0
    code, report = monitor(served, "--since", seconds_since(start))
    assert code == 9 and report["dropped"] == window.dropped
    assert any(a["gate"] == "log.drop_rate" for a in report["alerts"])


def test_a_version_that_has_too_few_predictions_is_reported_not_judged(served, tmp_path):
    start = fresh_window()
    send(served, served["records"][:5])
    logged(served, start, 5)
    code, report = monitor(served, "--since", seconds_since(start))
    (version,) = report["versions"]
    assert code == 0 and not version["judged"] and version["predictions"] == 5


def feed(served: dict[str, Any], rows: list[dict[str, Any]], folder: Path) -> tuple[int, dict]:
    path = folder / "outcomes.csv"
    write_csv(path, rows)
    args = ["feedback", str(served["config_file"]), "--input", str(path), "--json"]
    result = CliRunner().invoke(app, args)
    return result.exit_code, (json_output(result) if result.exit_code == 0 else {})


def test_outcomes_fed_back_by_request_id_give_the_evaluations_test_metrics(served, tmp_path):
    """The whole test split sent (in batches: a record is its request id and place), its
    true labels fed back: the live metrics are the evaluation's, value for value. Outcomes
    for no logged prediction, or with a label the column does not allow, are quarantined."""
    start = fresh_window()
    records, batch = served["records"], 100
    answers = send(served, records, batch=batch)
    logged(served, start, len(records))
    label = served["cfg"].data.label.name
    rows = [
        {"request_id": a["request_id"], "record": i % batch, label: truth}
        for i, (a, truth) in enumerate(zip(answers, served["labels"], strict=True))
    ]
    strays = [
        {"request_id": "never-answered", "record": 0, label: "1"},
        {"request_id": answers[0]["request_id"], "record": 999, label: "0"},
        {"request_id": answers[1]["request_id"], "record": 1, label: "maybe"},
    ]
    code, fed = feed(served, rows + strays, tmp_path)
    assert code == 0 and fed["accepted"] == len(rows) and fed["quarantined"] == 3
    assert sum(n for why, n in fed["reasons"].items() if "no logged prediction" in why) == 2
    assert any("'maybe'" in why for why in fed["reasons"])
    code, report = monitor(served, "--since", seconds_since(start))
    (version,) = report["versions"]
    assert version["labelled"] == len(records)
    offline = served["summary"]["test_metrics"]
    for name in ("roc_auc", "accuracy", "log_loss"):
        assert version["live"][name] == pytest.approx(offline[f"test_{name}"], abs=1e-6)
    assert any(r["gate"] == "live.test_roc_auc" and r["passed"] for r in version["results"])


def test_feedback_that_matches_nothing_is_quarantined_and_fails(served, tmp_path):
    label = served["cfg"].data.label.name
    rows = [{"request_id": f"nobody-{i}", "record": 0, label: "1"} for i in range(5)]
    code, _ = feed(served, rows, tmp_path)
    assert code == 3  # a data-quality failure, after keeping what it was given
    folder = Path(served["log"]) / served["cfg"].model.name / "_feedback"
    kept = [r for f in folder.glob("quarantine-*.parquet") for r in pq.read_table(f).to_pylist()]
    ours = {r["request_id"]: r["reason"] for r in kept if r["request_id"].startswith("nobody-")}
    assert sorted(ours) == sorted(r["request_id"] for r in rows)
    assert set(ours.values()) == {"no logged prediction has this request_id and record"}


def test_a_bad_window_is_a_config_error_naming_the_option(served):
    result = CliRunner().invoke(app, ["monitor", str(served["config_file"]), "--since", "soon"])
    assert result.exit_code == 2 and "--since" in result.output
