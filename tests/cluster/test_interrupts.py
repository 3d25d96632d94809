"""A signal that lands inside a finaliser still stops the command (no Ray needed).

Python prints and drops an exception raised in `__del__` or a weakref callback; a SIGTERM
delivered there (seen in CI: inside SQLAlchemy's registry clean-up during `relay predict`) was
lost, and the command ran on to exit 0.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from cluster import interrupts

    interrupts.install()

    class LandsInAFinaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.{signal})  # the handler runs here, inside __del__

    try:
        LandsInAFinaliser()  # dropped at once: __del__ runs
        for _ in range(10_000_000):  # the rest of the command
            pass
    except KeyboardInterrupt as exc:
        print("interrupted", exc)
        sys.exit(130)
    print("ran to the end")
    """
)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_an_interrupt_raised_inside_a_finaliser_is_delivered_again(name):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(signal=name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 130, result.stdout + result.stderr
    assert "interrupted" in result.stdout
