"""Ctrl-C and SIGTERM as one KeyboardInterrupt in the main thread, held back across store writes.

Kubernetes, systemd, Docker and `ray job stop` send SIGTERM; relay stops on it as on Ctrl-C, so
runs end FAILED, the endpoint and Ray are torn down and the exit code is the interrupted one.
A KeyboardInterrupt raised inside a sqlite write left that write's transaction open (the
traceback keeps its session alive): the FAILED end the interrupted run then wrote waited 20 s for
the lock and was lost, and the run stayed RUNNING. Such writes run `held()`: a signal that
arrives meanwhile is raised as soon as the write is done.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PYTHON_UNRAISABLE_HOOK = sys.unraisablehook
_depth = 0  # nesting of held() in the main thread
_pending: int | None = None  # the signal that arrived while held


def _interrupt(signum: int, frame: object) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _redeliver(unraisable: Any) -> None:
    """A KeyboardInterrupt raised inside a finaliser (`__del__`, a weakref callback: a signal
    can land there) is printed and dropped by Python, and the command ran on to exit 0. It is
    delivered again instead, from another thread once the finaliser has returned (delivered from
    here, it would land in this hook and be dropped the same way)."""
    if unraisable.exc_type is KeyboardInterrupt:
        name = str(unraisable.exc_value) if unraisable.exc_value else ""
        signum = signal.SIGTERM if name == "SIGTERM" else signal.SIGINT
        threading.Timer(0.01, _thread.interrupt_main, args=(signum,)).start()
        return
    _PYTHON_UNRAISABLE_HOOK(unraisable)


def install() -> None:
    """SIGTERM, and Ctrl-C where Python would raise it, go through `_interrupt`. A SIGINT the
    process was started ignoring (a background job of a non-interactive shell) stays ignored.
    Python allows handlers in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = _redeliver


@contextmanager
def held() -> Iterator[None]:
    """No KeyboardInterrupt from `_interrupt` inside the block; one that arrived is raised at
    its end. Other threads are never interrupted, so they run the block as is."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise KeyboardInterrupt(signal.Signals(signum).name)
