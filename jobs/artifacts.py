"""What one stage hands the next: below every stage, so no stage imports another for a type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from cluster.tracking.tracker import Tracker
    from serving.model import Predictor

META = "dataset.json"  # a dataset folder's metadata
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}  # MLflow's names
MLFLOW_TYPES = {  # Arrow type -> MLflow column type, for the split files' columns
    "int64": "long",
    "int32": "integer",
    "double": "double",
    "float": "float",
    "bool": "boolean",
    "string": "string",
    "large_string": "string",
}
PROFILE = "profile.json"  # its per-column profile


@dataclass
class Dataset:
    """A published dataset, as later stages see it."""

    path: Path
    meta: dict[str, Any]
    run_id: str | None = None  # the etl run that produced or reused it
    node_ids: list[str] = field(default_factory=list)  # Ray nodes its file tasks ran on
    reused: bool = False  # published by an earlier run with the same build key: nothing was read

    @property
    def digest(self) -> str:
        return self.meta["digest"]

    def split(self, name: str) -> pa.Table:
        return pq.read_table(self.path / name)

    def mlflow_schema(self) -> dict[str, Any]:
        """The split files' columns as MLflow's dataset schema (`mlflow_colspec`), which the
        UI's dataset drawer reads (relay's own schema JSON showed as "Unrecognized")."""
        nullable = {c["name"]: c["nullable"] for c in self.meta["input_schema"]}
        columns = [
            {"type": mlflow_type(kind), "name": name, "required": not nullable.get(name, False)}
            for name, kind in self.meta["digest_input"]["schema"]
        ]
        return {"mlflow_colspec": columns}

    def log_splits(
        self, tracker: Tracker, run_id: str, contexts: dict[str, str] = SPLIT_CONTEXTS
    ) -> None:
        """The splits as MLflow dataset inputs of a run that used them (`training`,
        `validation`, `test`), so the UI traces a model's run to its data."""
        for split, context in contexts.items():
            tracker.log_input(
                run_id,
                name=f"{self.meta['name']}-{split}",
                digest=self.digest,
                source={"uri": (self.path / split).as_uri()},
                context=context,
                schema=self.mlflow_schema(),
                profile={"num_rows": self.meta["counts"][f"rows_{split}"]},
            )

    @classmethod
    def open(cls, path: Path) -> Dataset:
        return cls(path=path, meta=json.loads((path / META).read_text()))


@dataclass
class TuneOutcome:
    """The winning trial, as evaluate and register need it."""

    run_id: str
    best_run_id: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    checkpoint_path: str
    trials: int
    wall_seconds: float = 0.0
    overhead_ratio: float = 0.0  # wall time / (training time spread over the trial slots)
    family: str = "mlp"  # the winning trial's model family


@dataclass
class Evaluation:
    run_id: str
    metrics: dict[str, float]
    spec: dict[str, Any]
    files: dict[str, bytes]  # the bundle's weight files, in the family's format
    groups: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)

    def predictor(self) -> Predictor:
        from serving.model import Predictor

        return Predictor(self.spec, self.files)


@dataclass
class Registered:
    name: str
    version: int
    sha256: str
    run_id: str
    alias: str
    promoted: bool = True
    gates: dict[str, Any] = field(default_factory=dict)  # gates.report.record(...)


@dataclass
class Deployment:
    run_id: str
    app_name: str
    endpoint: str  # base URL: <endpoint>/predict, <endpoint>/schema, <endpoint>/docs
    token_file: str | None = None  # where clients find the bearer token (None: env or no auth)


def mlflow_type(arrow: str) -> str:
    """An Arrow type's name as MLflow's column type (timestamps: datetime; others: string)."""
    return "datetime" if arrow.startswith("timestamp") else MLFLOW_TYPES.get(arrow, "string")
