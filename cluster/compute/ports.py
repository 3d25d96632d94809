"""Free TCP ports for the processes relay starts on this machine."""

from __future__ import annotations

import socket

_HANDED_OUT: set[int] = set()  # ports this process already gave out


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on `host` and not handed out by this process before: the kernel hands a
    just-closed port out again, and two components of one node on one port kill it ("port ...
    used by other components", seen in CI)."""
    while True:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
