"""Promotion gates end to end, with planted problems: real Ray, a real sqlite MLflow store.

A clean run becomes the served champion; a weaker config and drifted data are then turned
down against it while the endpoint keeps answering with the champion. Undeclared emails in a
feature and a label that depends on the sensitive attribute are turned down on first models.
Each run goes through `relay run`'s own code path (`run_command`) for its exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from cluster.config import RelayConfig
from cluster.configfile import parse_config
from cluster.tracking.registry import REJECTED, aliased
from jobs import progress
from jobs.etl import synthetic
from jobs.pipeline.command import run_command
from tests.conftest import ci_raw, free_port, load_table, merge, write_csv

FAST = {"tune": {"num_samples": 1}, "train": {"epochs": 2}}


def relay_run(cfg: RelayConfig, folder: Path, **options: Any) -> tuple[int, dict[str, Any]]:
    """`relay run CONFIG --json [options]`: the exit code, the summary, and all it printed."""
    path = folder / f"{cfg.name}-{cfg.digest()[:8]}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_command(path, as_json=True, **options)
    lines = printed.getvalue().strip().splitlines()
    return code, {**json.loads(lines[-1]), "stdout": printed.getvalue()}


def planted_csv(
    path: Path, change: Callable[[dict[str, np.ndarray], np.random.Generator], None]
) -> dict[str, Any]:
    """The synthetic generator's raw rows (ci.yaml's size), edited by `change`, as a CSV source."""
    table, _ = synthetic.make_rows(0, 6000, seed=7, bad_row_rate=0.0)
    columns = {n: np.array(table.column(n).to_pylist(), dtype=object) for n in table.column_names}
    change(columns, np.random.default_rng(7))
    write_csv(
        path, [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    )
    return {"kind": "files", "path": str(path)}


def gate_tags(client: Any, name: str, version: int) -> dict[str, str]:
    """A version's `relay.gate.<gate>` tags by gate name, and its `relay.promoted`."""
    tags = client.get_model_version(name, str(version)).tags
    found = {k.removeprefix("relay.gate."): v for k, v in tags.items() if "relay.gate." in k}
    return {**found, "promoted": tags["relay.promoted"]}


@pytest.fixture(scope="module")
def champion(ray_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A clean run through deploy: promoted, and left serving on the session's Ray."""
    from mlflow.tracking import MlflowClient
    from ray import serve

    state = tmp_path_factory.mktemp("promotion")
    raw = merge(
        merge(ci_raw(), FAST),
        {
            "runtime": {"state_dir": str(state)},
            "serve": {"port": free_port()},
            "tracking": {"uri": f"sqlite:///{state / 'mlflow.db'}"},
        },
    )
    cfg = parse_config(raw)
    code, summary = relay_run(cfg, state, keep_serving=True)
    uri = summary["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    yield {"cfg": cfg, "raw": raw, "code": code, "summary": summary, "client": client}
    serve.shutdown()


def served(champion: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The endpoint's health version, and its answer to a held-out record."""
    from serving.client import Client
    from serving.launch import client_token

    s = champion["summary"]
    client = Client(s["endpoint"].removesuffix("/predict"), client_token(champion["cfg"]))
    return client.health()["model_version"], client.predict(s["prediction"]["request"])


def test_a_clean_run_is_promoted_and_served(champion):
    code, s, client = champion["code"], champion["summary"], champion["client"]
    assert code == 0
    assert s["promoted"] is True and s["model_alias"] == "champion" and s["model_version"] == 1
    assert all(r["passed"] for r in s["gates"]["results"])
    name = s["model_name"]
    assert aliased(client, name, "champion").version == 1
    assert aliased(client, name, REJECTED) is None
    tags = gate_tags(client, name, 1)
    assert tags["promoted"] == "true"
    assert tags["model.beat_champion"] == "passed: first model: no champion to beat"
    assert tags["pii.undeclared"] == "passed: no undeclared PII found"
    version, answer = served(champion)
    assert version == 1 and answer["model_version"] == 1
    register = client.get_run(client.get_model_version(name, "1").tags["relay.register_run_id"])
    assert register.data.tags["relay.gate.model.beat_champion"].startswith("passed")
    assert "gate_model.min.test_roc_auc_value" in register.data.metrics
    artifacts = {a.path for a in client.list_artifacts(register.info.run_id)}
    assert {"gates.json", "gates.md", "model_card.md"} <= artifacts
    card = client.get_model_version(name, "1").description
    assert card.startswith(f"# Model card: {name} version 1\n") and "## Limitations" in card
    evaluate = client.get_model_version(name, "1").tags["relay.evaluate_run_id"]
    plots = {a.path for a in client.list_artifacts(evaluate, "plots")}
    assert plots == {"plots/roc.png", "plots/calibration.png", "plots/confusion_matrix.png"}
    evaluate_run = client.get_run(evaluate).data
    assert not [m for m in evaluate_run.metrics if m.startswith("group.")]  # a table, not charts
    assert json.loads(evaluate_run.tags["mlflow.loggedArtifacts"]) == [
        {"path": "groups.json", "type": "table"}
    ]
    groups = load_table(client, client.get_run(evaluate), "groups.json")  # MLflow reads it
    female = groups[(groups["column"] == "gender") & (groups["group"] == "female")]
    assert len(female) == 1 and 0 <= float(female["tpr"].iloc[0]) <= 1
    assert female["n"].iloc[0] > 0
    assert evaluate_run.tags["relay.promoted"] == "true"
    assert evaluate_run.tags["relay.gate.data.drift.psi"].startswith("passed: no champion")


def test_a_weaker_config_is_rejected_and_the_champion_keeps_answering(champion, tmp_path):
    """Tiny learning rate, one epoch: worse than the champion on the same test rows."""
    weak = merge(
        champion["raw"],
        {
            "train": {"epochs": 1},
            "tune": {"search_space": {"lr": {"type": "loguniform", "low": 1e-6, "high": 2e-6}}},
        },
    )
    cfg = parse_config(weak)
    code, s = relay_run(cfg, tmp_path, keep_serving=True, ci=True)
    assert code == 4
    assert s["promoted"] is False and s["model_alias"] == REJECTED and "endpoint" not in s
    name, client, version = s["model_name"], champion["client"], s["model_version"]
    failed = {r["gate"]: r for r in s["gates"]["results"] if not r["passed"]}
    assert "model.beat_champion" in failed
    beat = failed["model.beat_champion"]
    assert beat["value"] < 0 and beat["detail"]["champion"] > beat["detail"]["new"]
    assert aliased(client, name, "champion").version == 1
    assert aliased(client, name, REJECTED).version == version
    tags = gate_tags(client, name, version)
    assert tags["promoted"] == "false"
    assert tags["model.beat_champion"].startswith("failed: test_roc_auc ")
    assert tags["data.drift.psi"].startswith("passed")  # the same data: no drift
    # --ci printed the markdown report before the JSON line
    assert f"### ❌ relay: {name} version {version} NOT promoted" in s["stdout"]
    assert "| ❌ | `model.beat_champion` |" in s["stdout"]
    # deploy was skipped: the endpoint still serves, and answers with, the champion
    health_version, answer = served(champion)
    assert health_version == 1 and answer["model_version"] == 1
    # a recorded outcome, not a crash: the pipeline run finished and there is nothing to resume
    assert client.get_run(s["pipeline_run_id"]).info.status == "FINISHED"
    assert progress.load(cfg).finished
    path = tmp_path / "weak.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert run_command(path, resume=True) == 2


def test_drifted_data_fails_the_drift_gate_against_the_champion(champion, tmp_path):
    """The richer half of a population: income (and what follows it) moves out of range."""

    def richer(columns: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        income = np.array([float(v) if v else np.nan for v in columns["income"]])
        keep = income > np.nanquantile(income, 0.6)
        for name in columns:
            columns[name] = columns[name][keep]

    source = planted_csv(tmp_path / "drifted.csv", richer)
    raw = merge(champion["raw"], {})
    raw["data"]["source"] = source  # replaces the whole tagged source
    cfg = parse_config(raw)
    code, s = relay_run(cfg, tmp_path, until="register")
    assert code == 4 and s["promoted"] is False
    result = next(r for r in s["gates"]["results"] if r["gate"] == "data.drift.psi")
    assert not result["passed"] and result["value"] > 1.0 and result["threshold"] == 0.2
    assert result["detail"]["income"] == result["value"]
    name, client = s["model_name"], champion["client"]
    assert aliased(client, name, "champion").version == 1
    assert aliased(client, name, REJECTED).version == s["model_version"]
    tag = gate_tags(client, name, s["model_version"])["data.drift.psi"]
    assert tag.startswith("failed: psi over 0.2: income ")


def test_undeclared_emails_in_a_feature_fail_the_pii_gate(ray_cluster, make_config, tmp_path):
    """A category feature whose values include email addresses; ETL only warns (pii_scan)."""
    referrers = np.array(["web", "branch", "ana@example.com", "omar@example.org"], dtype=object)

    def with_referrer(columns: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        columns["referrer"] = referrers[rng.integers(0, len(referrers), len(columns["age"]))]

    raw = ci_raw()
    columns = [*raw["data"]["columns"]]
    columns.insert(-1, {"name": "referrer", "type": "category", "categories": list(referrers)})
    cfg = make_config(
        source=planted_csv(tmp_path / "referrers.csv", with_referrer),
        data={"columns": columns},
        etl={"pii_scan": "warn"},
        **FAST,
    )
    code, s = relay_run(cfg, tmp_path, until="register")
    assert code == 4 and s["promoted"] is False and s["model_alias"] == REJECTED
    failed = {r["gate"]: r for r in s["gates"]["results"] if not r["passed"]}
    assert set(failed) == {"pii.undeclared", "pii.input_schema"}
    emails = failed["pii.undeclared"]["detail"]["referrer:email"]
    assert 2500 < emails < 3500  # about half of the 6000 rows
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=s["tracking_uri"], registry_uri=s["tracking_uri"])
    name = s["model_name"]
    assert aliased(client, name, "champion") is None  # a first model, still not promoted
    tags = gate_tags(client, name, s["model_version"])
    assert tags["pii.undeclared"] == f"failed: undeclared PII: referrer:email ({emails} values)"
    assert tags["pii.input_schema"].endswith("input schema: referrer")


def test_a_label_that_depends_on_the_sensitive_attribute_fails_fairness(
    ray_cluster, make_config, tmp_path
):
    """Gender follows home ownership (a proxy feature) and drives the label."""

    def biased(columns: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        n = len(columns["age"])
        rent = columns["home_ownership"] == "rent"
        female = np.where(rng.random(n) < 0.9, rent, ~rent)
        columns["gender"] = np.where(female, "female", "male").astype(object)
        columns["defaulted"] = np.where(
            female & (rng.random(n) < 0.7), "1", columns["defaulted"]
        ).astype(object)

    cfg = make_config(source=planted_csv(tmp_path / "biased.csv", biased), **FAST)
    code, s = relay_run(cfg, tmp_path, until="register")
    assert code == 4 and s["promoted"] is False and s["model_alias"] == REJECTED
    failed = {r["gate"]: r for r in s["gates"]["results"] if not r["passed"]}
    parity = failed["fairness.gender.parity_difference"]
    assert parity["value"] > 0.15 and parity["threshold"] == 0.1  # measured: 0.199
    assert parity["detail"]["female"] > parity["detail"]["male"]
    assert not any(g.startswith(("pii.", "data.")) for g in failed)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=s["tracking_uri"], registry_uri=s["tracking_uri"])
    tags = gate_tags(client, s["model_name"], s["model_version"])
    assert tags["fairness.gender.parity_difference"].startswith("failed: positive_rate female ")
    assert tags["promoted"] == "false"
