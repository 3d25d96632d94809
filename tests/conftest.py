"""Shared fixtures: one real local Ray for the whole session, configs in a private state dir."""

from __future__ import annotations

import contextlib
import copy
import csv
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from cluster.compute.runtime import RayInfo, ray_session
from cluster.config import RelayConfig, RuntimeConfig, ServeConfig
from cluster.configfile import parse_config

ROOT = Path(__file__).resolve().parent.parent
CI_CONFIG = ROOT / "configs" / "ci.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ci_raw() -> dict[str, Any]:
    return yaml.safe_load(CI_CONFIG.read_text())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayInfo]:
    """The one Ray of the test session: 2 CPUs, no dashboard, a small object store, and the
    Serve flags relay starts its own Ray with (default `serve` config)."""
    with ray_session(RuntimeConfig(num_cpus=2, object_store_mb=256), serve=ServeConfig()) as info:
        yield info


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., RelayConfig]:
    """configs/ci.yaml with its state (datasets, MLflow store) under tmp_path and a free port."""

    def make(
        source: dict[str, Any] | None = None, base: dict[str, Any] | None = None, **override: Any
    ) -> RelayConfig:
        """`base` (default ci.yaml) with `override` merged in; `source` replaces the source."""
        raw = merge(
            base or ci_raw(),
            {"runtime": {"state_dir": str(tmp_path / "state")}, "serve": {"port": free_port()}},
        )
        raw = merge(raw, override)
        if source is not None:  # replaces the whole tagged source
            raw["data"]["source"] = source
        raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
        return parse_config(raw)

    return make


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@contextlib.contextmanager
def fluent_uri(tracking_uri: str) -> Iterator[None]:
    """MLflow's fluent API (`mlflow.*`, and client calls built on it such as `load_table`)
    pointed at `tracking_uri` for the block. set_tracking_uri also sets MLFLOW_TRACKING_URI,
    which every later subprocess of the test process would inherit: the env is restored too."""
    import mlflow

    before = mlflow.get_tracking_uri()
    with mock.patch.dict(os.environ):
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before)


def load_table(client: Any, run: Any, name: str) -> Any:
    """A run's table, read by MLflow's own `load_table` (a DataFrame)."""
    with fluent_uri(client.tracking_uri):
        return client.load_table(run.info.experiment_id, name, [run.info.run_id])


def default_sigint() -> None:
    """`preexec_fn` for a child a test sends SIGINT: SIGINT back to its default action. A shell
    starts background jobs with SIGINT ignored, children inherit that, and Python then never
    turns SIGINT into KeyboardInterrupt: the suite must pass however it is started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def live_stats() -> dict[int, list[str]]:
    """pid -> the /proc/<pid>/stat fields after "(comm)" (which may hold spaces): state,
    parent, process group, session, ...; zombies left out (they hold nothing but their pid)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                found[int(stat.parent.name)] = fields
    return found


def in_session(sid: int) -> set[int]:
    """The live processes of session `sid`: all that a child started with
    `start_new_session=True` left behind, also those in process groups of their own (Serve
    starts haproxy in one, so killing the child's group misses it)."""
    return {pid for pid, fields in live_stats().items() if int(fields[3]) == sid}


def descendants(root: int) -> set[int]:
    """The processes below `root` (children, theirs, ...), from /proc: what a test started.

    Ray's nodes are children of the driver that started them and its workers children of their
    raylet, so this finds a test's own Ray and never another one on the machine.
    """
    parents = {pid: int(fields[1]) for pid, fields in live_stats().items()}
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def ours_titled(title: bytes) -> set[int]:
    """This test process's descendants whose title starts with `title`: Ray names a worker by
    what it runs (`ray::process_file`, `ray::ImplicitFunc`, `ray::ServeReplica`)."""
    found = set()
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                found.add(pid)
    return found


class ProcessKiller:
    """SIGKILLs the first of this test's processes titled `title` once `ready()` holds, as a
    crash would: exactly the process doing the work, in the test's own Ray."""

    def __init__(
        self, title: bytes, ready: Callable[[], bool] = lambda: True, timeout: float = 120
    ):
        import threading

        self.title, self.ready, self.timeout = title, ready, timeout
        self.killed: list[int] = []
        self.thread = threading.Thread(target=self._hunt, daemon=True)

    def __enter__(self) -> ProcessKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()

    def _hunt(self) -> None:
        import time

        deadline = time.monotonic() + self.timeout
        while not self.killed and time.monotonic() < deadline:
            if self.ready():
                for pid in sorted(ours_titled(self.title)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                        return
            time.sleep(0.05)
