"""A served model that disagrees with the evaluated one fails the deploy (exit 6), on a real
mismatch: a real endpoint, registry and pipeline, nothing in the comparison replaced."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from cluster.configfile import parse_config
from cluster.tracking.registry import load_verified, resolve
from cluster.tracking.tracker import STAGE_TAG
from jobs.pipeline import runner
from jobs.pipeline.command import run_command
from serving.model import Predictor
from tests.conftest import ci_raw, free_port, merge


def after(text: str, marker: str) -> dict:
    """The JSON object that follows `marker` in `text`."""
    return json.JSONDecoder().raw_decode(text, text.index(marker) + len(marker))[0]


def test_an_endpoint_answering_with_another_model_than_evaluated_fails_the_deploy(
    ray_cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #16: `matches_offline: false` was reported and the run exited 0. Here a different
    version is really served: version 1 is the challenger with the whole share, so the
    endpoint answers with version 1's weights while the run evaluated (and promoted) version 2."""
    from mlflow.tracking import MlflowClient
    from ray import serve

    raw = merge(
        ci_raw(),
        {
            "runtime": {"state_dir": str(tmp_path / "state")},
            "serve": {"port": free_port()},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"},
            "tune": {"num_samples": 1},
            "train": {"epochs": 1},
            "gates": {"model": {"beat_champion": {"margin": -1.0}}},  # version 2 is promoted
        },
    )
    config = tmp_path / "relay.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = parse_config(raw)
    name = cfg.model.name
    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    try:
        first = runner.run(cfg, keep_serving=True)  # the session's Ray: the endpoint stays up
        assert first["prediction"]["matches_offline"] is True and first["model_version"] == 1
        client.set_registered_model_alias(name, cfg.serve.challenger_alias, "1")
        capsys.readouterr()

        code = run_command(config, overrides=["train.epochs=2", "serve.challenger_share=1.0"])

        err = capsys.readouterr().err
        assert code == 6, err
        assert "the endpoint does not serve the evaluated model" in err
        assert "all went to challenger version 1 (share 1)" in err and "deploy failed" in err
        record = after(err, "prediction for ")
        served, offline = after(err, f"{json.dumps(record)} is "), after(err, "model's is ")
        assert served != offline
        token = Path(first["token_file"]).read_text().strip()
        answer = httpx.post(
            first["endpoint"], json=record, headers={"Authorization": f"Bearer {token}"}
        ).json()  # what the endpoint answers: version 1's prediction...
        assert answer["model_version"] == 1 and {k: answer[k] for k in served} == served
        evaluated = resolve(client, name, "champion")  # ...not the evaluated version 2's
        assert evaluated.version == 2 and f"(version 2, sha256 {evaluated.sha256[:12]})" in err
        expected = Predictor(*load_verified(client, evaluated)).predict_records([record])[0]
        assert offline["prediction"] == expected["prediction"]
        assert offline["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
        (failed,) = client.search_runs(
            [experiment],
            filter_string=f"tags.`{STAGE_TAG}` = 'pipeline' and attributes.status = 'FAILED'",
        )
        assert failed.info.run_id != first["pipeline_run_id"]
    finally:
        serve.shutdown()
