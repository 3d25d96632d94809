"""A dataset with a timestamp feature and learned categories through the whole pipeline: the
served endpoint answers as the offline model does, unseen categories included."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from cluster.configfile import parse_config
from cluster.tracking.registry import load_verified, resolve
from jobs.pipeline import runner
from serving.model import Predictor
from tests.conftest import ci_raw, free_port, merge, write_csv

FORMAT = "%m/%d/%Y %H:%M"
SHOPS = ["a", "a", "a", "b", "b", "c", "c", "d", "e", "f"]  # top 3 kept: d, e, f are other


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        when = datetime(2024, 1, 1) + timedelta(hours=7 * i, minutes=i % 60)
        shop = SHOPS[(i * 7) % len(SHOPS)]
        late = when.hour >= 12
        out.append(
            {
                "order": f"o{i}",
                "placed": when.strftime(FORMAT),
                "shop": shop,
                "amount": str((i * 13) % 50),
                "returned": "yes" if late != (shop in "ab") else "no",
            }
        )
    return out


@pytest.fixture
def served(ray_cluster, tmp_path):
    from ray import serve

    write_csv(tmp_path / "orders.csv", rows(900))
    raw = merge(
        ci_raw(),
        {
            "name": "orders",
            "data": {
                "columns": [
                    {"name": "order", "type": "string", "role": "id", "nullable": False},
                    {"name": "placed", "type": "timestamp", "format": FORMAT},
                    {"name": "shop", "type": "category", "categories": "auto", "max_categories": 3},
                    {"name": "amount", "type": "float"},
                    {
                        "name": "returned",
                        "type": "category",
                        "role": "label",
                        "nullable": False,
                        "categories": "auto",
                    },
                ],
            },
            "etl": {"pii_scan": "off"},
            "model": {"name": "orders-model"},
            "tune": {"num_samples": 1},
            "train": {"epochs": 2},
            "runtime": {"state_dir": str(tmp_path / "state")},
            "serve": {"port": free_port()},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"},
            "gates": {"fairness": None},
        },
    )
    raw["data"]["source"] = {"kind": "files", "path": str(tmp_path / "orders.csv")}
    raw["gates"]["model"]["min"] = {}  # this test is about the contract, not the model's skill
    cfg = parse_config(raw)
    try:
        yield cfg, runner.run(cfg, keep_serving=True)  # the fixture's Ray: Serve stays up
    finally:
        serve.shutdown()


def test_timestamp_parts_and_learned_categories_serve_as_they_trained(served, tmp_path):
    cfg, summary = served
    assert summary["prediction"]["matches_offline"] is True
    sent = summary["prediction"]["request"]
    assert datetime.strptime(sent["placed"], FORMAT)  # the request carried the declared format

    from mlflow.tracking import MlflowClient

    client = MlflowClient(
        tracking_uri=summary["tracking_uri"], registry_uri=summary["tracking_uri"]
    )
    spec, files = load_verified(client, resolve(client, cfg.model.name, "champion"))
    features = spec["features"]
    assert [f["name"] for f in features["numeric"]] == [
        "placed.year",
        "placed.month",
        "placed.day_of_week",
        "placed.hour",
        "amount",
    ]
    (shop,) = features["categorical"]
    assert shop["other"] == "__other__" and shop["vocab"][0] == "a"  # the most frequent first
    assert sorted(shop["vocab"][1:3]) == ["b", "c"] and shop["vocab"][3] == "__other__"
    assert sorted(features["label"]["classes"]) == ["no", "yes"]

    token = Path(summary["token_file"]).read_text().strip()
    predictor = Predictor(spec, files)
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        answers = {}
        for shop in ("a", "d", "never-seen"):
            record = {"placed": "03/01/2024 19:00", "shop": shop, "amount": 3.0}
            response = http.post(summary["endpoint"], json=record)
            assert response.status_code == 200, response.text
            answers[shop] = response.json()["probabilities"]
            expected = predictor.predict_records([record])[0]["probabilities"]
            assert answers[shop] == pytest.approx(expected, abs=1e-5)
        assert answers["never-seen"] == pytest.approx(answers["d"], abs=1e-6)  # both __other__
        assert answers["never-seen"] != pytest.approx(answers["a"], abs=1e-6)
        bad = http.post(
            summary["endpoint"], json={"placed": "2024-03-01 19:00", "shop": "a", "amount": 1}
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "placed"

    from jobs.predict.batch import REASONS, STATUS, batch

    scored_rows = rows(5)
    scored_rows[1]["shop"] = "never-seen"
    scored_rows[2]["placed"] = "02/30/2024 10:00"
    write_csv(tmp_path / "new.csv", scored_rows)
    result = batch(cfg, [str(tmp_path / "new.csv")], tmp_path / "scored")
    assert (result["rows_scored"], result["rows_rejected"]) == (4, 1)
    out = {r["order"]: r for r in pq.read_table(result["output"]).to_pylist()}
    assert out["o1"][STATUS] == "scored"
    assert (out["o2"][STATUS], out["o2"][REASONS]) == ("rejected", "placed:type")
