"""ETL: raw files -> validated, PII-safe, deterministically split Parquet dataset with a digest.

One Ray task per raw file reads, validates, quarantines, splits and writes its own output
(measured faster than a Ray Data pipeline for this shape of work; see ray-notes). The driver
only merges counts and partial statistics, so memory stays bounded by the largest file.

Layout of a published dataset (named by its digest, so re-runs reuse it):
    <state>/datasets/<name>/<digest[:16]>/{train,val,test,rejects}/part-NNNNN.parquet
    <state>/datasets/<name>/<digest[:16]>/dataset.json   (not part of the digest)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cluster.config import NUMERIC_TYPES, ColumnType, RelayConfig, Role, SyntheticSource
from cluster.digests import file_sha256, folder_sha256
from cluster.errors import ConfigError, DataQualityError
from cluster.tracking import Tracker
from jobs import synthetic
from jobs.sources import read_table, resolve_files
from jobs.validate import validate

SPLITS = ("train", "val", "test")
REJECTS = "rejects"
META = "dataset.json"


@dataclass
class Dataset:
    """A published dataset, as later stages see it."""

    path: Path
    meta: dict[str, Any]
    run_id: str | None = None  # the etl run that produced or reused it

    @property
    def digest(self) -> str:
        return self.meta["digest"]

    def split(self, name: str) -> pa.Table:
        return pq.read_table(self.path / name)

    @classmethod
    def open(cls, path: Path) -> Dataset:
        return cls(path=path, meta=json.loads((path / META).read_text()))


def run(cfg: RelayConfig, tracker: Tracker, parent: str | None) -> Dataset:
    """The stage: build (or reuse) the dataset and record it in an `etl` child run."""
    with tracker.run("etl", parent=parent, stage="etl") as run_id:
        dataset = build(cfg)
        meta = dataset.meta
        counts = meta["counts"]
        tracker.log(
            run_id,
            params={
                "source": cfg.data.source.kind,
                "files": len(meta["manifest"]),
                "pii": cfg.etl.pii,
                "split": json.dumps(meta["split"]),
            },
            metrics={
                **counts,
                "reject_rate": meta["reject_rate"],
                **{f"rejects.{k.replace(':', '.')}": v for k, v in meta["reasons"].items()},
            },
            tags={"relay.dataset_digest": dataset.digest, "relay.dataset_path": str(dataset.path)},
        )
        tracker.client.log_artifact(run_id, str(dataset.path / META))
        _log_input(tracker, run_id, dataset)
    dataset.run_id = run_id
    return dataset


def build(cfg: RelayConfig) -> Dataset:
    import ray

    state = Path(cfg.runtime.state_dir).resolve()
    source = cfg.data.source
    planted: dict[str, int] | None = None
    if isinstance(source, SyntheticSource):
        paths, planted = synthetic.generate(source, cfg.seed, state / "raw")
        files = [(p, source.format) for p in paths]
    else:
        files = resolve_files(source)
    pii_key = _pii_key(cfg)

    root = state / "datasets" / cfg.name
    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    for sub in (*SPLITS, REJECTS):
        (tmp / sub).mkdir(parents=True)
    task = ray.remote(num_cpus=1)(_process_file)
    parts = ray.get(
        [task.remote(str(p), fmt, i, str(tmp), cfg, pii_key) for i, (p, fmt) in enumerate(files)]
    )

    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for part in parts:
        counts.update(part["counts"])
        reasons.update(part["reasons"])
    if counts["rows_in"] != counts["rows_out"] + counts["rows_rejected"]:
        raise RuntimeError(f"ETL lost rows: {dict(counts)}")  # a bug, never a data problem
    reject_rate = counts["rows_rejected"] / max(counts["rows_in"], 1)
    if reject_rate > cfg.etl.max_reject_rate:
        kept = root / f"failed-{tmp.name.removeprefix('.tmp-')}"
        tmp.rename(kept)
        top = ", ".join(f"{k} ({v})" for k, v in reasons.most_common(5))
        raise DataQualityError(
            f"{counts['rows_rejected']} of {counts['rows_in']} rows rejected "
            f"({reject_rate:.1%} > etl.max_reject_rate {cfg.etl.max_reject_rate:.1%}). "
            f"Top reasons: {top}. Rejected rows with reasons: {kept / REJECTS}"
        )

    data_files = [str(p.relative_to(tmp)) for p in sorted(tmp.rglob("*.parquet"))]
    digest = folder_sha256(tmp, data_files)
    meta = {
        "name": cfg.name,
        "digest": digest,
        "counts": dict(counts),
        "reasons": dict(sorted(reasons.items())),
        "reject_rate": reject_rate,
        "split": cfg.etl.split.model_dump(),
        "seed": cfg.seed,
        "manifest": [part["manifest"] for part in parts],
        "undeclared_columns": sorted({c for part in parts for c in part["undeclared"]}),
        "planted_defects": planted,
        "features": feature_spec(cfg, [part["stats"] for part in parts]),
        "input_schema": input_schema(cfg),
        "files": data_files,
    }
    final = root / digest[:16]
    if final.exists():  # same input, same digest: the published copy is identical
        shutil.rmtree(tmp)
    else:
        (tmp / META).write_text(json.dumps(meta, indent=2))
        tmp.rename(final)  # atomic publish: a dataset folder is complete or absent
    return Dataset.open(final)


def _process_file(
    path: str, fmt: str, index: int, out: str, cfg: RelayConfig, pii_key: bytes | None
) -> dict[str, Any]:
    """Runs in a Ray task: one raw file in, its share of every split and its rejects out."""
    columns = cfg.data.columns
    names = [c.name for c in columns]
    table = read_table(Path(path), fmt, names)
    checked = validate(table, columns, source=Path(path).name)
    good = _apply_pii(checked.good, cfg, pii_key)
    good = good.drop_columns([c.name for c in cfg.data.by_role(Role.ignore)])

    bucket = split_buckets(good.column(cfg.data.id.name), cfg.seed)
    bounds = np.cumsum([cfg.etl.split.train, cfg.etl.split.val])
    masks = {
        "train": bucket < bounds[0],
        "val": (bucket >= bounds[0]) & (bucket < bounds[1]),
        "test": bucket >= bounds[1],
    }
    counts = {
        "rows_in": table.num_rows,
        "rows_out": good.num_rows,
        "rows_rejected": checked.rejects.num_rows,
    }
    name = f"part-{index:05d}.parquet"
    parts = {split: good.filter(pa.array(mask)) for split, mask in masks.items()}
    for split, part in parts.items():
        pq.write_table(part, Path(out) / split / name)
        counts[f"rows_{split}"] = part.num_rows
    pq.write_table(checked.rejects, Path(out) / REJECTS / name)
    return {
        "counts": counts,
        "reasons": dict(checked.reasons),
        "stats": _partial_stats(parts["train"], cfg),
        "undeclared": sorted(set(table.column_names) - set(names)),
        "manifest": {
            "path": path,
            "format": fmt,
            "bytes": os.path.getsize(path),
            "sha256": file_sha256(Path(path)),
            "rows": table.num_rows,
        },
    }


def split_buckets(ids: pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uniform [0, 1) value per id: the split depends on the id alone, not on file order."""
    salt = str(seed).encode()
    values = np.empty(len(ids), dtype=np.float64)
    for i, key in enumerate(ids.cast(pa.string()).to_pylist()):
        h = hashlib.blake2b(key.encode(), digest_size=8, key=salt).digest()
        values[i] = int.from_bytes(h, "big") / 2.0**64
    return values


def _apply_pii(table: pa.Table, cfg: RelayConfig, key: bytes | None) -> pa.Table:
    for column in cfg.data.by_role(Role.pii):
        if cfg.etl.pii == "drop":
            table = table.drop_columns([column.name])
            continue
        assert key is not None
        hashed = [
            None if v is None else hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest()
            for v in table.column(column.name).to_pylist()
        ]
        position = table.column_names.index(column.name)
        table = table.set_column(position, column.name, pa.array(hashed, type=pa.string()))
    return table


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


def _numeric_columns(cfg: RelayConfig) -> list[str]:
    cols = [
        c.name
        for c in cfg.data.by_role(Role.feature)
        if c.type in (*NUMERIC_TYPES, ColumnType.bool)
    ]
    if cfg.model.task == "regression":
        cols.append(cfg.data.label.name)
    return cols


def _partial_stats(train: pa.Table, cfg: RelayConfig) -> dict[str, list[float]]:
    """count, sum and sum of squares per numeric column: mergeable across files."""
    stats = {}
    for name in _numeric_columns(cfg):
        values = train.column(name).cast(pa.float64())
        total = pc.sum(values).as_py() or 0.0
        squares = pc.sum(pc.multiply(values, values)).as_py() or 0.0
        stats[name] = [float(pc.count(values).as_py()), float(total), float(squares)]
    return stats


def feature_spec(cfg: RelayConfig, partials: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Scaling statistics from the training split only, and vocabularies from the schema."""
    moments: dict[str, dict[str, float]] = {}
    for name in _numeric_columns(cfg):
        count = sum(p[name][0] for p in partials)
        total = sum(p[name][1] for p in partials)
        squares = sum(p[name][2] for p in partials)
        mean = total / count if count else 0.0
        var = max(squares / count - mean * mean, 0.0) if count else 0.0
        std = float(np.sqrt(var))
        moments[name] = {"mean": mean, "std": std if std > 1e-12 else 1.0}
    features = cfg.data.by_role(Role.feature)
    label = cfg.data.label
    return {
        "numeric": [
            {"name": c.name, **moments[c.name]} for c in features if c.type != ColumnType.category
        ],
        "categorical": [
            {"name": c.name, "vocab": list(c.categories or [])}
            for c in features
            if c.type == ColumnType.category
        ],
        "label": (
            {"name": label.name, "classes": list(label.categories or [])}
            if cfg.model.task == "classification"
            else {"name": label.name, **moments[label.name]}
        ),
    }


def input_schema(cfg: RelayConfig) -> list[dict[str, Any]]:
    """What a caller of the served model must send: the feature columns, as declared."""
    return [c.model_dump(mode="json", exclude={"role"}) for c in cfg.data.by_role(Role.feature)]


def _log_input(tracker: Tracker, run_id: str, dataset: Dataset) -> None:
    from mlflow.entities import Dataset as MlflowDataset
    from mlflow.entities import DatasetInput, InputTag

    entity = MlflowDataset(
        name=dataset.meta["name"],
        digest=dataset.digest[:32],  # MLflow caps digests at 36 chars; the full one is a tag
        source_type="local",
        source=json.dumps({"uri": dataset.path.as_uri()}),
        schema=json.dumps({"columns": dataset.meta["input_schema"]}),
        profile=json.dumps(dataset.meta["counts"]),
    )
    tracker.client.log_inputs(
        run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "etl-output")])]
    )


def main(argv: list[str] | None = None) -> None:
    from jobs.pipeline import stage_main

    stage_main("etl", argv)


if __name__ == "__main__":
    main()
