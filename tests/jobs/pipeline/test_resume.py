"""`--resume` is exact: finished stages are not repeated, an interrupted register is completed.

The interrupt is a real KeyboardInterrupt raised inside register after the model version was
created and the aliases moved (while the model card is written), which is where a Ctrl-C or a
lost driver leaves the most half-done state behind.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from jobs.pipeline import runner
from jobs.register import modelcard


def test_an_interrupted_register_resumes_to_one_version_without_re_evaluating(
    ray_cluster, make_config, monkeypatch
):
    cfg = make_config()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(modelcard, "render", interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, until="register")
    monkeypatch.undo()

    client = MlflowClient(cfg.tracking.uri)
    name = cfg.model.name
    assert len(client.search_model_versions(f"name = '{name}'")) == 1  # created, then interrupted
    assert str(client.get_model_version_by_alias(name, cfg.serve.alias).version) == "1"
    assert not client.get_model_version(name, "1").description  # the card was never written

    summary = runner.run(cfg, until="register", resume=True)

    versions = client.search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert summary["model_version"] == 1 and summary["promoted"] is True
    # the recorded decision (no champion yet), not a new one against the version itself
    assert summary["gates"]["previous_champion_version"] is None
    card = client.get_model_version(name, "1").description
    assert card.startswith(f"# Model card: {name} version 1")  # register completed
    evaluate_run = client.get_run(_child(client, summary, "evaluate"))
    for metric in evaluate_run.data.metrics:
        assert len(client.get_metric_history(evaluate_run.info.run_id, metric)) == 1, metric
    assert summary["test_metrics"] == {
        k: v for k, v in evaluate_run.data.metrics.items() if k in summary["test_metrics"]
    }


def _child(client: MlflowClient, summary: dict, stage: str) -> str:
    (run,) = client.search_runs(
        [summary["experiment_id"]],
        f"tags.mlflow.parentRunId = '{summary['pipeline_run_id']}' "
        f"and tags.`relay.stage` = '{stage}'",
    )
    return run.info.run_id
