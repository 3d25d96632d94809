"""Reading a pipeline config: YAML (safe_load), `--set` overrides, and errors that name the field.

Every problem comes back as one `ConfigError` naming each dotted path and what would be valid
(with a did-you-mean for unknown fields); the schema itself is `cluster.config`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from cluster.config import FileSource, RelayConfig, SyntheticSource
from cluster.errors import ConfigError


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RelayConfig:
    """Read and validate a YAML config; every problem comes back as one ConfigError."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must contain a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    cfg = parse_config(raw, source=str(path))
    cfg._folder = path.resolve().parent
    return cfg


def parse_overrides(pairs: list[str], typed: bool = True) -> dict[str, Any]:
    """`--set key.path=value` pairs; values read as YAML scalars (2 is an int, true a bool)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. train.epochs=2), got {pair!r}")
        parsed[key.strip()] = yaml.safe_load(value) if typed and value else value
    return parsed


def parse_config(raw: dict[str, Any], source: str = "config") -> RelayConfig:
    try:
        return RelayConfig.model_validate(raw)
    except ValidationError as exc:
        # one problem per line, whatever a hostile key or value holds
        lines = [_describe(err).replace("\n", "\\n") for err in exc.errors()]
        raise ConfigError(
            f"{source} is invalid:\n" + "\n".join(f"  - {x}" for x in lines)
        ) from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate(parents):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            section = ".".join(parents[: depth + 1])
            raise ConfigError(
                f"--set {dotted}: {section} is a {type(node).__name__}, not a section "
                f"with fields; set {section} itself (or fix the config file)"
            )
    node[leaf] = value


def _describe(err: Any) -> str:
    parts = [p for i, p in enumerate(err["loc"]) if not _is_tag(err["loc"], i)]
    loc = ".".join(_key(p) for p in parts) or "(top level)"
    if err["type"] == "extra_forbidden":
        field = str(parts[-1])
        valid = _fields_at([p for p in err["loc"][:-1]])
        hint = difflib.get_close_matches(field, valid, n=1)
        suggestion = f"did you mean '{hint[0]}'? " if hint else ""
        return f"{loc}: unknown field; {suggestion}valid fields: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if not parts and re.match(r"^[a-z_]+\.[\w.]+:", msg):
        return msg  # a cross-field check that names its own dotted path
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{loc}: {msg}{shown}"


def _key(part: Any) -> str:
    """A path component as written in YAML; an odd one (empty, dots, spaces) quoted."""
    text = str(part)
    return text if re.fullmatch(r"[\w-]+", text) else repr(part)


def _fields_at(loc: list[Any]) -> list[str]:
    """Valid field names of the model found at a validation-error location."""
    model: Any = RelayConfig
    for i, part in enumerate(loc):
        if _is_tag(loc, i):
            model = SyntheticSource if part == "synthetic" else FileSource
            continue
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        model = _model_in(field.annotation) if field else None
    return sorted(model.model_fields) if _is_model(model) else []


def _is_tag(loc: Any, i: int) -> bool:
    """The discriminator pydantic inserts after data.source (`synthetic` or `files`)."""
    return i > 0 and loc[i - 1] == "source" and loc[i] in ("synthetic", "files")


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_in(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (list, dict):
        return _model_in(typing.get_args(annotation)[-1])
    if origin in (Union, types.UnionType):
        models = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        # optional sections (`X | None`) have one model; discriminated unions are resolved
        # by their tag in the location
        return models[0] if len(models) == 1 else None
    return None
