"""`model.family: torch`: the user's `build(n_inputs, n_outputs, **hyperparameters)`.

The module is found relative to the config file's folder, then on sys.path, and read as
source: trials run that source (so a submitted job or a remote node needs no install), the
bundle carries it with the weights, and its sha256 is on the spec for lineage. Its keyword
parameters are the family's hyper-parameters beside the training ones (lr, weight_decay,
batch_size), typed by their defaults; a `**kwargs` build takes any name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.errors import ConfigError
from jobs.models.contract import HyperParameter

FIELD = "model.module"
KIND_OF = {bool: "str", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class UserModule:
    name: str  # dotted module name
    builder: str  # the function's name in it
    path: str  # where its source was read
    source: str
    sha256: str
    parameters: dict[str, HyperParameter]  # build's own keyword parameters
    takes_any: bool  # build has **kwargs

    def as_context(self) -> dict[str, str]:
        """What a trial needs to run it (small: shipped with the trial context)."""
        return {"name": self.name, "builder": self.builder, "source": self.source}


def locate(name: str, folder: Path | None) -> Path:
    """The module's file: under the config's folder, else where Python would import it."""
    relative = Path(*name.split("."))
    for candidate in (
        [folder / f"{relative}.py", folder / relative / "__init__.py"] if folder else []
    ):
        if candidate.is_file():
            return candidate
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        where = f"{folder} (the config's folder) or " if folder else ""
        raise ConfigError(f"{FIELD}: no module {name!r} in {where}sys.path; fix the name or path")
    return Path(found.origin)


# (path, builder, sha256) -> the checked module: a run asks for its family many times, and
# runs the user's code once; an edited file is read and run again
_resolved: dict[tuple[str, str, str], UserModule] = {}


def resolve(cfg: RelayConfig) -> UserModule:
    """Read, run and check the configured module; every problem is a ConfigError on the field."""
    assert cfg.model.module is not None  # the config requires it for family torch
    name, _, builder = cfg.model.module.partition(":")
    path = locate(name, cfg.folder)
    source = path.read_text()
    key = (str(path), builder, hashlib.sha256(source.encode()).hexdigest())
    if key not in _resolved:
        _resolved[key] = _checked(name, builder, path, source, key[2])
    return _resolved[key]


def _checked(name: str, builder: str, path: Path, source: str, sha256: str) -> UserModule:
    from serving.families.torchnet import module_from_source

    try:
        module = module_from_source(name, source)
    except Exception as exc:  # the user's code: any error is theirs to see
        raise ConfigError(
            f"{FIELD}: {name} ({path}) does not import: {type(exc).__name__}: {exc}"
        ) from None
    build = getattr(module, builder, None)
    if not callable(build):
        raise ConfigError(f"{FIELD}: {name} ({path}) has no function {builder!r}")
    parameters, takes_any = declared(build, f"{name}:{builder}")
    return UserModule(
        name=name,
        builder=builder,
        path=str(path),
        source=source,
        sha256=sha256,
        parameters=parameters,
        takes_any=takes_any,
    )


def declared(build: Any, label: str) -> tuple[dict[str, HyperParameter], bool]:
    """build's hyper-parameters: its parameters after n_inputs and n_outputs."""
    signature = inspect.signature(build)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        raise ConfigError(
            f"{FIELD}: {label}{signature} must take (n_inputs, n_outputs, **hyperparameters)"
        )
    found: dict[str, HyperParameter] = {}
    for p in params:
        if p in positional[:2] or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise ConfigError(
                f"{FIELD}: {label} parameter {p.name!r} has no default: give it one, so a "
                "config that does not search it still builds the model"
            )
        found[p.name] = HyperParameter(KIND_OF.get(type(p.default), "str"), p.default)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    return found, takes_any
