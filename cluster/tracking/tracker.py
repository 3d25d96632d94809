"""MLflow access with explicit run ids: no fluent global state, so it works the same in workers."""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from cluster import interrupts
from cluster.config import RelayConfig
from cluster.errors import ClusterUnreachableError, ConfigError, TrackingSpooledError
from cluster.redact import redacted
from cluster.tracking import retry, spool, values
from cluster.tracking.links import EXPERIMENT_KIND

PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "relay.stage"
PIPELINE_TAG = "relay.pipeline_run_id"
CREDENTIALS_ENV = "RELAY_TRACKING_CREDENTIALS_FILE"
T = TypeVar("T")
logger = logging.getLogger(__name__)


def use_credentials_file() -> None:
    """MLflow basic auth from the `user:password` file $RELAY_TRACKING_CREDENTIALS_FILE names
    (`relay tracking up --basic-auth` writes one). MLflow reads credentials from environment
    variables only; a file's path can travel in a Ray job's runtime env, a password must not.
    MLFLOW_TRACKING_USERNAME/PASSWORD already set win."""
    path = os.environ.get(CREDENTIALS_ENV)
    if not path or os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return
    try:
        user, colon, password = Path(path).read_text().strip().partition(":")
    except OSError as exc:
        raise ConfigError(f"${CREDENTIALS_ENV} names {path}: {exc.strerror}") from None
    if not (user and colon and password):
        raise ConfigError(f"${CREDENTIALS_ENV} names {path}, which does not hold user:password")
    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def tracking_uri(cfg: RelayConfig) -> str:
    """Config, then MLFLOW_TRACKING_URI, then a sqlite store under the state dir."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    state = Path(cfg.runtime.state_dir).resolve()
    return f"sqlite:///{state / 'mlflow.db'}"


def default_artifact_root(cfg: RelayConfig) -> str | None:
    """Local stores keep artifacts beside the database; a server decides for itself."""
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def unusable(uri: str, exc: BaseException) -> ClusterUnreachableError:
    """The one-line error for a store that answered with an error, with the fix for a 401/403."""
    hint = ""
    if "401" in str(exc) or "403" in str(exc):
        hint = (
            f"; the server wants credentials: set ${CREDENTIALS_ENV} (printed by "
            "`relay tracking up --basic-auth`) or MLFLOW_TRACKING_USERNAME/PASSWORD"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ClusterUnreachableError(
        f"MLflow tracking store {redacted(uri)} unusable: {redacted(first)}{hint}"
    )


class Tracker:
    """One MLflow client bound to one tracking URI and experiment.

    Writes retry with exponential backoff for up to `retry_seconds` while the server is down
    (connection errors, 5xx). Past that, with a spool folder, every write goes to a local journal
    in order and the run fails at its end with the command that uploads it (`relay tracking
    sync`); without one, the write fails with ClusterUnreachableError.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        spool_root: Path | None = None,
        retry_seconds: float = 30.0,
    ):
        from mlflow.tracking import MlflowClient

        retry.own_http_retries(uri)
        self.uri = uri
        self.experiment_id = experiment_id
        self.spool_root = spool_root
        self.retry_seconds = retry_seconds
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.journal = spool.Journal(spool_root, uri) if spool_root else None

    @property
    def settings(self) -> dict[str, Any]:
        """What another process needs to build the same Tracker (Tune callbacks are pickled)."""
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "spool_root": self.spool_root,
            "retry_seconds": self.retry_seconds,
        }

    @property
    def spooling(self) -> bool:
        return self.journal is not None and self.journal.count > 0

    @classmethod
    def open(
        cls,
        uri: str,
        experiment: str,
        artifact_root: str | None = None,
        spool_root: Path | None = None,
        retry_seconds: float = 30.0,
    ) -> Tracker:
        """Find or create the experiment; an unusable store is a ClusterUnreachableError."""
        import mlflow  # noqa: F401  (its import sets its loggers' level: quieten them after)

        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        tracker = cls(uri, "", spool_root, retry_seconds)
        client = tracker.client
        try:
            found = tracker._retry(lambda: client.get_experiment_by_name(experiment))
            tracker.experiment_id = (
                found.experiment_id
                if found
                else client.create_experiment(
                    experiment, artifact_location=artifact_root, tags=EXPERIMENT_KIND
                )
            )
            if found and not EXPERIMENT_KIND.items() <= found.tags.items():  # made before
                for key, value in EXPERIMENT_KIND.items():
                    client.set_experiment_tag(found.experiment_id, key, value)
        except ClusterUnreachableError:
            raise
        except Exception as exc:  # MLflow raises many types for an unreachable store
            raise unusable(uri, exc) from None
        return tracker

    @classmethod
    def from_config(cls, cfg: RelayConfig) -> Tracker:
        return cls.open(
            tracking_uri(cfg),
            cfg.tracking.experiment,
            default_artifact_root(cfg),
            spool.spool_root(cfg.runtime.state_dir),
            cfg.tracking.retry_seconds,
        )

    def start(
        self,
        name: str,
        parent: str | None = None,
        tags: Mapping[str, str] | None = None,
        stage: str | None = None,
    ) -> str:
        """Create a run: it needs the server's answer (the id), so it cannot be spooled."""
        if self.spooling:
            raise TrackingSpooledError(self.spooled_message())
        all_tags = {**source_tags(), **(tags or {})}
        if parent:
            all_tags[PARENT_TAG] = parent
        if stage:
            all_tags[STAGE_TAG] = stage
        run = self._retry(
            lambda: self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        )
        return run.info.run_id

    @contextmanager
    def run(
        self,
        name: str,
        parent: str | None = None,
        tags: Mapping[str, str] | None = None,
        stage: str | None = None,
        reopen: str | None = None,
    ) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED (re-raising) when the block raises.

        `reopen` continues an interrupted run (same id, status back to RUNNING) instead.
        Records spooled during the block fail it at its end, once everything is journalled.
        """
        run_id = None
        # sqlite: a signal during the start is raised once the id is known (an HTTP store's
        # retry waits must stay interruptible: a lost start is then the lesser harm)
        start = interrupts.held() if self.uri.startswith("sqlite:") else contextlib.nullcontext()
        try:
            with start:
                if reopen:
                    self._write({"op": "update_run", "run_id": reopen, "status": "RUNNING"})
                    run_id = reopen
                else:
                    run_id = self.start(name, parent, tags, stage)
            yield run_id
        except BaseException as exc:
            if run_id is None:
                raise
            try:
                self.set_terminated(run_id, "FAILED")
            except Exception as lost:
                # What stopped the block (a Ctrl-C, bad data) is what the user must see, not a
                # store that could not take the FAILED end (sqlite locked by the interrupted
                # write); the run stays RUNNING and `relay run --resume` reopens it.
                logger.warning("could not mark run %s FAILED: %s", run_id, redacted(str(lost)))
            if self.spooling and isinstance(exc, ClusterUnreachableError):
                # the message names the spool and counts every record, the FAILED end included
                raise TrackingSpooledError(self.spooled_message()) from None
            raise
        self.set_terminated(run_id, "FINISHED")
        if self.spooling:
            raise TrackingSpooledError(self.spooled_message())

    def set_terminated(self, run_id: str, status: str) -> None:
        end = int(time.time() * 1000)
        self._write({"op": "set_terminated", "run_id": run_id, "status": status, "end_time": end})

    def log(
        self,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Everything in one batched call, timestamped now (a replay keeps the timestamp).
        Values that are not text are written as JSON (`values.encode`)."""
        now = int(time.time() * 1000)
        self._write(
            {
                "op": "log_batch",
                "run_id": run_id,
                "metrics": [[k, float(v), now, step] for k, v in (metrics or {}).items()],
                "params": {k: values.encode(v) for k, v in (params or {}).items()},
                "tags": {k: values.encode(v) for k, v in (tags or {}).items()},
            }
        )

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._write_path("log_artifact", run_id, path, artifact_path)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        """The folder's contents under `artifact_path`."""
        self._write_path("log_artifacts", run_id, folder, artifact_path)

    def _write_path(self, op: str, run_id: str, path: Path, artifact_path: str | None) -> None:
        """A file or folder record, by absolute path (a spool copies it from there)."""
        self._write(
            {
                "op": op,
                "run_id": run_id,
                "path": str(Path(path).resolve()),
                "artifact_path": artifact_path,
            }
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory(prefix="relay-artifact-") as tmp:
            local = Path(tmp) / Path(artifact_file).name
            local.write_text(text)
            parent = Path(artifact_file).parent
            self.log_artifact(run_id, local, None if parent == Path(".") else str(parent))

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self.log_text(run_id, json.dumps(data, indent=2, default=str), artifact_file)

    def log_tables(self, run_id: str, tables: Mapping[str, Mapping[str, list[Any]]]) -> None:
        """Tables (file name -> columns of values) as MLflow's run tables: JSON in pandas'
        `split` layout, listed in the run's `mlflow.loggedArtifacts` tag, so the UI shows
        them as tables (`MlflowClient.load_table` reads them) rather than as one chart per
        value. All of a run's tables in one call: the tag is written once, not read back."""
        listed = []
        for name, columns in tables.items():
            rows = [list(row) for row in zip(*columns.values(), strict=True)]
            self.log_text(run_id, json.dumps({"columns": list(columns), "data": rows}), name)
            listed.append({"path": name, "type": "table"})
        self.log(run_id, tags={LOGGED_ARTIFACTS: json.dumps(listed)})

    def log_input(
        self,
        run_id: str,
        name: str,
        digest: str,
        source: dict[str, Any],
        context: str,
        schema: Any = None,
        profile: Any = None,
    ) -> None:
        """Record what a run consumed (a dataset, a model version) as an MLflow run input."""
        dataset = {
            "name": name,
            "digest": digest[:32],  # MLflow caps digests at 36 chars; keep the full one in a tag
            "source_type": "local" if "uri" in source else "relay",
            "source": json.dumps(source),
            "schema": None if schema is None else json.dumps(schema),
            "profile": None if profile is None else json.dumps(profile),
        }
        self._write({"op": "log_inputs", "run_id": run_id, "dataset": dataset, "context": context})

    def online(self, call: Callable[[], T]) -> T:
        """A call that must reach the store (a query, a registry write), retried like a write.
        It cannot be spooled: once writes are, it fails at once with the spool's message
        instead of waiting for the server again."""
        if self.spooling:
            raise TrackingSpooledError(self.spooled_message())
        return self._retry(call)

    def spooled_message(self) -> str:
        assert self.journal is not None and self.spool_root is not None
        return (
            f"MLflow tracking server {redacted(self.uri)} did not answer for "
            f"{self.retry_seconds:g} s; "
            f"{self.journal.count} tracking record(s) are kept in {self.journal.folder}. "
            "When the server is back, upload them with: relay tracking sync "
            f"--state-dir {self.spool_root.parent} --tracking-uri {redacted(self.uri)}"
        )

    def _write(self, record: dict[str, Any]) -> None:
        """Send a record; once the server stayed down past the window, journal it instead."""
        if self.spooling:
            assert self.journal is not None
            self.journal.append(record)
            return
        try:
            self._retry(lambda: spool.apply(self.client, record))
        except ClusterUnreachableError:
            if self.journal is None:
                raise
            logger.warning(
                "tracking server %s is down: spooling to %s",
                redacted(self.uri),
                self.journal.folder,
            )
            self.journal.append(record)

    def _retry(self, call: Callable[[], T]) -> T:
        if not self.uri.startswith("sqlite:"):
            return retry.retry(call, self.retry_seconds, self.uri)

        def whole() -> T:
            # a sqlite call cut by a KeyboardInterrupt kept the database locked (`interrupts`);
            # each attempt is held, not the waits between attempts
            with interrupts.held():
                return call()

        return retry.retry(whole, self.retry_seconds, self.uri)


# The code's git facts, for code that runs without its .git (a submitted job's working dir, an
# image): the submitter or the image build passes them; provenance_tags records them.
CODE_ENV = {
    "relay.git_commit": "RELAY_GIT_COMMIT",
    "relay.git_dirty": "RELAY_GIT_DIRTY",
    "relay.git_diff_sha256": "RELAY_GIT_DIFF_SHA256",
}


NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (markdown)
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # the run's tables, for the UI
SUBMITTED_ENV = "RELAY_SUBMISSION_ID"  # set in a job `relay submit` started


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's system tags behind the UI's Source and Created by columns: its fluent API sets
    them, the client relay writes through does not. The source is the command that ran
    (secrets redacted), a JOB when it came through `relay submit`."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if script and script != "__main__.py" and not script.startswith("-"):
        words = [script, *sys.argv[1:]]  # `relay run configs/demo.yaml`: the console script
    else:  # `python -m jobs.pipeline --config ...`: the module, as it was started
        words = [Path(sys.orig_argv[0]).name, *sys.orig_argv[1:]]
    command = " ".join(words)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    return {
        "mlflow.source.name": redacted(command)[:500],
        "mlflow.source.type": "JOB" if os.environ.get(SUBMITTED_ENV) else "LOCAL",
        "mlflow.user": user,
    }


def provenance_tags() -> dict[str, str]:
    """Where the code came from and what it ran on; a missing git repo is recorded, not fatal.

    The commit passed in CODE_ENV wins over git in the working dir: it describes the code that
    was uploaded or baked in, while git there finds nothing (`.git` is not uploaded) or, in an
    enclosing folder, another checkout.
    """
    import mlflow
    import pyarrow
    import ray
    import torch

    tags = {
        "relay.version": _relay_version(),
        "relay.python": platform.python_version(),
        "relay.ray_version": ray.__version__,
        "relay.torch_version": torch.__version__,
        "relay.mlflow_version": mlflow.__version__,
        "relay.pyarrow_version": pyarrow.__version__,
    }
    passed = {tag: os.environ[env] for tag, env in CODE_ENV.items() if os.environ.get(env)}
    if passed.get("relay.git_commit", "unknown") != "unknown":
        code = {**passed, "relay.git_source": "environment"}
    else:
        code = git_tags(Path.cwd()) or {"relay.git_commit": "unknown"}
    if code["relay.git_commit"] != "unknown":
        code["mlflow.source.git.commit"] = code["relay.git_commit"]
    return {**tags, **code}


def git_tags(folder: Path) -> dict[str, str]:
    """The commit, dirty flag and (when dirty) diff hash of the checkout at `folder`; {} when
    it is none. `code_env` carries them to where the code runs without its `.git`."""
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        dirty = bool(_git(folder, "status", "--porcelain", "--untracked-files=no"))
        tags = {"relay.git_commit": commit, "relay.git_dirty": str(dirty).lower()}
        if dirty:  # which uncommitted changes: two runs with the same hash ran the same code
            diff = _git(folder, "diff", "HEAD", "--binary")
            tags["relay.git_diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return tags


def code_env(folder: Path) -> dict[str, str]:
    """`git_tags(folder)` as the CODE_ENV variables provenance_tags reads."""
    return {CODE_ENV[tag]: value for tag, value in git_tags(folder).items()}


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout.strip()


def _relay_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("relay")
    except PackageNotFoundError:
        return "dev"
