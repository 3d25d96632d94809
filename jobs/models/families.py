"""The families relay trains, and what a config may say about them.

`check` runs before any Ray work (`relay validate`, the start of every pipeline run): a search
space key or fixed value the family does not declare, or a value out of its range, is a
ConfigError naming the field, with a did-you-mean. The `train.*` defaults (lr, hidden_size, ...)
apply to the families that declare them (the torch ones); the others do not read them.
"""

from __future__ import annotations

from typing import Any

from cluster.config import RelayConfig, SearchParam
from cluster.errors import ConfigError
from jobs.models.contract import KINDS, Family, unknown
from jobs.models.gbdt import GBDT
from jobs.models.torchnets import LINEAR, MLP

FAMILIES: dict[str, Family] = {f.name: f for f in (MLP, LINEAR, GBDT)}
# train.* fields that are hyper-parameters of some family (the rest are execution settings)
TRAIN_HYPERPARAMETERS = ("lr", "weight_decay", "batch_size", "hidden_size", "depth", "dropout")


def family(cfg: RelayConfig) -> Family:
    return FAMILIES[cfg.model.family]


def check(cfg: RelayConfig) -> None:
    """Every hyper-parameter the config names is the family's, with a valid value."""
    chosen = family(cfg)
    declared = chosen.hyperparameters
    for name, value in cfg.model.hyperparameters.items():
        where = f"model.hyperparameters.{name}"
        if name not in declared:
            raise unknown(where, chosen.name, list(declared))
        declared[name].coerce(value, where)
    for name, param in sorted(space(cfg).items()):
        where = f"tune.search_space.{name}"
        if name not in declared:
            raise unknown(where, chosen.name, list(declared))
        hp = declared[name]
        if hp.kind == "str" and param.type not in ("choice", "grid"):
            raise ConfigError(f"{where}: {name} takes {hp.valid()}; use type choice or grid")
        for value in param.values or [param.low, param.high]:
            hp.coerce(value, where)


def defaults(cfg: RelayConfig) -> dict[str, Any]:
    """Each declared hyper-parameter's value when not searched: the family's default, the
    config's `train.<name>` where there is one, then `model.hyperparameters`."""
    declared = family(cfg).hyperparameters
    values = {name: hp.default for name, hp in declared.items()}
    values.update({k: getattr(cfg.train, k) for k in TRAIN_HYPERPARAMETERS if k in declared})
    values.update(cfg.model.hyperparameters)
    return {k: declared[k].coerce(v, f"model.hyperparameters.{k}") for k, v in values.items()}


def space(cfg: RelayConfig) -> dict[str, SearchParam]:
    """The config's search space, or the family's default one."""
    if cfg.tune.search_space is not None:
        return cfg.tune.search_space
    return {k: SearchParam(**v) for k, v in family(cfg).default_space().items()}


def kinds() -> dict[str, type]:
    """Each known hyper-parameter name's Python type (lineage decodes MLflow params by it)."""
    return {
        name: KINDS[hp.kind] for f in FAMILIES.values() for name, hp in f.hyperparameters.items()
    }
