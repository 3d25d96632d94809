"""Stopping exactly the processes relay started: by recorded PID, with a grace period.

Never `ray stop`: it kills every Ray on the machine, other users' and other tests' included.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(pgids: list[int], grace: float = 10.0) -> None:
    """SIGTERM the process groups together, SIGKILL whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):  # SIGKILL is not instant
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while any(group_alive(p) for p in pgids) and time.monotonic() < deadline:
            reap(pgids)
            time.sleep(0.1)
        if not any(group_alive(p) for p in pgids):
            return


def reap(pids: list[int]) -> None:
    """Collect exited children of this process: a zombie leader keeps its group 'alive'.

    (When `up` ran in this same process, as in tests, the nodes are our children.)
    """
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line names `text` whole (a node's private temp dir, its
    address): 127.0.0.1:6379 is not a prefix match for another cluster's 127.0.0.1:63790.

    Ray daemonises some children into their own sessions; this finds them by what is unique
    to the node relay started, never by name.
    """
    whole = re.compile(rf"(?<![\w.-]){re.escape(text)}(?![\w.-])")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if whole.search(cmdline):
            found.append(int(entry.name))
    return sorted(found)


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
