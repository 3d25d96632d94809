"""Opening a tracking store to read it (`relay runs`, `relay lineage`, `relay reproduce`).

A read never creates a store (MLflow makes an empty sqlite database or folder on first use),
and a server that does not answer fails it in seconds: MLflow's own HTTP retries (7, with
backoff: minutes) are off, the request timeout is short, and one bounded retry window applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cluster.errors import ClusterUnreachableError
from cluster.tracking import retry
from cluster.tracking.tracker import unusable

RETRY_SECONDS = 3.0  # a server restarting gets this long; with the timeout, under 15 s in all
REQUEST_TIMEOUT_SECONDS = 10.0  # MLflow's default is 120 s per request


def local_store(uri: str) -> Path | None:
    """The file or folder a local store lives in (sqlite, file:, a plain path); None otherwise."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(uri) if not parsed.scheme else None


def read_client(uri: str) -> Any:
    """An MlflowClient on an existing store that answered one query."""
    from mlflow.tracking import MlflowClient

    path = local_store(uri)
    if path is not None and not path.exists():
        raise ClusterUnreachableError(
            f"no MLflow tracking store at {path.resolve()}: nothing was recorded there. "
            "Create one with `relay run CONFIG`, or name an existing store with "
            "--tracking-uri, --config or $MLFLOW_TRACKING_URI"
        )
    retry.own_http_retries(uri, REQUEST_TIMEOUT_SECONDS)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        retry.retry(lambda: client.search_experiments(max_results=1), RETRY_SECONDS, uri)
    except ClusterUnreachableError:
        raise
    except Exception as exc:  # a refused login, a database that is not MLflow's
        raise unusable(uri, exc) from None
    return client
