"""The production loop on a real endpoint: requests in, inference log rows out, `relay monitor`
judging them against the served version's training data.

One pipeline run serves for the module (real Ray, MLflow store, Serve HTTP on 127.0.0.1); its
replicas flush the log every 0.3 s. Each test reads only the rows of its own window (`since`
from its own start), so no test depends on another's traffic.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
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
from cluster.tracking.registry import aliased
from cluster.tracking.tracker import PARENT_TAG, STAGE_TAG
from jobs.artifacts import Dataset
from jobs.cli.app import app
from jobs.monitor.window import read
from jobs.pipeline import runner
from serving.launch import inference_log_path
from serving.values import request_record
from tests.cli_output import json_output
from tests.conftest import ci_raw, free_port, merge, ours_titled, write_csv

FLUSH_SECONDS = 0.3
REPLICA = b"ray::ServeReplica"


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
            "raw": raw,
            "cfg": cfg,
            "config_file": config_file,
            "summary": summary,
            "http": http,
            "records": [
                request_record(schema, {c["name"]: row[c["name"]] for c in schema}) for row in test
            ],
            "labels": [row[cfg.data.label.name] for row in test],
            "genders": [row["gender"] for row in test],  # sensitive: never in a request
            "ids": [row["customer_id"] for row in test],  # the declared id
            "log": inference_log_path(cfg),
        }
    serve.shutdown()


def fresh_window() -> datetime:
    """A window start after every earlier test's rows (each was answered, so timed, before)."""
    return datetime.now(UTC)


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
    code, report = monitor(served, "--since", start.isoformat())
    assert code == 0, report["alerts"]
    (version,) = report["versions"]
    assert version["predictions"] == len(records) and version["judged"]
    drift = {name: f["drift"] for name, f in version["features"].items() if f["drift"] is not None}
    assert drift and max(drift.values()) < 0.2  # held-out rows look like the training split
    assert report["predictions_logged"] == len(records) and report["alerts"] == []
    from jobs.client import Relay  # a notebook reads the same report without parsing CLI output

    (latest,) = Relay(config=served["config_file"]).monitor_reports(served["cfg"].model.name, 1)
    assert latest["run_id"] == report["run_id"]
    assert latest["versions"][0]["predictions"] == len(records) and latest["alerts"] == []


def test_drift_planted_in_one_feature_of_half_the_traffic_alerts_on_that_feature(served):
    """Half the requests are real held-out rows, the other half the same rows with income
    four times higher: income drifts, nothing else does, the exit code is 9, and --retrain
    runs the pipeline, recording why."""
    start = fresh_window()
    records = served["records"]
    planted = [{**r, "income": None if r["income"] is None else r["income"] * 4} for r in records]
    send(served, records + planted, batch=100)
    logged(served, start, 2 * len(records))
    code, report = monitor(served, "--since", start.isoformat(), "--retrain")
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
    code, report = monitor(served, "--since", start.isoformat())
    assert code == 9 and report["dropped"] == window.dropped
    assert any(a["gate"] == "log.drop_rate" for a in report["alerts"])


def test_refused_requests_are_counted_by_status_and_alert_over_the_limit(served):
    """Records that break the schema (422) and requests without the token (401) are
    answered with an error, counted in the log by status, and judged as a share of requests."""
    start = fresh_window()
    endpoint, http = served["summary"]["endpoint"], served["http"]
    send(served, served["records"][:30])
    bad = {**served["records"][0], "income": "a lot"}
    assert [http.post(endpoint, json=bad).status_code for _ in range(6)] == [422] * 6
    batch = {"records": [bad, served["records"][1]]}
    assert http.post(f"{endpoint}/batch", json=batch).status_code == 422
    anonymous = [httpx.post(endpoint, json=served["records"][0]).status_code for _ in range(3)]
    assert anonymous == [401] * 3
    logged(served, start, 30)
    time.sleep(3 * FLUSH_SECONDS)  # the counts ride on the next file (or one of their own)
    args = ("--since", start.isoformat(), "--set", "monitor.max_refusal_rate=0.1")
    code, report = monitor(served, *args)
    assert report["refused"] == {"422": 7, "401": 3} and report["requests_answered"] == 30
    assert report["refusal_rate"] == pytest.approx(10 / 40)
    assert code == 9 and any(a["gate"] == "requests.refusal_rate" for a in report["alerts"])
    code, report = monitor(served, "--since", start.isoformat())
    assert code == 0 and report["refusal_check"] is None  # off by default: reported only


def test_a_version_that_has_too_few_predictions_is_reported_not_judged(served, tmp_path):
    start = fresh_window()
    send(served, served["records"][:5])
    logged(served, start, 5)
    code, report = monitor(served, "--since", start.isoformat())
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
    true labels and its sensitive column fed back: the live metrics and the metrics per
    group are the evaluation's, value for value, and the fairness gates run on them. Outcomes
    for no logged prediction, or with a label or group the column does not allow, are
    quarantined."""
    start = fresh_window()
    records, batch = served["records"], 100
    answers = send(served, records, batch=batch)
    logged(served, start, len(records))
    label = served["cfg"].data.label.name
    truths = zip(answers, served["labels"], served["genders"], strict=True)
    rows = [
        {"request_id": a["request_id"], "record": i % batch, label: truth, "gender": gender}
        for i, (a, truth, gender) in enumerate(truths)
    ]
    strays = [
        {"request_id": "never-answered", "record": 0, label: "1", "gender": "female"},
        {"request_id": answers[0]["request_id"], "record": 999, label: "0", "gender": None},
        {"request_id": answers[1]["request_id"], "record": 1, label: "maybe", "gender": None},
        {"request_id": answers[2]["request_id"], "record": 2, label: "1", "gender": "robot"},
    ]
    code, fed = feed(served, rows[3:] + strays, tmp_path)
    assert code == 0 and fed["accepted"] == len(rows) - 3 and fed["quarantined"] == 4
    assert sum(n for why, n in fed["reasons"].items() if "no logged prediction" in why) == 2
    assert any("'maybe'" in why for why in fed["reasons"])
    assert any("gender 'robot'" in why for why in fed["reasons"])
    code, fed = feed(served, rows[:3], tmp_path)  # a second file: both are joined
    assert code == 0 and fed["accepted"] == 3
    code, report = monitor(served, "--since", start.isoformat())
    (version,) = report["versions"]
    assert version["labelled"] == len(records)
    offline = served["summary"]["test_metrics"]
    for name in ("roc_auc", "accuracy", "log_loss"):
        assert version["live"][name] == pytest.approx(offline[f"test_{name}"], abs=1e-6)
    assert any(r["gate"] == "live.test_roc_auc" and r["passed"] for r in version["results"])
    client = MlflowClient(served["summary"]["tracking_uri"])
    (evaluated,) = client.search_runs(
        [client.get_experiment_by_name(served["cfg"].tracking.experiment).experiment_id],
        filter_string=f"tags.`{STAGE_TAG}` = 'evaluate' and "
        f"tags.`{PARENT_TAG}` = '{served['summary']['pipeline_run_id']}'",
    )
    table = json.loads(
        Path(client.download_artifacts(evaluated.info.run_id, "groups.json")).read_text()
    )
    recorded = {
        (row["column"], row["group"]): row
        for row in (dict(zip(table["columns"], r, strict=True)) for r in table["data"])
    }
    groups = version["groups"]["gender"]  # an empty value is not a group given
    assert set(groups) == {g for g in served["genders"] if g is not None}
    for group, values in groups.items():
        for key in ("n", "tpr", "positive_rate"):
            expected = recorded[("gender", group)][key]
            assert values[key] == pytest.approx(expected, abs=1e-9), (group, key)
    fairness = {r["gate"] for r in version["results"]}
    assert {"live.fairness.gender.tpr_gap", "live.fairness.gender.parity_difference"} <= fairness


def test_outcomes_fed_back_by_the_declared_id_join_its_latest_prediction(served, tmp_path):
    """Requests that send their customer_id (not a model input): outcomes keyed by it alone
    join the id's latest prediction; an id no request sent is quarantined."""
    start = fresh_window()
    ids, truths = served["ids"][:120], served["labels"][:120]
    records = [{**r, "customer_id": i} for r, i in zip(served["records"], ids, strict=False)]
    first = send(served, records[:10])  # these ids are sent again below: the later one counts
    answers = send(served, records)
    window = logged(served, start, 130)
    (table,) = window.versions.values()
    assert set(table["id"].to_pylist()) == set(ids)  # kept beside the inputs, not in them
    assert "customer_id" not in table.schema.field("inputs").type.names
    label = served["cfg"].data.label.name
    rows = [{"customer_id": i, label: t} for i, t in zip(ids, truths, strict=True)]
    code, fed = feed(served, [*rows, {"customer_id": "C9999999999", label: "1"}], tmp_path)
    assert code == 0 and fed["accepted"] == 120 and fed["quarantined"] == 1
    assert fed["reasons"] == {"no logged prediction has this customer_id": 1}
    kept = pq.read_table(fed["files"]["feedback"]).to_pylist()
    joined = {r["request_id"] for r in kept}
    assert joined == {a["request_id"] for a in answers}  # not the first sends' ids
    assert not joined & {a["request_id"] for a in first}
    code, report = monitor(served, "--since", start.isoformat())
    (version,) = report["versions"]
    assert version["labelled"] == 120


def test_feedback_that_matches_nothing_is_quarantined_and_fails(served, tmp_path):
    label = served["cfg"].data.label.name
    rows = [{"request_id": f"nobody-{i}", "record": 0, label: "1"} for i in range(5)]
    code, _ = feed(served, rows, tmp_path)
    assert code == 3  # a data-quality failure, after keeping what it was given
    folder = Path(served["log"]) / served["cfg"].model.name / "_feedback"
    kept = [r for f in folder.glob("quarantine-*.parquet") for r in pq.read_table(f).to_pylist()]
    mine = [r for r in kept if (r["request_id"] or "").startswith("nobody-")]
    ours = {r["request_id"]: r["reason"] for r in mine}
    assert sorted(ours) == sorted(r["request_id"] for r in rows)
    assert set(ours.values()) == {"no logged prediction has this request_id and record"}


def test_a_bad_window_is_a_config_error_naming_the_option(served):
    result = CliRunner().invoke(app, ["monitor", str(served["config_file"]), "--since", "soon"])
    assert result.exit_code == 2 and "--since" in result.output


def planted_outcomes(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Outcomes that follow these answers' ranking: "1" above their median probability of
    default, "0" below, so the version that gave them ranks perfectly (live AUC 1)."""
    cut = statistics.median(r["probability_1"] for r in rows)
    return [
        {
            "request_id": r["request_id"],
            "record": r["record"],
            label: str(int(r["probability_1"] > cut)),
        }
        for r in rows
    ]


def test_a_shadow_challenger_is_rolled_back_or_promoted_on_live_evidence(served, tmp_path):
    """Another version shadows the served one: clients get the champion's answers only, the log
    keeps both answers of every request. Outcomes that follow the champion's ranking make the
    challenger worse live: `relay rollout auto` rolls it back. Outcomes that follow the
    challenger's make it better: `relay monitor` with serve.rollout.auto promotes it."""
    from jobs.deploy import rollout
    from jobs.deploy.probe import wait_for_version
    from serving.launch import serve_app

    cfg, summary = served["cfg"], served["summary"]
    name, label, champion = cfg.model.name, cfg.data.label.name, summary["model_version"]
    client = MlflowClient(summary["tracking_uri"])
    # a version that ranks otherwise: another seed, one epoch, registered whatever it scores
    other = merge(served["raw"], {"seed": 7, "train": {"epochs": 1}})
    other["gates"]["model"] = {"beat_champion": None}
    challenger = runner.run(parse_config(other), until="register")["model_version"]
    client.set_registered_model_alias(name, cfg.serve.alias, str(champion))
    shadow_raw = merge(
        served["raw"], {"serve": {"challenger_mode": "shadow", "challenger_share": 1.0}}
    )
    shadow = parse_config(shadow_raw)
    shadow_file = tmp_path / "shadow.yaml"
    shadow_file.write_text(yaml.safe_dump(shadow_raw))
    records = served["records"][:300]  # drift scores on fewer rows are mostly noise
    try:
        for follows in ("champion", "challenger"):
            rollout.start(shadow, version=challenger)
            start = fresh_window()
            answers = send(served, records)
            assert {a["model_version"] for a in answers} == {champion}  # only it answers
            window = logged(served, start, 2 * len(records))
            rows = {v: t.to_pylist() for v, t in window.versions.items()}
            assert {r["role"] for r in rows[champion]} == {"champion"}
            assert {r["role"] for r in rows[challenger]} == {"shadow"}
            ids = sorted(a["request_id"] for a in answers)
            assert sorted(r["request_id"] for r in rows[challenger]) == ids
            theirs = {r["request_id"]: r["prediction"] for r in rows[challenger]}
            differ = sum(r["prediction"] != theirs[r["request_id"]] for r in rows[champion])
            source = rows[champion] if follows == "champion" else rows[challenger]
            code, fed = feed(served, planted_outcomes(source, label), tmp_path)
            assert code == 0 and fed["accepted"] == len(records)
            since = start.isoformat()
            if follows == "champion":
                result = CliRunner().invoke(
                    app, ["rollout", "auto", str(shadow_file), "--since", since, "--json"]
                )
                assert result.exit_code == 0, result.output
                report = json_output(result, last_line=True)
            else:
                code, report = monitor(
                    served, "--since", since, "--set", "serve.rollout.auto=true",
                    "--set", "serve.challenger_mode=shadow",
                )  # fmt: skip
                assert code in (0, 9)  # the champion may fail a check on outcomes it misranks
            found = report["rollout"]
            assert (found["mode"], found["paired"]) == ("shadow", len(records))
            assert found["disagreement"] == pytest.approx(differ / len(records))
            assert found["labelled"] == {"champion": len(records), "challenger": len(records)}
            decided = report["rollout_decision"]
            if follows == "champion":
                assert found["live"]["champion"] == pytest.approx(1.0)
                assert decided["decision"] == "rollback", decided
                assert decided["action"]["challenger_version"] is None
            else:
                assert found["live"]["challenger"] == pytest.approx(1.0)
                assert decided["decision"] == "promote", decided
                assert decided["action"]["model_version"] == challenger
            # the decision is a rollout run on the monitor run it read; the version names it
            run = client.get_run(decided["run_id"])
            assert run.data.tags["relay.rollout_decision"] == decided["decision"]
            monitor_run = report.get("monitor_run_id", report.get("run_id"))
            assert run.data.tags["relay.monitor_run"] == monitor_run
            acted = client.get_run(decided["action"]["rollout_run_id"]).data.tags
            assert acted["relay.decided_by_run"] == decided["run_id"]
            tag = client.get_model_version(name, str(challenger)).tags["relay.rollout_decision"]
            assert tag == f"{decided['decision']} {decided['run_id']}"
    finally:  # the module's endpoint as it was: the served version alone, split mode
        if aliased(client, name, cfg.serve.challenger_alias):
            client.delete_registered_model_alias(name, cfg.serve.challenger_alias)
        client.set_registered_model_alias(name, cfg.serve.alias, str(champion))
        endpoint, _ = serve_app(cfg, summary["tracking_uri"])
        wait_for_version(endpoint, champion)


def test_a_replica_killed_outright_loses_only_what_it_had_not_written_and_counts_it(served):
    """A replica that writes once an hour, SIGKILLed after answering: none of its rows reached
    the log, and `relay monitor` counts every answered record as lost (exit 9), not silently;
    the replica Serve starts in its place is alive, so its records are not counted lost."""
    from jobs.deploy.probe import wait_for_version
    from serving.launch import serve_app

    cfg, summary = served["cfg"], served["summary"]
    hourly = parse_config(merge(served["raw"], {"serve": {"log": {"flush_seconds": 3600}}}))
    endpoint, _ = serve_app(hourly, summary["tracking_uri"])
    try:
        deadline = time.monotonic() + 60
        while len(ours_titled(REPLICA)) != 1:  # the replaced replica has stopped
            assert time.monotonic() < deadline, "the hourly replica never ran alone"
            time.sleep(0.2)
        start = fresh_window()
        send(served, served["records"][:40])
        send(served, served["records"][40:60], batch=10)
        (replica,) = ours_titled(REPLICA)
        os.kill(replica, signal.SIGKILL)
        while Path(f"/proc/{replica}").exists():
            time.sleep(0.05)
        wait_for_version(endpoint, summary["model_version"], timeout=60)  # a new replica
        send(served, served["records"][60:70])  # answered by a live writer: pending, not lost
        window = read(served["log"], cfg.model.name, start)
        assert (window.logged, window.dropped, window.lost) == (0, 0, 60)
        code, report = monitor(served, "--since", start.isoformat())
        assert code == 9 and report["lost"] == 60
        (alert,) = [a for a in report["alerts"] if a["gate"] == "log.drop_rate"]
        assert "60 by replicas killed" in alert["reason"]
    finally:
        endpoint, _ = serve_app(cfg, summary["tracking_uri"])
        wait_for_version(endpoint, summary["model_version"])
