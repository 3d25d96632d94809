"""The families relay trains, and what a config may say about them.

A config trains `model.family`, or with `tune.families: [mlp, gbdt]` searches each listed
family and keeps the best across them. A `tune.search_space` key or `model.hyperparameters`
value goes to the families that declare it; a family none of the keys is for searches its own
default space. `check` runs before any Ray work (`relay validate`, the start of every pipeline
run): a key no listed family declares, or a value out of its range, is a ConfigError naming the
field, with a did-you-mean. The `train.*` defaults (lr, hidden_size, ...) apply to the families
that declare them (the torch ones); the others do not read them.
"""

from __future__ import annotations

from typing import Any

from cluster.config import RelayConfig, SearchParam
from cluster.errors import ConfigError
from jobs.artifacts import Dataset
from jobs.models import usermodule
from jobs.models.contract import KINDS, Family, unknown
from jobs.models.gbdt import GBDT
from jobs.models.torchnets import LINEAR, MLP, user_family
from jobs.train.context import TrialContext

FAMILIES: dict[str, Family] = {f.name: f for f in (MLP, LINEAR, GBDT)}
# train.* fields that are hyper-parameters of some family (the rest are execution settings)
TRAIN_HYPERPARAMETERS = ("lr", "weight_decay", "batch_size", "hidden_size", "depth", "dropout")


def names(cfg: RelayConfig) -> list[str]:
    """The families this config trains, in the order it lists them."""
    return list(cfg.tune.families or [cfg.model.family])


def family(cfg: RelayConfig, name: str | None = None) -> Family:
    """One of the config's families (default: its only or first one)."""
    name = name or names(cfg)[0]
    if name == "torch":
        return user_family(usermodule.resolve(cfg))
    return FAMILIES[name]


def _owned(chosen: Family, key: str) -> bool:
    return key in chosen.hyperparameters or chosen.accepts_any_name


def check(cfg: RelayConfig) -> None:
    """Every hyper-parameter the config names belongs to one of its families, validly."""
    listed = [family(cfg, n) for n in names(cfg)]
    label = " or ".join(f.name for f in listed)
    known = sorted({k for f in listed for k in f.hyperparameters})
    for name, value in cfg.model.hyperparameters.items():
        where = f"model.hyperparameters.{name}"
        owners = [f for f in listed if _owned(f, name)]
        if not owners:
            raise unknown(where, label, known)
        for f in owners:
            if name in f.hyperparameters:
                f.hyperparameters[name].coerce(value, where)
    for name, param in sorted((cfg.tune.search_space or {}).items()):
        where = f"tune.search_space.{name}"
        owners = [f for f in listed if _owned(f, name)]
        if not owners:
            raise unknown(where, label, known)
        for f in owners:
            hp = f.hyperparameters.get(name)
            if hp is None:
                continue
            if hp.kind == "str" and param.type not in ("choice", "grid"):
                raise ConfigError(f"{where}: {name} takes {hp.valid()}; use type choice or grid")
            for value in param.values or [param.low, param.high]:
                hp.coerce(value, where)


def defaults(cfg: RelayConfig, name: str | None = None) -> dict[str, Any]:
    """Each declared hyper-parameter's value when not searched: the family's default, the
    config's `train.<name>` where there is one, then `model.hyperparameters`."""
    chosen = family(cfg, name)
    declared = chosen.hyperparameters
    values = {k: hp.default for k, hp in declared.items()}
    values.update({k: getattr(cfg.train, k) for k in TRAIN_HYPERPARAMETERS if k in declared})
    values.update({k: v for k, v in cfg.model.hyperparameters.items() if _owned(chosen, k)})
    return {
        k: declared[k].coerce(v, f"model.hyperparameters.{k}") if k in declared else v
        for k, v in values.items()
    }


def space(cfg: RelayConfig, name: str | None = None) -> dict[str, SearchParam]:
    """The family's share of the config's search space, or its own default one."""
    chosen = family(cfg, name)
    configured = cfg.tune.search_space
    if configured is not None and len(names(cfg)) == 1:
        return configured
    mine = {k: v for k, v in (configured or {}).items() if _owned(chosen, k)}
    if mine or configured == {}:
        return mine
    return {k: SearchParam(**v) for k, v in chosen.default_space().items()}


def trial_context(cfg: RelayConfig, dataset: Dataset, name: str, **settings: Any) -> TrialContext:
    """What family `name`'s trials on `dataset` train with (and its export reads);
    `settings`: the search's own (storage, run name)."""
    chosen = family(cfg, name)
    return TrialContext(
        dataset_path=str(dataset.path),
        id_column=dataset.meta["id_column"],
        features=dataset.meta["features"],
        task=cfg.model.task,
        epochs=cfg.train.epochs,
        seed=cfg.seed,
        defaults=defaults(cfg, name),
        threads=max(1, int(cfg.train.cpus_per_trial)),
        workers=cfg.train.workers_per_trial,
        cpus_per_worker=cfg.train.cpus_per_trial / cfg.train.workers_per_trial,
        **chosen.context(),
        kinds={k: hp.kind for k, hp in chosen.hyperparameters.items()},
        **settings,
    )


def kinds() -> dict[str, type]:
    """Each known hyper-parameter name's Python type (lineage decodes MLflow params by it)."""
    return {
        name: KINDS[hp.kind] for f in FAMILIES.values() for name, hp in f.hyperparameters.items()
    }
