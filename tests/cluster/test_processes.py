"""Finding the processes relay started by what is unique to them, never by a look-alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cluster.processes import alive, kill, pids_mentioning
from tests.conftest import free_port


def test_an_address_matches_its_own_port_not_a_longer_one_it_prefixes():
    """`relay cluster down` kills leftovers by address: 127.0.0.1:6379 must not take down the
    processes of another cluster at 127.0.0.1:63790 (or a path that only starts the same)."""
    address = f"127.0.0.1:{free_port()}"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    mine = subprocess.Popen([*sleep, f"--gcs-address={address}"])
    others = [
        subprocess.Popen([*sleep, f"--gcs-address={address}0"]),
        subprocess.Popen([*sleep, f"--gcs-address=10{address}"]),
    ]
    try:
        assert pids_mentioning(address) == [mine.pid]
    finally:
        for process in (mine, *others):
            process.kill()
            process.wait()


def test_kill_returns_once_its_processes_are_gone_zombies_included():
    """`relay cluster down` kills leftovers (Serve's HAProxy) and then reports the cluster
    gone: the processes must be gone when `kill` returns. A killed child nobody has reaped
    yet is a zombie, which holds nothing: gone for `alive`, though /proc still lists it."""
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
    children.append(subprocess.Popen(["sleep", "60"]))
    try:
        assert all(alive(c.pid) for c in children)
        kill([c.pid for c in children])
        assert not any(alive(c.pid) for c in children)
        assert all(Path(f"/proc/{c.pid}").exists() for c in children)  # zombies, not reaped
    finally:
        for child in children:
            child.kill()
            child.wait()
