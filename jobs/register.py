"""Registration: write the safetensors bundle beside the best trial and register a version.

The version points at the trial run that trained it and carries its sha256 and the lineage
ids (pipeline, ETL, tune, evaluate runs, dataset digest) as tags.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster.bundle import write_bundle
from cluster.config import RelayConfig
from cluster.registry import BUNDLE_PATH, SHA_TAG
from jobs.etl import Dataset
from jobs.evaluate import Evaluation
from jobs.progress import StageRuns
from jobs.tune import TuneOutcome


@dataclass
class Registered:
    name: str
    version: int
    sha256: str
    run_id: str
    alias: str


def run(
    cfg: RelayConfig,
    runs: StageRuns,
    dataset: Dataset,
    outcome: TuneOutcome,
    evaluation: Evaluation,
) -> Registered:
    from mlflow.exceptions import MlflowException

    tracker, parent = runs.tracker, runs.parent
    client = tracker.client
    with runs.open("register") as run_id:
        with tempfile.TemporaryDirectory(prefix="relay-bundle-") as tmp:
            folder = Path(tmp) / BUNDLE_PATH
            sha = write_bundle(folder, evaluation.state_dict, evaluation.spec)
            tracker.log_artifacts(outcome.best_run_id, folder, artifact_path=BUNDLE_PATH)
        name = cfg.model.name
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, description=f"Registered by relay pipeline '{cfg.name}'."
            )
        lineage = {
            SHA_TAG: sha,
            "relay.dataset_digest": dataset.digest,
            "relay.pipeline_run_id": parent,
            "relay.etl_run_id": dataset.run_id or "",
            "relay.tune_run_id": outcome.run_id,
            "relay.evaluate_run_id": evaluation.run_id,
            "relay.register_run_id": run_id,
            **{f"relay.{k}": f"{v:.6g}" for k, v in evaluation.metrics.items()},
        }
        mv = client.create_model_version(
            name,
            source=f"runs:/{outcome.best_run_id}/{BUNDLE_PATH}",
            run_id=outcome.best_run_id,
            tags=lineage,
        )
        client.set_registered_model_alias(name, cfg.serve.alias, mv.version)
        tracker.log(
            run_id,
            params={"model_name": name, "model_version": mv.version},
            tags={SHA_TAG: sha, "relay.model_version": mv.version, "relay.alias": cfg.serve.alias},
        )
    return Registered(
        name=name, version=int(mv.version), sha256=sha, run_id=run_id, alias=cfg.serve.alias
    )


def main(argv: list[str] | None = None) -> None:
    from jobs.pipeline import stage_main

    stage_main("register", argv)


if __name__ == "__main__":
    main()
