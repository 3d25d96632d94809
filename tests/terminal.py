"""A command run on a real pseudo-terminal (stdout and stderr both a TTY), as a person runs it,
so what relay draws only for a person (live lines, progress bars) can be seen and checked."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Terminal output without its escape sequences (colours, cursor moves)."""
    return _ESCAPES.sub("", text)


def on_terminal(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> tuple[int, str]:
    """The exit code and everything written to the terminal (escape sequences included)."""
    leader, follower = pty.openpty()
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif process.poll() is not None:
                break
        else:
            raise AssertionError(f"{args} did not end within {timeout} s")
        return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
