"""The ports relay gives the processes it starts (a node's components, an HAProxy) are
distinct (no Ray needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster.compute import ports


class Kernel:
    """A socket whose bind(0) gets the ports in `sequence`: the kernel may hand a port it just
    freed to the next caller, as it did when a node's metrics port equalled the dashboard's."""

    def __init__(self, sequence: Iterator[int]):
        self.sequence = sequence

    def __call__(self) -> Kernel:
        return self

    def __enter__(self) -> Kernel:
        self.port = next(self.sequence)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def bind(self, address: tuple[str, int]) -> None:
        pass

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_handed_out_once_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ports, "_HANDED_OUT", set())
    kernel = Kernel(iter([41000, 41000, 41000, 41001, 41002]))
    monkeypatch.setattr(ports.socket, "socket", kernel)
    assert [ports.free_port() for _ in range(3)] == [41000, 41001, 41002]
