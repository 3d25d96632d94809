"""What an interrupted pipeline had done, so `relay run --resume` continues the same runs.

One small JSON file per pipeline name in the state folder, rewritten (atomically) after
each step. Resuming reuses every stage's MLflow run and Tune's own experiment folder;
finished stages are restored from what they recorded, and an interrupted register applies
the gate decision it had recorded and finds the version it had created. So a resumed run
leaves no duplicate MLflow runs, no re-logged metrics and no duplicate model version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ConfigError
from cluster.tracking.tracker import Tracker


@dataclass
class Progress:
    pipeline_run_id: str
    config_digest: str
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: bool = False

    def done(self, stage: str) -> bool:
        return bool(self.stages.get(stage, {}).get("done"))

    def run_id(self, stage: str) -> str | None:
        return self.stages.get(stage, {}).get("run_id")


def path_for(cfg: RelayConfig) -> Path:
    return Path(cfg.runtime.state_dir).resolve() / "runs" / f"{cfg.name}.json"


def load(cfg: RelayConfig) -> Progress | None:
    path = path_for(cfg)
    if not path.exists():
        return None
    return Progress(**json.loads(path.read_text()))


def save(cfg: RelayConfig, progress: Progress) -> None:
    path = path_for(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(progress), indent=2))
    os.replace(tmp, path)


def resumable(cfg: RelayConfig) -> Progress:
    """The interrupted run to continue, or a ConfigError that says why there is none."""
    found = load(cfg)
    if found is None:
        raise ConfigError(
            f"--resume: no interrupted run of '{cfg.name}' is recorded in "
            f"{path_for(cfg).parent}; run without --resume"
        )
    if found.finished:
        raise ConfigError(
            f"--resume: the last run of '{cfg.name}' ({found.pipeline_run_id}) "
            "finished; there is nothing to resume"
        )
    if found.config_digest != cfg.digest():
        raise ConfigError(
            f"--resume: the config changed since run {found.pipeline_run_id} "
            "was interrupted; resuming would mix two configs. Run without --resume"
        )
    return found


class StageRuns:
    """Opens each stage's MLflow run under the pipeline run, reopening an interrupted one."""

    def __init__(self, tracker: Tracker, cfg: RelayConfig, progress: Progress):
        self.tracker = tracker
        self.cfg = cfg
        self.progress = progress

    @property
    def parent(self) -> str:
        return self.progress.pipeline_run_id

    @contextmanager
    def open(self, stage: str) -> Iterator[str]:
        reopen = self.progress.run_id(stage)
        with self.tracker.run(stage, parent=self.parent, stage=stage, reopen=reopen) as run_id:
            self.progress.stages.setdefault(stage, {})["run_id"] = run_id
            save(self.cfg, self.progress)
            yield run_id

    def record(self, stage: str, **outputs: Any) -> None:
        """Keep what an unfinished stage has decided, so its resume does not decide again."""
        self.progress.stages.setdefault(stage, {}).update(**outputs)
        save(self.cfg, self.progress)

    def recorded(self, stage: str) -> dict[str, Any]:
        return self.progress.stages.get(stage, {})

    def finish(self, stage: str, **outputs: Any) -> None:
        self.record(stage, done=True, **outputs)
