"""The Tune function trainables, light to import: each loads its library (`tensors` for the
torch families, `boost` for gbdt) and takes the search's splits (`splits`), or hands a
multi-worker trial to Ray Train."""

from __future__ import annotations

import time
from typing import Any

from jobs.train import splits
from jobs.train.context import TrialContext, hyperparameters


def torch_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """mlp, linear and user torch modules: in this process, or a DDP run over the workers."""
    hp = hyperparameters(config, ctx)
    if ctx.workers > 1:
        from jobs.train.ddp import fit_distributed

        fit_distributed(hp, ctx)
        return
    began = time.perf_counter()
    from jobs.train import tensors

    tensors.fit(hp, ctx, *splits.fetch(ctx), began)


def gbdt_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """XGBoost: in this process, or an XGBoostTrainer over the workers."""
    hp = hyperparameters(config, ctx)
    if ctx.workers > 1:
        from jobs.train.boost import fit_distributed

        fit_distributed(hp, ctx)
        return
    began = time.perf_counter()
    from jobs.train import boost

    boost.fit(hp, ctx, *splits.fetch(ctx), began)
