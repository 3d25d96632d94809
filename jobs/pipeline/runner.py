"""The pipeline: ETL -> tune -> evaluate -> register -> deploy -> one real prediction.

One MLflow parent run per pipeline; each stage is a child run (trials nest under tune), so the
trail from raw files to the served version is in the tracking store.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cluster.compute.runtime import RayInfo, quiet_environment, ray_session
from cluster.compute.submit import SUBMISSION_ENV
from cluster.compute.workingdir import refuse_ephemeral_state
from cluster.config import RelayConfig, Stage
from cluster.errors import GateFailedError
from cluster.redact import redacted
from cluster.tracking.tracker import NOTE_TAG, Tracker, provenance_tags
from cluster.writable import ensure_writable
from jobs import progress
from jobs.artifacts import Dataset, Deployment, Evaluation, Registered, TuneOutcome
from jobs.deploy import probe
from jobs.deploy import stage as deploy
from jobs.etl import stage as etl
from jobs.evaluate import stage as evaluate
from jobs.gates.report import headline
from jobs.models import families
from jobs.pipeline import lineage
from jobs.register import stage as register
from jobs.tune import stage as tune
from serving import launch, values

T = TypeVar("T")
STAGES = tuple(s.value for s in Stage)
FOLDER_TAG = "relay.config_folder"


def run(
    cfg: RelayConfig,
    *,
    address: str | None = None,
    until: str = "deploy",
    keep_serving: bool = False,
    on_stage: Callable[[str], None] | None = None,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    tags: dict[str, str] | None = None,
    reuse_dataset: bool = True,
) -> dict[str, Any]:
    """Run the stages up to `until`; return the summary the CLI prints.

    With `keep_serving`, the endpoint stays up: on an embedded Ray this call then waits for
    Ctrl-C (the local cluster lives only as long as this process) after `on_summary`.
    With `resume`, the interrupted run of this config continues in the same MLflow runs;
    finished stages are not repeated and Tune restores its trials from their checkpoints.
    Deploy (and its sample prediction) always runs again: the interrupted process's endpoint
    is gone with it.
    `tags` go on the pipeline run (e.g. which run a reproduction repeats).
    ETL reuses a dataset built from the same raw bytes, schema and settings unless
    `reuse_dataset` is False (a reproduction reads the raw files again).
    When a promotion gate turns the model down, deploy is skipped (the champion keeps
    serving) and, once the run is recorded as finished, GateFailedError carries the summary.
    """
    if until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}")
    wanted = STAGES[: STAGES.index(until) + 1]
    started = time.perf_counter()
    timings: dict[str, float] = {}
    summary: dict[str, Any] = {"pipeline": cfg.name, "config_digest": cfg.digest()}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        if on_stage:
            on_stage(name)
        t0 = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - t0, 2)

    families.check(cfg)  # hyper-parameters the model family does not declare: before any Ray
    refuse_ephemeral_state(cfg)  # a Ray job's working dir goes with the cluster
    ensure_writable(cfg.runtime.state_dir, "runtime.state_dir")
    if cfg.tune.storage_path and "://" not in cfg.tune.storage_path:
        ensure_writable(cfg.tune.storage_path, "tune.storage_path")
    previous = progress.resumable(cfg) if resume else None
    if on_stage:
        on_stage("ray")
    quiet_environment()  # the tracking credentials in os.environ before the store opens
    opening = _in_background(Tracker.from_config, cfg)  # MLflow's import and the store's
    # set-up (~4 s) overlap Ray's start, which mostly waits on its processes; Ray Tune's
    # import (~1 s) overlaps ETL, which mostly waits on its tasks
    if "tune" in wanted:
        _in_background(importlib.import_module, "ray.tune")
    with ray_session(cfg.runtime, address, serve=cfg.serve) as info:
        timings["ray"] = round(time.perf_counter() - started, 2)
        tracker = opening.result()
        reopen = previous.pipeline_run_id if previous else None
        with tracker.run(
            f"pipeline-{cfg.name}",
            stage="pipeline",
            tags={**provenance_tags(), **(tags or {})},
            reopen=reopen,
        ) as pid:
            state = previous or progress.Progress(pipeline_run_id=pid, config_digest=cfg.digest())
            progress.save(cfg, state)
            runs = progress.StageRuns(tracker, cfg, state)
            _record_start(tracker, pid, cfg, info, resumed=previous is not None)
            summary.update(
                pipeline_run_id=pid,
                tracking_uri=redacted(tracker.uri),
                experiment_id=tracker.experiment_id,
            )
            with stage("etl"):
                if state.done("etl"):
                    dataset = Dataset.open(Path(state.stages["etl"]["path"]))
                    dataset.run_id = state.run_id("etl")
                    dataset.reused = state.stages["etl"].get("reused", False)
                else:
                    dataset = etl.run(cfg, runs, reuse=reuse_dataset)
                    runs.finish("etl", path=str(dataset.path), reused=dataset.reused)
            summary.update(
                dataset_digest=dataset.digest,
                dataset_path=str(dataset.path),
                dataset_reused=dataset.reused,
                input_columns=[c["name"] for c in dataset.meta["input_schema"]],
                rows=dataset.meta["counts"],
                rejects=dataset.meta["reasons"],
            )
            if "tune" in wanted:
                with stage("tune"):
                    if state.done("tune"):
                        outcome = TuneOutcome(**state.stages["tune"]["outcome"])
                    else:
                        outcome = tune.run(cfg, runs, dataset, info)
                        runs.finish("tune", outcome=asdict(outcome))
                summary.update(
                    model_family=outcome.family,
                    best_hyperparameters=outcome.hyperparameters,
                    best_val=outcome.metrics,
                    trials=outcome.trials,
                    best_trial_run_id=outcome.best_run_id,
                    tune_overhead_ratio=round(outcome.overhead_ratio, 3),
                )
            # an embedded Ray's Serve starts (~5 s) while evaluate and register run on the driver
            serving = (
                _in_background(launch.start_serve, cfg)
                if "deploy" in wanted and info.embedded
                else None
            )
            if "evaluate" in wanted:
                with stage("evaluate"):
                    if state.done("evaluate"):
                        recorded = runs.recorded("evaluate")
                        evaluation = evaluate.restore(cfg, dataset, outcome, recorded)
                    else:
                        evaluation = evaluate.run(cfg, runs, dataset, outcome)
                        runs.finish(
                            "evaluate", metrics=evaluation.metrics, groups=evaluation.groups
                        )
                summary["test_metrics"] = evaluation.metrics
            if "register" in wanted:
                with stage("register"):
                    if state.done("register"):
                        registered = Registered(**state.stages["register"]["model"])
                    else:
                        registered = register.run(cfg, runs, dataset, outcome, evaluation)
                        runs.finish("register", model=asdict(registered))
                summary.update(
                    model_name=registered.name,
                    model_version=registered.version,
                    model_alias=registered.alias,
                    model_sha256=registered.sha256,
                    promoted=registered.promoted,
                    gates=registered.gates,
                )
                if not registered.promoted:  # the endpoint keeps serving the champion
                    wanted = wanted[: wanted.index("register") + 1]
            if "deploy" in wanted:
                with stage("deploy"):
                    if serving:  # wait for it; deploy's own start (in the deploy run) then
                        serving.exception()  # connects, or raises what made it fail
                    deployment = deploy.run(cfg, runs, registered)
                with stage("predict"):
                    summary["prediction"] = sample_prediction(
                        cfg, deployment, dataset, evaluation, registered
                    )
                summary["endpoint"] = f"{deployment.endpoint}/predict"
                summary["token_file"] = deployment.token_file
            summary["stage_seconds"] = timings
            summary["total_seconds"] = round(time.perf_counter() - started, 2)
            tracker.log(
                pid,
                metrics={
                    **{f"seconds_{k}": v for k, v in timings.items()},
                    **{f"best_{k}": v for k, v in summary.get("best_val", {}).items()},
                    **summary.get("test_metrics", {}),
                },
                tags={
                    "relay.dataset_digest": dataset.digest,
                    "relay.model_version": summary.get("model_version", ""),
                    "relay.endpoint": summary.get("endpoint", ""),
                    "relay.promoted": str(summary.get("promoted", "")).lower(),
                    NOTE_TAG: _note(cfg, summary, timings),
                },
            )
            tracker.log_dict(pid, summary, "summary.json")
            if "model_version" in summary:
                graph = tracker.online(
                    lambda: lineage.chain(tracker.client, cfg.model.name, summary["model_version"])
                )
                tracker.log_text(pid, lineage.mermaid(graph), "lineage.mmd")
                tracker.log_text(pid, lineage.svg(graph), "lineage.svg")  # the UI draws it
            state.finished = True
            progress.save(cfg, state)
        if on_summary:
            on_summary(summary)
        if "deploy" in wanted:
            if keep_serving and info.embedded:
                _wait_for_interrupt()
            if not keep_serving or info.embedded:
                launch.teardown(deployment.app_name, embedded=info.embedded)
    if summary.get("promoted") is False:  # a finished, recorded outcome: nothing to resume
        raise GateFailedError(headline(summary["gates"]), summary)
    return summary


def _note(cfg: RelayConfig, summary: dict[str, Any], timings: dict[str, float]) -> str:
    """The pipeline run's description in the MLflow UI: what it produced, where, how long."""
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    made = f"dataset {summary['dataset_digest'][:12]}"
    if "model_version" in summary:
        verdict = "promoted" if summary.get("promoted") else "not promoted"
        made += f"; {cfg.model.name} version {summary['model_version']} {verdict}"
    if summary.get("endpoint"):
        made += f", served at {summary['endpoint']}"
    return f"Pipeline {cfg.name}: {made}. Stages: {stages}."


def _in_background(call: Callable[..., T], *args: Any) -> Future[T]:
    """`call(*args)` on a thread of its own; its result (or exception) when asked for."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="relay-background")
    try:
        return pool.submit(call, *args)
    finally:
        pool.shutdown(wait=False)


def _record_start(
    tracker: Tracker, pid: str, cfg: RelayConfig, info: RayInfo, resumed: bool
) -> None:
    tracker.log(
        pid,
        params={"config_digest": cfg.digest(), "seed": cfg.seed, "model_name": cfg.model.name},
        tags={
            "relay.config_digest": cfg.digest(),
            "relay.ray_address": info.address,
            "relay.ray_embedded": str(info.embedded).lower(),
            "relay.cluster_resources": json.dumps(info.resources, sort_keys=True),
            "relay.ray_job_id": info.job_id,
            **_submission_tag(),
            **({"relay.resumed": "true"} if resumed else {}),
            # where model.module was looked for: `relay reproduce` looks there again
            **({FOLDER_TAG: str(cfg.folder)} if cfg.folder else {}),
        },
    )
    tracker.log_text(
        pid, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), "config.yaml"
    )


def _submission_tag() -> dict[str, str]:
    """The Jobs API submission id, when this pipeline runs as a submitted job."""
    submitted = os.environ.get(SUBMISSION_ENV)
    return {"relay.ray_submission_id": submitted} if submitted else {}


def sample_prediction(
    cfg: RelayConfig,
    deployment: Deployment,
    dataset: Dataset,
    evaluation: Evaluation,
    registered: Registered,
) -> dict[str, Any]:
    """One real HTTP prediction on a held-out row; a mismatch with the offline model fails."""
    names = [c["name"] for c in dataset.meta["input_schema"]]
    row = dataset.split("test").select(names).slice(0, 1).to_pylist()[0]
    record = values.request_record(dataset.meta["input_schema"], row)
    token = launch.client_token(cfg)
    return probe.sample_prediction(
        deployment.endpoint, record, token, evaluation.predictor(), registered
    )


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
