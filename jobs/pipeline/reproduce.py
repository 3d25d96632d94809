"""Re-run a recorded pipeline and say whether it came out the same.

From the pipeline run: the resolved config (`config.yaml`), the code commit, the raw-file
manifest (ETL run), the dataset digest and metrics (`summary.json`). The re-run goes up to
evaluation (it registers and deploys nothing) in the same store, tagged `relay.reproduces`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cluster.config import FileSource, RelayConfig
from cluster.configfile import parse_config
from cluster.errors import ConfigError, RelayError
from cluster.tracking.tracker import STAGE_TAG, Tracker, provenance_tags, tracking_uri
from jobs.data.sources import RawFile, filesystem, raw_sha256, resolve_files
from jobs.pipeline import runner
from jobs.pipeline.lineage import artifact_text, children

TOLERANCE = 1e-6  # metrics: absolute difference allowed (CPU runs are bit-identical here)


class NotReproducedError(RelayError):
    """The re-run differs from the recorded run (inputs, dataset digest or metrics)."""

    exit_code = 7


def reproduce(
    run_id: str,
    tracking: str,
    allow_code_change: bool = False,
    tolerance: float = TOLERANCE,
    address: str | None = None,
) -> dict[str, Any]:
    """The comparison; raises NotReproducedError (with the diff) when anything differs."""
    from mlflow.exceptions import MlflowException

    tracker = Tracker(tracking, "")
    try:
        original = tracker.client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"run {run_id} not found in {tracking}") from None
    if original.data.tags.get(STAGE_TAG) != "pipeline":
        raise ConfigError(f"run {run_id} is not a relay pipeline run")
    cfg = parse_config(yaml.safe_load(artifact_text(tracker.client, run_id, "config.yaml")))
    if tracking_uri(cfg) != tracking:
        cfg = parse_config(_with_tracking(cfg, tracking))
    folder = original.data.tags.get(runner.FOLDER_TAG)
    if folder and Path(folder).is_dir():  # model.module is looked for where the run found it
        cfg._folder = Path(folder)
    warnings = _code_check(original.data.tags, allow_code_change)
    recorded = json.loads(artifact_text(tracker.client, run_id, "summary.json"))
    differences = _input_differences(tracker, original, cfg)
    if differences:  # edited inputs: the re-run cannot match, say why now
        raise NotReproducedError(_report(run_id, differences))
    rerun = runner.run(
        cfg,
        until="evaluate",
        address=address,
        tags={"relay.reproduces": run_id},
        reuse_dataset=False,  # rebuilt from the raw files, or the digest would prove nothing
    )
    differences = _result_differences(recorded, rerun, tolerance)
    result = {
        "original_run_id": run_id,
        "rerun_run_id": rerun["pipeline_run_id"],
        "dataset_digest": rerun["dataset_digest"],
        "tolerance": tolerance,
        "warnings": warnings,
        "differences": differences,
        "reproduced": not differences,
    }
    if differences:
        raise NotReproducedError(_report(run_id, differences))
    return result


def _with_tracking(cfg: RelayConfig, uri: str) -> dict[str, Any]:
    raw = cfg.model_dump(mode="json")
    raw["tracking"]["uri"] = uri
    return raw


def _code_check(tags: dict[str, str], allow: bool) -> list[str]:
    """Refuse (or, allowed, warn) when the code is not the recorded commit, clean."""
    now = provenance_tags()
    problems = []
    if tags.get("relay.git_commit") != now.get("relay.git_commit"):
        problems.append(
            f"code commit {now.get('relay.git_commit')} differs from the recorded "
            f"{tags.get('relay.git_commit')}"
        )
    if now.get("relay.git_dirty") == "true":
        problems.append("the working tree has uncommitted changes")
    if tags.get("relay.git_dirty") == "true":
        problems.append("the recorded run was made from a dirty tree")
    if problems and not allow:
        raise ConfigError(
            "refusing to reproduce: " + "; ".join(problems) + " (check out the recorded "
            "commit, or pass --allow-code-change to compare anyway)"
        )
    return problems


def _input_differences(tracker: Tracker, original: Any, cfg: RelayConfig) -> list[str]:
    """For file sources: every recorded raw file still there with the same bytes, no new ones."""
    if not isinstance(cfg.data.source, FileSource):
        return []  # synthetic data is regenerated from the seed; the dataset digest checks it
    (etl,) = children(tracker.client, original, "etl")
    meta = json.loads(artifact_text(tracker.client, etl.info.run_id, "dataset.json"))
    manifest = meta["manifest"]
    recorded = {m["path"]: m["sha256"] for m in manifest}
    differences = []
    for path, sha in sorted(recorded.items()):
        fs, inner = filesystem(path)
        info = fs.get_file_info(inner)
        if not info.is_file:
            differences.append(f"raw file {path}: missing")
            continue
        now = raw_sha256(RawFile(uri=path, format="", size=info.size))
        if now != sha:
            differences.append(f"raw file {path}: sha256 {now[:16]}… recorded {sha[:16]}…")
    for raw in resolve_files(cfg.data.source):
        if raw.uri not in recorded:
            differences.append(f"raw file {raw.uri}: new, not in the recorded manifest")
    return differences


def _result_differences(recorded: dict, rerun: dict, tolerance: float) -> list[str]:
    differences = []
    if recorded["dataset_digest"] != rerun["dataset_digest"]:
        differences.append(
            f"dataset digest {rerun['dataset_digest'][:16]}… recorded "
            f"{recorded['dataset_digest'][:16]}…"
        )
    if recorded.get("best_hyperparameters") != rerun.get("best_hyperparameters"):
        differences.append(
            f"best hyper-parameters {rerun.get('best_hyperparameters')} recorded "
            f"{recorded.get('best_hyperparameters')}"
        )
    for group in ("best_val", "test_metrics"):
        for name, value in sorted(recorded.get(group, {}).items()):
            again = rerun.get(group, {}).get(name)
            if again is None or abs(again - value) > tolerance:
                differences.append(f"{name} {again} recorded {value} (tolerance {tolerance:g})")
    return differences


def _report(run_id: str, differences: list[str]) -> str:
    return f"run {run_id} did not reproduce:\n" + "\n".join(f"  - {d}" for d in differences)
