"""Registration: write the model (an MLflow Model around relay's bundle) beside the best
trial, register a version, and promote it only if every gate passes.

The version points at the trial run that trained it and carries its sha256, the lineage ids
(pipeline, ETL, tune, evaluate runs, dataset digest) and each gate's outcome as tags. The gates
are decided before any alias moves: a passing version takes serve.alias (the old champion
keeps `previous`); a failing one gets `rejected`, and the champion stays where it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.tracking.bundle import write_bundle
from cluster.tracking.registry import (
    BUNDLE_PATH,
    BUNDLE_TAG,
    MODEL_PATH,
    PREVIOUS,
    REJECTED,
    SHA_TAG,
)
from cluster.tracking.tracker import NOTE_TAG
from jobs.artifacts import Dataset, Evaluation, Registered, TuneOutcome
from jobs.gates import decide, report
from jobs.progress import StageRuns
from jobs.register import modelcard
from serving import values


def run(
    cfg: RelayConfig,
    runs: StageRuns,
    dataset: Dataset,
    outcome: TuneOutcome,
    evaluation: Evaluation,
) -> Registered:
    from mlflow.exceptions import MlflowException

    from serving import pyfunc  # MLflow's pyfunc: ~1.4 s to import, only here

    tracker, parent = runs.tracker, runs.parent
    client = tracker.client
    with runs.open("register") as run_id:
        with tempfile.TemporaryDirectory(prefix="relay-model-") as tmp:
            bundle = Path(tmp) / "bundle"
            sha = write_bundle(bundle, evaluation.files, evaluation.spec)
            model = Path(tmp) / MODEL_PATH
            pyfunc.save(model, bundle, sha, evaluation.spec, input_example(dataset))
            tracker.log_artifacts(outcome.best_run_id, model, artifact_path=MODEL_PATH)
        name = cfg.model.name
        try:
            tracker.online(lambda: client.get_registered_model(name))
        except MlflowException:
            tracker.online(
                lambda: client.create_registered_model(
                    name, description=f"Registered by relay pipeline '{cfg.name}'."
                )
            )
        recorded = runs.recorded("register").get("decision")
        if recorded:  # resumed: the champion may already be this run's own version
            decision = decide.Decision.from_dict(recorded)
        else:
            decision = tracker.online(lambda: decide.decide(cfg, client, dataset, evaluation))
            runs.record("register", decision=decision.as_dict())
        champion = decision.champion.version if decision.champion else None
        lineage = {
            SHA_TAG: sha,
            BUNDLE_TAG: BUNDLE_PATH,
            **family_tags(evaluation.spec),
            "relay.dataset_digest": dataset.digest,
            "relay.pipeline_run_id": parent,
            "relay.etl_run_id": dataset.run_id or "",
            "relay.tune_run_id": outcome.run_id,
            "relay.evaluate_run_id": evaluation.run_id,
            "relay.register_run_id": run_id,
            **{f"relay.{k}": f"{v:.6g}" for k, v in evaluation.metrics.items()},
            **gate_tags(decision),
        }
        mv = tracker.online(lambda: created_by(client, name, run_id)) if recorded else None
        if mv is None:
            mv = tracker.online(
                lambda: client.create_model_version(
                    name,
                    source=f"runs:/{outcome.best_run_id}/{MODEL_PATH}",
                    run_id=outcome.best_run_id,
                    tags=lineage,
                )
            )
        alias = cfg.serve.alias if decision.promoted else REJECTED
        if decision.promoted and champion is not None:
            tracker.online(lambda: client.set_registered_model_alias(name, PREVIOUS, str(champion)))
        tracker.online(lambda: client.set_registered_model_alias(name, alias, mv.version))
        gates = report.record(name, int(mv.version), decision.promoted, champion, decision.results)
        tracker.log(
            run_id,
            params={"model_name": name, "model_version": mv.version},
            metrics={
                f"gate_{r.gate}_value": r.value for r in decision.results if r.value is not None
            },
            tags={
                SHA_TAG: sha,
                "relay.model_version": mv.version,
                "relay.alias": alias,
                **gate_tags(decision),
                NOTE_TAG: f"{report.headline(gates)}; alias {alias}. The gate report is "
                f"gates.md; the model card {MODEL_CARD}.",
            },
        )
        tracker.log(evaluation.run_id, tags=gate_tags(decision))  # beside the metrics judged
        tracker.log_dict(run_id, gates, "gates.json")
        tracker.log_text(run_id, report.markdown(gates), "gates.md")
        card = modelcard.render(
            cfg,
            dataset.meta,
            evaluation.spec,
            evaluation.metrics,
            evaluation.groups,
            gates,
            {k.removeprefix("relay."): v for k, v in lineage.items() if k.endswith("_run_id")},
            tracker.experiment_id,
        )
        tracker.log_text(run_id, card, MODEL_CARD)
        description = card
        if len(card) > MAX_DESCRIPTION:
            pointer = f"runs:/{run_id}/{MODEL_CARD}"
            description = f"{report.headline(gates)}. Model card: {pointer}"
        tracker.online(
            lambda: client.update_model_version(name, mv.version, description=description)
        )
    return Registered(
        name=name,
        version=int(mv.version),
        sha256=sha,
        run_id=run_id,
        alias=alias,
        promoted=decision.promoted,
        gates=gates,
    )


def family_tags(spec: dict[str, Any]) -> dict[str, str]:
    """The version's family, and for a user module its name and source sha256 (lineage)."""
    tags = {"relay.family": spec["family"]}
    architecture = spec["architecture"]
    if architecture.get("type") == "module":
        tags["relay.module"] = f"{architecture['module']}:{architecture['builder']}"
        tags["relay.module_sha256"] = architecture["module_sha256"]
    return tags


def input_example(dataset: Dataset, rows: int = 3) -> list[dict[str, Any]]:
    """A few test rows as a request sends them: the MLflow Model's input example."""
    names = [c["name"] for c in dataset.meta["input_schema"]]
    table = dataset.split("test").select(names).slice(0, rows)
    return [values.request_record(dataset.meta["input_schema"], r) for r in table.to_pylist()]


def created_by(client: Any, name: str, register_run_id: str) -> Any | None:
    """The version an interrupted register run had already created, if it got that far."""
    versions = client.search_model_versions(f"name = '{name}'")
    return next(
        (v for v in versions if v.tags.get("relay.register_run_id") == register_run_id), None
    )


def gate_tags(decision: decide.Decision) -> dict[str, str]:
    """`relay.promoted` and one `relay.gate.<name>` per gate: 'passed: …' or 'failed: …'."""
    tags = {"relay.promoted": str(decision.promoted).lower()}
    for r in decision.results:
        outcome = "failed" if not r.passed else "warning" if r.warning else "passed"
        tags[f"relay.gate.{r.gate}"] = f"{outcome}: {r.reason}"[:MAX_TAG]
    return tags


MAX_TAG = 4000  # MLflow caps tag values at 5000 characters
MAX_DESCRIPTION = 5000  # a version description's column size in MLflow's SQL stores
MODEL_CARD = "model_card.md"
