"""The one output rule of every command: a human form by default; with `--json`, one typed JSON
object on the last line of stdout, so a script reads the same keys whatever came before it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from jobs.console import out


def emit(result: Mapping[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    """`result` as one JSON line under --json, else `human()` prints it for a person."""
    if as_json:
        print(json.dumps(result, default=str), flush=True)
    else:
        human()


def fields(pairs: Mapping[str, Any]) -> None:
    """Aligned `key: value` lines: the human form of a small record."""
    width = max((len(key) for key in pairs), default=0) + 1
    for key, value in pairs.items():
        out.print(f"{key + ':':<{width}} {plain(value)}", highlight=False)


def plain(value: Any) -> str:
    """A value as a person reads it: lists joined, mappings as `key value`, nothing as `-`."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
