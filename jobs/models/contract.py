"""The model contract: what every model family declares and does, so nothing else asks which.

A family declares its hyper-parameters (name, type, default, valid range), so a config's
search space and fixed values are checked before any Ray work; gives Tune its trainable (one
report per iteration: ASHA's time unit, a checkpoint with each, resumable); and turns the best
checkpoint into bundle files that load without pickle. Predicting is the serving side's half
(`serving.families`): evaluation, the endpoint and batch scoring share it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cluster.config import SearchParam
from cluster.errors import ConfigError
from jobs.train.context import TrialContext

KINDS: dict[str, type] = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class HyperParameter:
    """One declared hyper-parameter: its type, default and inclusive valid range."""

    kind: str  # int | float | str
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low bound itself is invalid (a rate above 0)
    choices: tuple[str, ...] = ()
    help: str = ""

    def valid(self) -> str:
        if self.choices:
            return f"one of {list(self.choices)}"
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        bounds = " and ".join(b for b in (low, high) if b)
        return (
            f"{'an integer' if self.kind == 'int' else 'a number'}{' ' + bounds if bounds else ''}"
        )

    def coerce(self, value: Any, where: str) -> Any:
        """`value` as this parameter's type, or a ConfigError naming `where` and what is valid."""
        try:
            if self.kind == "str":
                if self.choices and str(value) not in self.choices:
                    raise ValueError
                return str(value)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            number = float(value)
            if self.kind == "int":
                if number != int(number):
                    raise ValueError
                number = int(number)
            too_low = self.low is not None and (
                number < self.low or (self.low_open and number == self.low)
            )
            if too_low or (self.high is not None and number > self.high):
                raise ValueError
            return number
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not valid; expected {self.valid()}") from None


class Family(Protocol):
    """One model family (mlp, linear, gbdt, torch)."""

    name: str
    hyperparameters: Mapping[str, HyperParameter]
    min_grace_share: float  # ASHA never stops a trial before this share of its iterations
    library: str  # the distribution that trains and scores it (its version goes in the spec)
    accepts_any_name: bool  # a user build with **kwargs: any search-space name is passed on

    def context(self) -> dict[str, Any]:
        """What the family adds to every trial's context (TrialContext fields)."""
        ...

    def default_space(self) -> dict[str, dict[str, Any]]:
        """The search space when the config names none (search-param dicts)."""
        ...

    def iterations(
        self, cfg_epochs: int, defaults: Mapping[str, Any], space: Mapping[str, SearchParam]
    ) -> int:
        """The most reports a trial makes (ASHA's max_t): epochs, boosting rounds."""
        ...

    def trainable(self) -> Callable[[dict[str, Any], TrialContext], None]:
        """The Tune function trainable."""
        ...

    def export(
        self, checkpoint: str, hp: Mapping[str, Any], ctx: TrialContext
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """(architecture for the spec, weight files) from a trial's checkpoint folder or URI."""
        ...


def checkpoint_file(checkpoint: str, name: str) -> bytes:
    """One file of a trial's checkpoint, from a local folder or an object store."""
    from jobs.data.sources import filesystem

    fs, path = filesystem(f"{checkpoint.rstrip('/')}/{name}")
    with fs.open_input_file(path) as handle:
        return handle.read()


def unknown(where: str, family: str, known: Sequence[str]) -> ConfigError:
    """A field naming a hyper-parameter this family does not declare: a did-you-mean and the
    family's own."""
    hint = difflib.get_close_matches(where.rsplit(".", 1)[-1], known, n=1)
    suggestion = f"did you mean '{hint[0]}'? " if hint else ""
    return ConfigError(
        f"{where} is not a hyper-parameter of model.family {family}; {suggestion}"
        f"{family}'s are {sorted(known)}"
    )
