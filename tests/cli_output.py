"""Read a relay command's own output out of a CliRunner result.

The test process is a Ray driver (the session cluster), so Ray forwards its workers' log lines
("(pid=123) ...", colour-coded) to this process's stdout and stderr at any moment; one landing in
the middle of an invoke must not break parsing what relay printed.
"""

import json
import re
from typing import Any

from click.testing import Result

_FORWARDED = re.compile(
    r"^(\x1b\[[0-9;]*m)*\((pid=|[\w.]+ pid=|raylet|gcs_server|autoscaler|monitor)"
)


def own_stdout(result: Result) -> str:
    """stdout without the lines Ray forwarded from its workers."""
    return "".join(
        line for line in result.stdout.splitlines(keepends=True) if not _FORWARDED.match(line)
    )


def json_output(result: Result, last_line: bool = False) -> Any:
    """The JSON document relay printed (or its last line, for commands that log progress first)."""
    text = own_stdout(result).strip()
    return json.loads(text.splitlines()[-1] if last_line else text)
