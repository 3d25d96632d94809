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


def stop_groups(pgids: list[int], grace: float = 10.0, leaders_first: bool = False) -> list[int]:
    """SIGTERM the process groups together, SIGKILL whatever is left after `grace` seconds;
    the groups that needed SIGKILL.

    `leaders_first`: SIGTERM goes to each group's leader alone, which stops its own children
    in its own order (`ray start --block`: with the whole group signalled at once its GCS and
    leader outlived a 15 s grace; the leader alone had them all gone in ~5 s)."""
    forced: list[int] = []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):  # SIGKILL is not instant
        if sig == signal.SIGKILL:
            forced = [p for p in pgids if group_alive(p)]
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                if leaders_first and sig == signal.SIGTERM:
                    os.kill(pgid, sig)
                else:
                    os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while any(group_alive(p) for p in pgids) and time.monotonic() < deadline:
            reap(pgids)
            time.sleep(0.1)
        if not any(group_alive(p) for p in pgids):
            break
    return forced


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


def alive(pid: int) -> bool:
    """Running, not a zombie: a zombie holds nothing but its pid, and one whose parent died
    waits for whatever reaps orphans (which in a container may be nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill(pids: list[int], wait: float = 5.0) -> None:
    """SIGKILL `pids` and return once they are gone (SIGKILL is delivered, not instant: a
    check straight after `os.kill` can still find the process), or after `wait` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
