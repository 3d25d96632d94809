"""A search's train and val arrays, read once by a Ray task that starts beside Tune's trials.

Reading a split (Parquet decoding, hashing and sorting into content order, encoding) takes ~2 s
on 1M rows, and so does a trial actor's start (a fresh process importing Ray Tune, then torch
or xgboost). The tune stage starts the read before the trials, so the two overlap, and every
trial on a node maps the same arrays from the object store instead of reading its own
(benchmarks/gbdt.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jobs.train.arrays import load_arrays
from jobs.train.context import TrialContext

Arrays = tuple[np.ndarray, np.ndarray]  # (features, labels) of one split


def read(ctx: TrialContext) -> tuple[Arrays, Arrays]:
    """The train and val arrays, read in this process."""
    return load_arrays(ctx, "train"), load_arrays(ctx, "val")


def start(ctx: TrialContext) -> Any:
    """A Ray task reading `ctx`'s splits: its ObjectRef, for `TrialContext.splits`. It asks for
    no CPU, so it runs while the trial actors, which hold the CPUs, are still starting."""
    import ray

    return ray.remote(num_cpus=0, max_retries=1)(read).remote(ctx)


def fetch(ctx: TrialContext) -> tuple[Arrays, Arrays]:
    """The splits (read-only arrays): the search's read, or read here for a context without
    one. A failed read raises here, so the trial fails with its traceback."""
    if ctx.splits is None:
        return read(ctx)
    import ray

    loaded: Any = ray.get(ctx.splits)
    return loaded
