"""A small client for a relay endpoint (stdlib only: usable where relay's deps are not).

client = Client("http://127.0.0.1:8000/credit", token=open(".relay/serve_token").read())
client.predict({"age": 41, ...})["prediction"]
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any


class EndpointError(Exception):
    """The endpoint answered with an error status; `detail` is its explanation. `from_app`:
    relay's app answered (JSON), not the ingress in front of it."""

    def __init__(self, status: int, detail: Any, from_app: bool = True):
        super().__init__(f"HTTP {status}: {json.dumps(detail)}")
        self.status, self.detail, self.from_app = status, detail, from_app

    @property
    def transient(self) -> bool:
        """Worth a retry: a server error, or a 404 from the ingress itself (HAProxy answers
        one for a moment after it restarts, before Serve hands it the routes; relay's own
        404s are JSON, and a wrong URL still fails after the retries)."""
        return self.status >= 500 or (self.status == 404 and not self.from_app)


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff_s: float = 0.2,
    ):
        self.base_url = base_url.rstrip("/").removesuffix("/predict")
        self.token = token.strip() if token else None
        self.timeout, self.retries, self.backoff_s = timeout, retries, backoff_s
        self.retried = 0  # requests that needed a retry, for callers that monitor

    def predict(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._call("/predict", record)

    def predict_batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("/predict/batch", {"records": records})

    def schema(self) -> dict[str, Any]:
        return self._call("/schema")

    def health(self) -> dict[str, Any]:
        return self._call("/healthz")

    def _call(self, route: str, body: Any = None) -> dict[str, Any]:
        for attempt in range(self.retries):
            try:
                return self._once(route, body)
            # HTTPException: an answer cut off mid-body (IncompleteRead), as when the replica
            # that was sending it is killed; predictions are reads, so a retry is safe
            except (EndpointError, OSError, http.client.HTTPException) as exc:
                if isinstance(exc, EndpointError) and not exc.transient:
                    raise  # the request itself is wrong: retrying cannot help
                self.retried += 1
                time.sleep(self.backoff_s * 2**attempt)
        return self._once(route, body)

    def _once(self, route: str, body: Any) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + route, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                detail, from_app = json.loads(text).get("detail", text), True
            except (ValueError, AttributeError):
                detail, from_app = text, False
            raise EndpointError(exc.code, detail, from_app) from None


def get_json(url: str, body: Any = None, timeout: float = 30.0, token: str | None = None) -> Any:
    """GET (or POST `body` as JSON) and decode; HTTP errors raise with the server's message."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
