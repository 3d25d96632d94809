"""relay's records from Python, for a notebook or a script: what `relay runs`, `relay lineage`
and `relay monitor` read, as typed values instead of CLI output to parse.

    from jobs.client import Relay
    relay = Relay(config="configs/demo.yaml")  # or Relay(tracking_uri="http://...")
    relay.runs(limit=5)[0].model_version
    relay.lineage("models:/credit-default@champion")["raw_files"]
    relay.monitor_reports("credit-default")[0]["versions"]

Reads only: it never creates a store (a missing one is a ClusterUnreachableError).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.configfile import load_config


def store_uri(tracking_uri: str | None = None, config: str | Path | None = None) -> str:
    """The store to read: `tracking_uri`, the config's, $MLFLOW_TRACKING_URI, else the sqlite
    store `relay run` keeps in .relay."""
    from cluster.tracking.tracker import tracking_uri as config_uri

    return (
        tracking_uri
        or (config_uri(load_config(Path(config))) if config else None)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path('.relay/mlflow.db').resolve()}"
    )


@dataclass(frozen=True)
class PipelineRun:
    """One `relay run`, as the pipeline run records it."""

    run_id: str
    name: str
    status: str
    started: str | None
    dataset_digest: str
    model_version: int | None
    best: dict[str, float] = field(default_factory=dict)  # best_val_* of the search


class Relay:
    """A read-only view of one tracking store: its pipeline runs, lineage and monitor runs."""

    def __init__(self, tracking_uri: str | None = None, config: str | Path | None = None):
        from cluster.tracking.reader import read_client

        self.tracking_uri = store_uri(tracking_uri, config)
        self.client = read_client(self.tracking_uri)

    def runs(self, limit: int = 10) -> list[PipelineRun]:
        """Pipeline runs, newest first, across the store's experiments."""
        from jobs.pipeline.lineage import iso_time, tag_of

        return [
            PipelineRun(
                run_id=r.info.run_id,
                name=r.info.run_name,
                status=r.info.status,
                started=iso_time(r.info.start_time),
                dataset_digest=r.data.tags.get("relay.dataset_digest", ""),
                model_version=tag_of(r, "relay.model_version", int),
                best={k: v for k, v in r.data.metrics.items() if k.startswith("best_val")},
            )
            for r in self._search("pipeline", limit)
        ]

    def lineage(self, target: str) -> dict[str, Any]:
        """The chain from a model version (`models:/name@alias`, `name/3`, a run id) back to
        the raw files: what `relay lineage TARGET --json` prints."""
        from jobs.pipeline import lineage

        return lineage.chain(self.client, *lineage.model_of(self.client, target))

    def monitor_reports(self, model: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """`relay monitor`'s reports, newest first (each with its `run_id`), for one model or
        all."""
        wanted = f" and tags.`relay.model_name` = '{model}'" if model else ""
        reports = []
        for run in self._search("monitor", limit, wanted):
            local = self.client.download_artifacts(run.info.run_id, "monitor_report.json")
            reports.append({**json.loads(Path(local).read_text()), "run_id": run.info.run_id})
        return reports

    def _search(self, stage: str, limit: int, extra: str = "") -> list[Any]:
        from cluster.tracking.tracker import STAGE_TAG

        experiments = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(
            experiments,
            filter_string=f"tags.`{STAGE_TAG}` = '{stage}'{extra}",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
