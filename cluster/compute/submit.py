"""`relay submit` and `relay jobs`: the pipeline as a Ray job, through the Jobs API, with a token.

The entrypoint is the same `python -m jobs.pipeline --config ...` a user can pass to
`ray job submit` by hand; relay adds the working dir (the project, minus state, data and venv
folders), the tracking URI, the project's git commit, dirty flag and diff hash, and a
submission id, which the pipeline records as lineage.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.compute import localcluster
from cluster.errors import ClusterUnreachableError, ConfigError, JobFailedError, RelayError
from cluster.tracking.tracker import CREDENTIALS_ENV, SUBMITTED_ENV, code_env

# Never uploaded: state (datasets, stores, checkpoints), raw data, environments, caches.
EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    ".relay",
    "data",
    "mlruns",
    "mlartifacts",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    "build",
    "dist",
]
SUBMISSION_ENV = SUBMITTED_ENV  # the job's runs say they came through `relay submit`
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class Target:
    """Where the Jobs API is and the token it wants (None: the cluster has no token auth)."""

    url: str
    token: str | None

    @classmethod
    def resolve(cls, address: str | None, state_dir: str, token_file: Path | None = None) -> Target:
        """--address, else the cluster `relay cluster up` recorded, else RAY_API_SERVER_ADDRESS.

        The token: --token-file, else RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH, else the recorded
        cluster's own token when submitting to that cluster.
        """
        record = localcluster.recorded(state_dir)
        url = address or (record or {}).get("dashboard_url")
        url = url or os.environ.get("RAY_API_SERVER_ADDRESS")
        if not url:
            raise ConfigError(
                "no Ray cluster to submit to: pass --address http://<head>:8265, set "
                "RAY_API_SERVER_ADDRESS, or start one with `relay cluster up`"
            )
        if not url.startswith(("http://", "https://")):
            url = f"http://{url}"
        token = _read(token_file) if token_file else os.environ.get("RAY_AUTH_TOKEN")
        if token is None and os.environ.get("RAY_AUTH_TOKEN_PATH"):
            token = _read(Path(os.environ["RAY_AUTH_TOKEN_PATH"]))
        if token is None and record and record["dashboard_url"].rstrip("/") == url.rstrip("/"):
            token = _read(Path(record["token_path"]))
        return cls(url=url.rstrip("/"), token=token)

    def client(self) -> Any:
        """A JobSubmissionClient; 401/403/no answer become one clear message."""
        from ray.job_submission import JobSubmissionClient

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            return JobSubmissionClient(self.url, headers=headers)
        except Exception as exc:  # the SDK raises bare RuntimeError/ConnectionError
            raise self._explain(exc) from None

    def _explain(self, exc: Exception) -> RelayError:
        text = str(exc)
        # Ray's SDK words 401/403 as "Authentication required/failed" (ray 2.58).
        if "Authentication required" in text or "401" in text:
            return ClusterUnreachableError(
                f"the Ray cluster at {self.url} uses token auth and no token was sent: pass "
                "--token-file, or set RAY_AUTH_TOKEN (the token `relay cluster up` generated is "
                "in <state_dir>/cluster/auth_token)"
            )
        if "Authentication failed" in text or "403" in text:
            return ClusterUnreachableError(f"the Ray cluster at {self.url} refused the token")
        return ClusterUnreachableError(f"the Ray Jobs API at {self.url} did not answer: {text}")


def entrypoint(config: str, until: str = "deploy", overrides: dict[str, str] | None = None) -> str:
    """The command the job runs, usable verbatim with `ray job submit -- ...`."""
    parts = ["python", "-m", "jobs.pipeline", "--config", config, "--json"]
    if until != "deploy":
        parts += ["--until", until]
    for key, value in (overrides or {}).items():
        parts += ["--set", f"{key}={value}"]
    return shlex.join(parts)


def submit(
    target: Target,
    config: Path,
    *,
    project: Path,
    tracking_uri: str | None,
    until: str = "deploy",
    overrides: dict[str, str] | None = None,
    credentials_file: str | None = None,
) -> str:
    """Upload the project and start the pipeline on the cluster; return the submission id.

    The tracking server's credentials travel as a file path (the job's runtime env is visible
    to anyone who can list jobs): fine on one machine or a shared mount; elsewhere set
    MLFLOW_TRACKING_USERNAME/PASSWORD on the nodes (the Kubernetes manifests do).
    """
    project = project.resolve()
    try:
        relative = config.resolve().relative_to(project)
    except ValueError:
        raise ConfigError(
            f"{config} is outside the project folder {project} that is uploaded as the job's "
            "working dir: move it under the project or pass --project"
        ) from None
    submission_id = f"relay-{uuid.uuid4().hex[:12]}"
    env = {SUBMISSION_ENV: submission_id, "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(code_env(project))  # `.git` is not uploaded: the job records this commit
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if credentials_file:
        env[CREDENTIALS_ENV] = str(Path(credentials_file).resolve())
    client = target.client()
    try:
        return client.submit_job(
            entrypoint=entrypoint(str(relative), until, overrides),
            submission_id=submission_id,
            runtime_env={"working_dir": str(project), "excludes": EXCLUDES, "env_vars": env},
            metadata={"relay.config": str(relative)},
        )
    except Exception as exc:
        raise target._explain(exc) from None


def follow(
    target: Target,
    job_id: str,
    on_logs: Callable[[str], None],
    on_status: Callable[[str, float], None],
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Stream the job's logs until it ends; return its final info."""
    client = target.client()
    began, shown = time.monotonic(), 0
    while True:
        info = client.get_job_info(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            on_logs(logs[shown:])
            shown = len(logs)
        result = describe(info)
        on_status(result["status"], time.monotonic() - began)
        if result["status"] in TERMINAL:
            return result
        time.sleep(poll_s)


def describe(info: Any) -> dict[str, Any]:
    status = info.status.value if hasattr(info.status, "value") else str(info.status)
    return {
        "submission_id": info.submission_id,
        "status": status,
        "entrypoint": info.entrypoint,
        "message": info.message,
        "driver_exit_code": getattr(info, "driver_exit_code", None),
        "start_time": info.start_time,
        "end_time": info.end_time,
    }


def check_finished(result: dict[str, Any]) -> None:
    if result["status"] != "SUCCEEDED":
        raise JobFailedError(
            f"job {result['submission_id']} ended {result['status']} (driver exit code "
            f"{result['driver_exit_code']}): {result['message']}. Logs: relay jobs logs "
            f"{result['submission_id']}"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
