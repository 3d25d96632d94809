"""`relay init`, then `relay run`, on small files written with each property real data has.

Two files, each run end to end (ETL to a served endpoint, whose answer the deploy checks against
the evaluated model):
- visits: no key column, one customer name repeated over many rows (declared a group after
  init, as a user would), and exact duplicate rows;
- events: timestamps in four formats (ISO with ``Z`` and ``±HH:MM`` offsets, ``%Y/%m/%d``,
  ``%m/%d/%Y %H:%M``, epoch seconds), a time split, a label left to ``categories: auto`` and a
  category the endpoint never saw in training. `relay reproduce` then rebuilds the same
  dataset and split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cluster.config import RelayConfig
from cluster.configfile import load_config, parse_overrides
from cluster.tracking.registry import load_verified, resolve
from jobs.artifacts import Dataset
from jobs.cli.app import app
from jobs.etl.file import SPLITS
from jobs.pipeline import runner
from jobs.pipeline.lineage import artifact_text
from jobs.pipeline.reproduce import reproduce
from serving.model import Predictor
from tests.conftest import free_port, write_csv

START = datetime(2024, 3, 1, 8, tzinfo=UTC)
OFFSETS = ("Z", "+02:00", "-05:30")


def visits(n: int = 360) -> list[dict]:
    """No key; 30 customers, each on many rows; every tenth row repeated exactly."""
    rows = [
        {
            "customer": f"Customer {i % 30}",
            "visits": str(i % 9),
            "basket": f"{(i * 37) % 101 / 7:.3f}",
            "channel": ("web", "shop", "phone")[i % 3],
            "churned": "yes" if (i * 37) % 101 > 50 else "no",
        }
        for i in range(n)
    ]
    return rows + [dict(r) for r in rows[::10]]


def iso(moment: datetime, i: int) -> str:
    offset = OFFSETS[i % 3]
    if offset == "Z":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign, hours, minutes = offset[0], int(offset[1:3]), int(offset[4:])
    shift = timedelta(hours=hours, minutes=minutes) * (1 if sign == "+" else -1)
    return (moment + shift).strftime("%Y-%m-%dT%H:%M:%S") + offset


def events(n: int = 400) -> list[dict]:
    """One row an hour; the same moment in four formats; stores 'a' to 'e', 'a' the commonest."""
    rows = []
    for i in range(n):
        moment = START + timedelta(hours=i)
        amount = (i * 53) % 97 / 3
        rows.append(
            {
                "opened": iso(moment, i),
                "day": moment.strftime("%Y/%m/%d"),
                "us_time": moment.strftime("%m/%d/%Y %H:%M"),
                "created_at": str(int(moment.timestamp())),
                "store": "abacadaeab"[i % 10],
                "amount": f"{amount:.3f}",
                "segment": "gold" if amount > 22 else "silver" if amount > 11 else "bronze",
            }
        )
    return rows


@contextmanager
def init_then_run(
    data: Path, label: str, edits: dict[str, dict], *overrides: str
) -> Iterator[tuple[dict[str, dict], RelayConfig, dict]]:
    """`relay init` on `data`, each column in `edits` updated as a user would, then a whole run;
    the endpoint serves until the block ends."""
    result = CliRunner().invoke(
        app, ["init", str(data), "--label", label, "-o", "proposed.yaml"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    proposed = yaml.safe_load(Path("proposed.yaml").read_text())
    specs = {c["name"]: c for c in proposed["data"]["columns"]}
    for name, edit in edits.items():
        specs[name].update(edit)
    Path("proposed.yaml").write_text(yaml.safe_dump(proposed, sort_keys=False))
    validated = CliRunner().invoke(app, ["validate", "proposed.yaml"])
    assert validated.exit_code == 0, validated.output
    settings = [f"serve.port={free_port()}", "tune.num_samples=1", "train.epochs=4", *overrides]
    cfg = load_config(Path("proposed.yaml"), parse_overrides(settings))
    from ray import serve

    try:
        yield specs, cfg, runner.run(cfg, keep_serving=True)  # the session's Ray keeps Serve
    finally:
        serve.shutdown()  # the next test's Serve listens on its own port


def test_no_key_a_repeated_name_as_group_and_exact_duplicates(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "visits.csv", visits())
    with init_then_run(tmp_path / "visits.csv", "churned", {"customer": {"role": "group"}}) as (
        specs,
        _,
        summary,
    ):
        pass
    assert not any(s.get("role") == "id" for s in specs.values())  # nothing unique: no key
    assert specs["churned"]["categories"] == "auto"
    assert summary["model_version"] == 1 and summary["prediction"]["matches_offline"] is True
    assert summary["rows"]["rows_out"] == 396 and summary["rows"]["duplicate_rows"] == 36

    dataset = Dataset.open(Path(summary["dataset_path"]))
    assert dataset.meta["id_column"] is None
    where: dict[str, set[str]] = {}
    for split in SPLITS:
        for customer in dataset.split(split).column("customer").to_pylist():
            where.setdefault(customer, set()).add(split)
    assert len(where) == 30 and all(len(s) == 1 for s in where.values())
    split = dataset.meta["split"]
    assert (split["key"], split["key_column"]) == ("group", "customer")  # recorded with the split


def test_four_date_formats_a_time_split_an_auto_label_and_an_unseen_store(
    ray_cluster, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    rows = events()
    write_csv(tmp_path / "events.csv", rows)
    split = ["etl.split.by=time", "etl.split.column=created_at"]
    with init_then_run(tmp_path / "events.csv", "segment", {}, *split) as (specs, cfg, summary):
        uri = summary["tracking_uri"]
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        spec, files = load_verified(client, resolve(client, cfg.model.name, "champion"))
        predictor = Predictor(spec, files)
        token = Path(summary["token_file"]).read_text().strip()
        answers = {}
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            for store in ("b", "zz"):  # zz: never seen in training
                record = {k: v for k, v in rows[-1].items() if k != "segment"}
                record.update(store=store, amount=float(record["amount"]))
                response = http.post(summary["endpoint"], json=record)
                assert response.status_code == 200, response.text
                answers[store] = response.json()["probabilities"]
                expected = predictor.predict_records([record])[0]["probabilities"]
                assert answers[store] == pytest.approx(expected, abs=1e-5)
    assert summary["model_version"] == 1 and summary["prediction"]["matches_offline"] is True
    formats = {name: specs[name].get("format") for name in ("opened", "day", "us_time")}
    assert formats == {"opened": None, "day": "%Y/%m/%d", "us_time": "%m/%d/%Y %H:%M"}
    assert specs["created_at"]["format"] == "epoch_s"
    assert {specs[n]["type"] for n in ("opened", "day", "us_time", "created_at")} == {"timestamp"}
    assert specs["store"]["categories"] == "auto" and specs["segment"]["categories"] == "auto"
    assert summary["rows"]["rows_out"] == 400 and summary["rows"]["rows_rejected"] == 0
    assert sorted(spec["features"]["label"]["classes"]) == ["bronze", "gold", "silver"]
    (store,) = spec["features"]["categorical"]
    assert store["vocab"][0] == "a" and store["other"] == "__other__"

    dataset = Dataset.open(Path(summary["dataset_path"]))
    train = dataset.split("train")
    created = train.column("created_at").to_pylist()
    assert train.column("opened").to_pylist() == created  # offsets undone: the same UTC instant
    assert train.column("us_time").to_pylist() == created  # written in UTC, to the minute
    assert [d.date() for d in train.column("day").to_pylist()] == [c.date() for c in created]
    stamps = {s: sorted(dataset.split(s).column("created_at").to_pylist()) for s in SPLITS}
    assert stamps["train"][-1] < stamps["val"][0] <= stamps["val"][-1] < stamps["test"][0]
    assert dataset.meta["split"]["by"] == "time" and dataset.meta["split"]["column"] == "created_at"

    again = reproduce(summary["pipeline_run_id"], uri, allow_code_change=True)
    assert again["reproduced"] and again["differences"] == []
    assert again["dataset_digest"] == summary["dataset_digest"]  # per split: the same rows in each
    rerun = json.loads(artifact_text(client, again["rerun_run_id"], "summary.json"))
    assert Dataset.open(Path(rerun["dataset_path"])).meta["split"] == dataset.meta["split"]
