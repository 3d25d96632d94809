"""Fixtures of the fault tests: a real `mlflow server` each module can stop and restart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from cluster.errors import ConfigError
from cluster.tracking import server as trackingserver
from tests.conftest import free_port


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One server folder and port for the module (a start costs ~5-10 s here)."""
    state, port = str(tmp_path_factory.mktemp("server")), free_port()
    yield state, port
    with contextlib.suppress(ConfigError):  # a test left it down
        trackingserver.down(state)


@pytest.fixture
def server(server_home: tuple[str, int]) -> tuple[str, int, str]:
    """(state dir, port, uri), up: the running server, or restarted on the same port and store."""
    state, port = server_home
    return state, port, trackingserver.up(state, port)["uri"]
