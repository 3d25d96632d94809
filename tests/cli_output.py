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


_LOOKS_TYPED = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null", re.IGNORECASE)


def json_object(result: Result, text: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `--json` rule: the last line of relay's own stdout is one JSON object whose values
    have their own types (a count an int, a flag a bool, nothing null), never a string of them.
    Ids (keys ending in `id`) and the keys in `text` (a class label) are text whatever they
    look like."""
    found = json.loads(own_stdout(result).strip().splitlines()[-1])
    assert isinstance(found, dict), found
    assert_typed(found, text)
    return found


def assert_typed(value: Any, text: tuple[str, ...] = (), where: str = "") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not (str(key).endswith("id") or key in text):
                assert_typed(item, text, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_typed(item, text, f"{where}[{i}]")
    else:
        assert not (isinstance(value, str) and _LOOKS_TYPED.fullmatch(value)), (
            f"{where or 'value'} is the string {value!r}: it should be typed"
        )


def assert_human(result: Result) -> None:
    """Without `--json`: text for a person, no line of stdout a JSON document."""
    for line in own_stdout(result).splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        assert not isinstance(parsed, dict | list), f"JSON by default: {line}"
