"""The Tune function trainables, light to import: each loads its library's module only when
the trial runs (`tensors`/`ddp` for the torch families, `boost` for gbdt) and trains on the
search's splits (`splits`), or hands a multi-worker trial to Ray Train."""

from __future__ import annotations

import importlib
import time
from typing import Any

from jobs.train import splits
from jobs.train.context import TrialContext, hyperparameters


def torch_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """mlp, linear and user torch modules: in this process, or a DDP run over the workers."""
    _trial(config, ctx, distributed="jobs.train.ddp", local="jobs.train.tensors")


def gbdt_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """XGBoost: in this process, or an XGBoostTrainer over the workers."""
    _trial(config, ctx, distributed="jobs.train.boost", local="jobs.train.boost")


def _trial(config: dict[str, Any], ctx: TrialContext, distributed: str, local: str) -> None:
    hp = hyperparameters(config, ctx)
    if ctx.workers > 1:
        importlib.import_module(distributed).fit_distributed(hp, ctx)
    else:
        fit = importlib.import_module(local).fit  # torch, xgboost: overhead, not training
        began = time.perf_counter()  # the trial's busy time counts from here (data, then fit)
        fit(hp, ctx, *splits.fetch(ctx), began)
