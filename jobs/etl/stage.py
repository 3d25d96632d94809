"""ETL: raw files -> validated, PII-safe, deterministically split Parquet dataset with a digest.

One Ray task per raw file streams it batch by batch (`jobs.etl.file`): measured faster than a
Ray Data pipeline for this shape of work (see ray-notes), and memory stays bounded by the batch
size. A first, cheap pass over the id column (without an id: the declared columns) finds
duplicates across all files (`jobs.etl.dedupe`); a time split first finds its boundaries with a
pass over the timestamp column (`jobs.etl.splits`). The driver only merges summaries.

The digest is a sha256 over the output schema and, per split, the row count and order-free sums
of 128-bit row hashes: the same rows give the same digest whatever the file, batch or cluster
layout. The digest says nothing about roles, PII findings or which raw files the rows came
from, so a published dataset is found by its build key (`jobs.etl.buildkey`: raw bytes, declared
schema, ETL settings); a re-run with the same key reuses it without reading a row:
    <state>/datasets/<name>/<key[:12]>-<digest[:12]>/{train,val,test,rejects}/part-NNNNN.parquet
    <state>/datasets/<name>/<key[:12]>-<digest[:12]>/dataset.json, profile.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig, Role, SyntheticSource
from cluster.errors import ConfigError, DataQualityError
from cluster.tracking.tracker import NOTE_TAG
from jobs import bars
from jobs.artifacts import META, PROFILE, Dataset
from jobs.data.sources import RawFile, check_columns, resolve_files
from jobs.etl import buildkey, dedupe, featurestats, splits, synthetic
from jobs.etl.file import REJECTS, SPLITS, FilePart, output_schema, process_file, rejects_schema
from jobs.progress import StageRuns

log = logging.getLogger(__name__)

DIGEST_FORMAT = 2
REJECTS_TABLE = "rejects.json"  # rows quarantined, per column and reason
PII_TABLE = "pii_found.json"  # PII findings, per column and kind


def run(cfg: RelayConfig, runs: StageRuns, reuse: bool = True) -> Dataset:
    """The stage: build (or reuse) the dataset and record it in an `etl` child run."""
    tracker = runs.tracker
    with runs.open("etl") as run_id:
        dataset = build(cfg, reuse=reuse)
        meta = dataset.meta
        counts = meta["counts"]
        tracker.log(
            run_id,
            params={
                "source": cfg.data.source.kind,
                "files": len(meta["manifest"]),
                "pii": cfg.etl.pii,
                "split": json.dumps(meta["split"]),
                **split_params(meta["split"]),
                "duplicates": meta["duplicates"],
                "pii_scan": cfg.etl.pii_scan,
            },
            metrics={**counts, "reject_rate": meta["reject_rate"]},
            tags={
                "relay.dataset_digest": dataset.digest,
                "relay.dataset_path": str(dataset.path),
                "relay.node_ids": ",".join(dataset.node_ids),
                "relay.build_key": dataset.meta["build_key"],
                "relay.etl_reused": str(dataset.reused).lower(),
                NOTE_TAG: _note(dataset),
            },
        )
        tracker.log_tables(
            run_id,
            {
                REJECTS_TABLE: by_column(meta["reasons"], "reason", "rows"),
                PII_TABLE: by_column(meta["pii_findings"], "finding", "rows"),
            },
        )
        tracker.log_artifact(run_id, dataset.path / META)
        tracker.log_artifact(run_id, dataset.path / PROFILE)
        tracker.log_input(
            run_id,
            name=dataset.meta["name"],
            digest=dataset.digest,
            source={"uri": dataset.path.as_uri()},
            context="etl-output",
            schema=dataset.mlflow_schema(),
            profile=dataset.meta["counts"],
        )
    dataset.run_id = run_id
    return dataset


def build(cfg: RelayConfig, reuse: bool = True) -> Dataset:
    """The dataset for this config: the published one with the same build key, else a new build.

    `reuse=False` (reproduce) always reads the raw files again; an identical result still
    lands in the existing folder, a different one beside it.
    """
    import ray

    state = Path(cfg.runtime.state_dir).resolve()
    source = cfg.data.source
    planted: dict[str, int] | None = None
    if isinstance(source, SyntheticSource):
        paths, planted = synthetic.generate(source, cfg.seed, state / "raw")
        files = [RawFile(uri=str(p), format=source.format, size=p.stat().st_size) for p in paths]
    else:
        files = resolve_files(source)
    pii_key = _pii_key(cfg)
    files = buildkey.with_sha256(files)
    key_input = buildkey.key_input(cfg, files, pii_key, DIGEST_FORMAT)
    key = buildkey.build_key(key_input)
    root = state / "datasets" / cfg.name
    published = _published(root, key)
    if reuse and published is not None:
        os.utime(published / META)  # "newest dataset" means the one this run used
        dataset = Dataset.open(published)
        dataset.reused = True
        return dataset
    names = [c.name for c in cfg.data.columns]
    undeclared = [check_columns(f, names, cfg.etl.unknown_columns) for f in files]

    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    with _removed_on_error(tmp):
        for sub in (*SPLITS, REJECTS):
            (tmp / sub).mkdir(parents=True)
        duplicates = dedupe.duplicate_rows(files, cfg, tmp / "_ids")
        bounds = splits.time_boundaries(files, cfg, tmp / "_times")
        # SPREAD: one file per node first, so a multi-node cluster shares the work.
        task = ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")(process_file)
        refs = [
            task.remote(f, i, str(tmp), cfg, pii_key, duplicates[i], undeclared[i], bounds)
            for i, f in enumerate(files)
        ]
        try:
            parts: list[FilePart] = _gathered(refs, "etl: files read and validated")
        except DataQualityError as exc:  # a file refused whole: its message, not Ray's traceback
            raise DataQualityError(str(getattr(exc, "cause", exc))) from None
    try:
        meta = summarise(cfg, parts, planted, bounds)
    except DataQualityError:
        tmp.rename(root / f"failed-{tmp.name.removeprefix('.tmp-')}")
        raise
    meta.update(build_key=key, build_key_input=key_input)
    final = root / f"{key[:12]}-{meta['digest'][:12]}"
    if final.exists():  # same inputs, same rows: a rebuild (or a concurrent run) matched
        shutil.rmtree(tmp)
        os.utime(final / META)
    else:
        profile = meta.pop("profile")
        (tmp / PROFILE).write_text(json.dumps(profile, indent=2, default=str))
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
        tmp.rename(final)  # atomic publish: a dataset folder is complete or absent
    dataset = Dataset.open(final)
    dataset.node_ids = sorted({p.node_id for p in parts})
    return dataset


def _gathered(refs: list[Any], label: str) -> list[Any]:
    """`ray.get(refs)`, counting each task as it finishes on a bar when one is drawn (the
    first failure raises at once, as `ray.get` would)."""
    import ray

    if not bars.drawn():
        return ray.get(refs)
    with bars.counting(label, len(refs)) as advance:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)
            advance(len(done))
    return ray.get(refs)


@contextmanager
def _removed_on_error(tmp: Path) -> Iterator[None]:
    """A build that fails before its rows are summarised leaves nothing behind."""
    try:
        yield
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _published(root: Path, key: str) -> Path | None:
    """The newest complete dataset folder built from exactly these inputs."""
    found = [
        p.parent
        for p in root.glob(f"{key[:12]}-*/{META}")
        if json.loads(p.read_text()).get("build_key") == key
    ]
    return max(found, key=lambda p: (p / META).stat().st_mtime, default=None)


def _note(dataset: Dataset) -> str:
    """The run's description in the MLflow UI: built or reused, and from what."""
    counts = dataset.meta["counts"]
    what = (
        "Reused: raw files (sha256), declared schema and ETL settings unchanged since the "
        "build of this folder; no row was read."
        if dataset.reused
        else f"Built from {len(dataset.meta['manifest'])} raw file(s)."
    )
    return (
        f"{what} {counts['rows_out']} rows out, {counts['rows_rejected']} quarantined. "
        f"Dataset {dataset.digest[:16]} at {dataset.path}."
    )


def by_column(counts: dict[str, int], kind: str, value: str) -> dict[str, list[Any]]:
    """`{"age:type": 14}` as table columns: column, what, count (one row per pair)."""
    pairs = [(*key.split(":", 1), n) for key, n in counts.items()]
    columns, what, numbers = zip(*pairs, strict=True) if pairs else ((), (), ())
    return {"column": list(columns), kind: list(what), value: list(numbers)}


def split_params(split: dict[str, Any]) -> dict[str, Any]:
    """The split's key and time boundaries as MLflow params of their own, to filter runs by."""
    params = {"split_by": split["by"], "split_key": split["key"]}
    if split["key_column"]:
        params["split_key"] += f":{split['key_column']}"
    if split["by"] == "time":
        params.update(split_val_from=split["val_from"], split_test_from=split["test_from"])
    return params


def summarise(
    cfg: RelayConfig,
    parts: list[FilePart],
    planted: dict[str, int] | None,
    bounds: splits.Boundaries | None = None,
) -> dict[str, Any]:
    """Merge the per-file summaries; enforce the reject-rate and PII-scan policies."""
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    found_pii: Counter[str] = Counter()
    moments: dict[str, list[float]] = {}
    category_counts: dict[str, dict[str, Counter[str]]] = {}
    hashes: dict[str, list[int]] = {}
    profile = parts[0].profile
    for i, part in enumerate(parts):
        counts.update(part.counts)
        reasons.update(part.reasons)
        found_pii.update(part.pii)
        featurestats.add_moments(moments, part.moments)
        featurestats.add_counts(category_counts, part.category_counts)
        for split, (rows, sum0, sum1) in part.hashes.items():
            old = hashes.get(split, [0, 0, 0])
            hashes[split] = [old[0] + rows, (old[1] + sum0) % 2**64, (old[2] + sum1) % 2**64]
        if i:
            profile.merge(part.profile)
    if counts["rows_in"] != counts["rows_out"] + counts["rows_rejected"]:
        raise RuntimeError(f"ETL lost rows: {dict(counts)}")  # a bug, never a data problem
    reject_rate = counts["rows_rejected"] / max(counts["rows_in"], 1)
    samples = [s for part in parts for s in part.samples]
    if reject_rate > cfg.etl.max_reject_rate:
        raise DataQualityError(reject_report(counts, reasons, samples, cfg.etl.max_reject_rate))
    if found_pii and cfg.etl.pii_scan == "fail":
        raise DataQualityError(
            "undeclared personal data found: "
            + ", ".join(f"{k} ({v} values)" for k, v in sorted(found_pii.items()))
            + ". Declare the column with role: pii, fix the data, or set etl.pii_scan: warn"
        )
    for finding, count in sorted(found_pii.items()):
        log.warning("undeclared personal data: %s in %d values", finding, count)
    duplicates = dedupe.policy(cfg)
    if counts["duplicate_rows"] and duplicates == "keep":
        log.info("%d duplicate rows kept (etl.duplicates: keep)", counts["duplicate_rows"])
    digest_input = {
        "format": DIGEST_FORMAT,
        "schema": [[f.name, str(f.type)] for f in output_schema(cfg)],
        "rejects_schema": [[f.name, str(f.type)] for f in rejects_schema(cfg)],
        "splits": {k: hashes[k] for k in sorted(hashes)},
    }
    digest = hashlib.sha256(json.dumps(digest_input, sort_keys=True).encode()).hexdigest()
    return {
        "name": cfg.name,
        "digest": digest,
        "digest_input": digest_input,
        "id_column": cfg.data.id.name if cfg.data.id is not None else None,
        "duplicates": duplicates,
        "counts": dict(counts),
        "reasons": dict(sorted(reasons.items())),
        "reject_rate": reject_rate,
        "sample_rejects": samples[:5],
        "pii_findings": dict(sorted(found_pii.items())),
        "split": splits.record(cfg, bounds),
        "seed": cfg.seed,
        "manifest": [part.manifest for part in parts],
        "undeclared_columns": sorted({c for part in parts for c in part.undeclared}),
        "slow_path_files": {p.manifest["path"]: p.slow_path for p in parts if p.slow_path},
        "planted_defects": planted,
        "features": featurestats.feature_spec(cfg, moments, category_counts),
        "input_schema": featurestats.input_schema(cfg),
        "profile": profile.report(),
    }


def reject_report(
    counts: Counter[str], reasons: Counter[str], samples: list[dict[str, Any]], limit: float
) -> str:
    """One screen: the rate, the top reasons and a few rejected rows as they arrived."""
    rate = counts["rows_rejected"] / max(counts["rows_in"], 1)
    lines = [
        f"{counts['rows_rejected']} of {counts['rows_in']} rows rejected "
        f"({rate:.1%} > etl.max_reject_rate {limit:.1%}).",
        "Top reasons: " + ", ".join(f"{k} ({v})" for k, v in reasons.most_common(5)),
        "Sample rejects:",
    ]
    for sample in samples[:5]:
        where = f"{sample.get('_source')} row {sample.get('_row')}"
        values = {k: v for k, v in sample.items() if not k.startswith("_")}
        lines.append(f"  {where}: {sample.get('_reasons')}  {json.dumps(values)[:160]}")
    return "\n".join(lines)


def find_dataset(target: Path) -> Path:
    """A dataset folder, or the newest dataset published for a pipeline config."""
    from cluster.configfile import load_config

    if (target / META).is_file():
        return target
    if target.is_dir():
        raise ConfigError(f"{target} is not a dataset folder (no {META})")
    cfg = load_config(target)
    root = Path(cfg.runtime.state_dir) / "datasets" / cfg.name
    found = sorted(root.glob(f"*/{META}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(
            f"no dataset for '{cfg.name}' under {root}: run relay run {target} --until etl first"
        )
    return found[-1].parent


def _pii_key(cfg: RelayConfig) -> bytes | None:
    if cfg.etl.pii != "hash" or not cfg.data.by_role(Role.pii):
        return None
    secret = os.environ.get(cfg.etl.pii_key_env)
    if not secret:
        raise ConfigError(
            f"etl.pii is 'hash' but the secret environment variable {cfg.etl.pii_key_env} is "
            "not set: export it (a long random string) or set etl.pii: drop"
        )
    return secret.encode()
