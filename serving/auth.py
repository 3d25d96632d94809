"""Bearer-token auth for the prediction routes.

The token reaches replicas through an environment variable (a Kubernetes secretKeyRef) or a
file (local runs), never through the app's args, which Serve shows on its dashboard.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from cluster.errors import ServingError


@dataclass(frozen=True)
class TokenCheck:
    token: str | None  # None: auth disabled

    @classmethod
    def load(cls, mode: str, env: str, file: str | None) -> TokenCheck:
        if mode == "none":
            return cls(None)
        token = os.environ.get(env) or (_read(file) if file else None)
        if not token:
            raise ServingError(
                f"serve.auth is token but neither ${env} nor a token file "
                f"({file or 'serve.token_file unset'}) holds a token"
            )
        return cls(token)

    def check(self, credentials: Any) -> None:
        """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
        if self.token is None:
            return
        if credentials is None or not credentials.credentials:
            raise HTTPException(
                status_code=401,
                detail="missing bearer token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), self.token.encode()):
            raise HTTPException(status_code=403, detail="invalid bearer token")


def _read(file: str) -> str | None:
    path = Path(file)
    return path.read_text().strip() if path.is_file() else None
