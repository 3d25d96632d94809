"""Each input's drift over a replica's latest logged records, as a Prometheus gauge.

The inference log's writer hands every table it wrote to `LiveDrift.observe` (off the request
path). Per served version the latest `rows` records are kept; once there are `min_rows`, each
feature's score against the version's training reference, by the promotion gate's own code
(`serving.drift`), is set on `relay_feature_drift{model,version,feature}`. A replica scores
its own traffic only; `relay monitor` judges the whole log.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from serving import drift
from serving.inference_log import inputs_of

GAUGE = "relay_feature_drift"
TAGS = ("model", "version", "feature")


class LiveDrift:
    def __init__(
        self,
        model: str,
        method: str,
        rows: int,
        min_rows: int,
        set_gauge: Callable[[float, dict[str, str]], None],
    ):
        self.model, self.method, self.rows, self.min_rows = model, method, rows, min_rows
        self.set_gauge = set_gauge
        self.lock = threading.Lock()  # versions are added from the event loop
        self.specs: dict[int, dict[str, Any]] = {}
        self.recent: dict[int, deque[pa.Table]] = {}
        self.scores: dict[int, dict[str, float]] = {}  # the latest set, per version

    def serve(self, version: int, spec: dict[str, Any]) -> None:
        """A version this replica answers with (a reference to drift against, if it has one)."""
        if "reference" in spec:
            with self.lock:
                self.specs[version] = spec

    def only(self, versions: set[int]) -> None:
        """The versions served now: the others' gauges go to NaN (no longer measured), so a
        swapped-out version's last score does not stand as if it were current."""
        with self.lock:
            gone = [v for v in self.specs if v not in versions]
            for version in gone:
                del self.specs[version]
                self.recent.pop(version, None)
                for feature in self.scores.pop(version, {}):
                    tags = {"model": self.model, "version": str(version), "feature": feature}
                    self.set_gauge(float("nan"), tags)

    def observe(self, table: pa.Table) -> None:
        """Rows just written: update the windows they belong to and their gauges."""
        for version in pc.unique(table["model_version"]).to_pylist():
            with self.lock:
                spec = self.specs.get(version)
            if spec is None:
                continue
            part = table.filter(pc.equal(table["model_version"], version)).select(["inputs"])
            kept = self.recent.setdefault(version, deque())
            kept.append(part)
            while sum(t.num_rows for t in kept) - kept[0].num_rows >= self.rows:
                kept.popleft()
            window = pa.concat_tables(kept)
            window = window.slice(max(window.num_rows - self.rows, 0))
            if window.num_rows < self.min_rows:
                continue
            scores = drift.scores(spec["reference"], inputs_of(window, spec), self.method)
            self.scores[version] = scores
            for feature, score in scores.items():
                tags = {"model": self.model, "version": str(version), "feature": feature}
                self.set_gauge(score, tags)
