"""Bounded retries for a tracking server that is down for a while (restart, network blip)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from cluster.errors import ClusterUnreachableError
from cluster.redact import redacted

T = TypeVar("T")
FIRST_PAUSE_SECONDS = 0.25
MAX_PAUSE_SECONDS = 2.0  # a server back is noticed within 2 s; a retry costs ~ms


def own_http_retries(uri: str, request_timeout: float | None = None) -> None:
    """Switch MLflow's HTTP retries off (7 with backoff 2: minutes) unless the user set them,
    so the retry window here is the whole wait rather than multiplied by MLflow's; with
    `request_timeout`, one request waits that long (MLflow's default: 120 s); and its printed
    run links off when the URI carries a password."""
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        if request_timeout is not None:
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", f"{request_timeout:g}")
    if redacted(uri) != uri:
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def unreachable(exc: BaseException) -> bool:
    """A connection error, a timeout or a 5xx anywhere in the chain: worth retrying."""
    import requests
    from mlflow.exceptions import RestException

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen, requests.ConnectionError | requests.Timeout | requests.exceptions.RetryError
        ):
            return True
        if isinstance(seen, requests.HTTPError) and seen.response is not None:
            return seen.response.status_code >= 500
        if isinstance(seen, RestException):
            return seen.get_http_status_code() >= 500
        seen = seen.__cause__ or seen.__context__
    return False


def retry(call: Callable[[], T], seconds: float, uri: str) -> T:
    """Call until it works, doubling the pause (capped), for `seconds` in all; other errors pass."""
    deadline = time.monotonic() + seconds
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return call()
        except Exception as exc:
            if not unreachable(exc):
                raise
            if time.monotonic() + pause > deadline:
                first = redacted(str(exc).splitlines()[0][:300])
                raise ClusterUnreachableError(
                    f"MLflow tracking server {redacted(uri)} did not answer for {seconds:g} s: "
                    f"{first}"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)
