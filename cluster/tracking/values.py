"""Tag and param values: MLflow keeps text, relay's records are typed.

Text is written as is and anything else as JSON (`{"lr": 0.003}`, `12`, `true`: readable in the
MLflow UI); a reader decodes each key by the type it declares for it, never by the text's shape.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from cluster.errors import RelayError

T = TypeVar("T")


def encode(value: Any) -> str:
    """The text MLflow stores for `value`."""
    return value if isinstance(value, str) else json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars (Tune samples some) as Python numbers; anything else as its text."""
    return value.item() if hasattr(value, "item") else str(value)


def decode(text: str | None, kind: type[T], where: str) -> T | None:
    """`text` as a `kind` (str, int, float, bool, dict, list); None when absent or empty.

    A value that is not a `kind` is a record relay did not write: an error naming `where`."""
    if text is None or (text == "" and kind is not str):
        return None
    if kind is str:
        return text  # type: ignore[return-value]
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if kind is float and type(value) is int:
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RelayError(f"{where} is {text!r}, not the {kind.__name__} relay records there")
    return value
