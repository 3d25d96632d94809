"""`relay tracking up|down`: an MLflow tracking server on loopback for jobs on a cluster.

Lean by default (one worker, background job execution off: ~4 s and ~400 MiB here, against
~18 s and 2.3 GiB for MLflow's defaults); artifacts are served through the server, so jobs
need only its URL. The state dir records the PID and URL; `down` stops exactly that process.
With basic auth, an admin password is generated into a 0600 `user:password` file that clients
name in $RELAY_TRACKING_CREDENTIALS_FILE; anyone else gets no permission.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cluster.errors import ClusterUnreachableError, ConfigError
from cluster.processes import stop_groups
from cluster.secrets import ensure_secret_file

RECORD = "server.json"
CREDENTIALS = "credentials"
ADMIN = "admin"
AUTH_CACHE_SECONDS = 60


def folder(state_dir: str) -> Path:
    return Path(state_dir).resolve() / "tracking"


def up(
    state_dir: str,
    port: int = 5000,
    host: str = "127.0.0.1",
    backend: str | None = None,
    basic_auth: bool = False,
) -> dict[str, Any]:
    """Start the server (or report the one already running) and wait until it answers."""
    root = folder(state_dir)
    running = status(state_dir)
    if running:
        if running.get("auth", "none") != ("basic" if basic_auth else "none"):
            raise ConfigError(
                f"a tracking server with auth {running.get('auth', 'none')} already runs from "
                f"{root} (pid {running['pid']}): `relay tracking down` it first"
            )
        return running
    root.mkdir(parents=True, exist_ok=True)
    backend = backend or f"sqlite:///{root / 'mlflow.db'}"
    command = server_command(host, port, backend, str(root / "artifacts"))
    env = {}
    if basic_auth:
        command += ["--app-name", "basic-auth"]
        env = _basic_auth(root)
    process = start(command, root / "server.log", env)
    record = {"pid": process.pid, "uri": f"http://{host}:{port}", "log": str(root / "server.log")}
    record["auth"] = "basic" if basic_auth else "none"
    if basic_auth:
        record["credentials"] = str(root / CREDENTIALS)
    wait_healthy(process, record["uri"], record["log"])
    (root / RECORD).write_text(json.dumps(record))
    return record


def server_command(host: str, port: int, backend: str, artifacts: str) -> list[str]:
    """`mlflow server`, lean: one worker (the job runner is off in `start`'s environment)."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return [
        str(mlflow),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
        "--workers",
        "1",
    ]


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """The server in a session of its own (stopped as a group), its output in `log`."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env},
            start_new_session=True,
        )


def wait_healthy(process: subprocess.Popen, uri: str, log: str) -> None:
    """Until the server answers; stopped, and an error naming its log, if it does not."""
    deadline = time.monotonic() + 90
    try:
        while not _healthy(uri):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ClusterUnreachableError(
                    f"mlflow server did not start on {uri} (port taken?); see {log}"
                )
            time.sleep(0.3)
    except BaseException:  # a Ctrl-C or SIGTERM too: no server left running without a record
        stop_groups([process.pid])
        raise


def status(state_dir: str) -> dict[str, Any] | None:
    """The recorded server if its process is alive and it answers, else None."""
    path = folder(state_dir) / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    alive = Path(f"/proc/{record['pid']}").exists() and _healthy(record["uri"])
    return record if alive else None


def down(state_dir: str) -> dict[str, Any]:
    """Stop the recorded server (its process group: gunicorn/uvicorn workers too)."""
    path = folder(state_dir) / RECORD
    if not path.exists():
        raise ConfigError(f"no tracking server recorded under {folder(state_dir)}")
    record = json.loads(path.read_text())
    stop_groups([record["pid"]])
    path.unlink()
    return record


def _basic_auth(root: Path) -> dict[str, str]:
    """MLflow's basic-auth app: the admin password and the session secret reach the server
    in its environment (never on its command line); the config holds neither.

    Its credential cache is on (MLflow's default is off): without it each request re-checks
    the password hash, a key derivation slow by design, and a run of the CI pipeline over
    the server took 149 s instead of 23. The cache lives in the server's one worker, which
    also handles any password change through the API, so such a change applies at once;
    one made behind its back (SQL on auth.db) applies within AUTH_CACHE_SECONDS."""
    credentials = ensure_secret_file(root / CREDENTIALS, prefix=f"{ADMIN}:")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": credentials.read_text().strip().partition(":")[2],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": ensure_secret_file(root / "session_secret")
        .read_text()
        .strip(),
    }


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
