"""What one stage hands the next: below every stage, so no stage imports another for a type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from serving.model import Predictor

META = "dataset.json"  # a dataset folder's metadata
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
