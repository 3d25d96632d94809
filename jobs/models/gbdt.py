"""`gbdt`: gradient-boosted trees through XGBoost, under the library's own parameter names.

One Tune iteration is one boosting round (ASHA's time unit); the model is saved in XGBoost's
UBJSON format. Features are the shared encoding (standardised numerics, one-hot categories):
trees are unaffected by the scaling, and serving needs no second encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cluster.config import SearchParam
from jobs.models.contract import HyperParameter, checkpoint_file
from jobs.train.context import TrialContext

HYPERPARAMETERS = {
    "learning_rate": HyperParameter("float", 0.1, low=0, low_open=True, high=1),
    "max_depth": HyperParameter("int", 6, low=1, high=32),
    "min_child_weight": HyperParameter("float", 1.0, low=0),
    "subsample": HyperParameter("float", 1.0, low=0, low_open=True, high=1),
    "colsample_bytree": HyperParameter("float", 1.0, low=0, low_open=True, high=1),
    "reg_lambda": HyperParameter("float", 1.0, low=0),
    "num_boost_round": HyperParameter("int", 200, low=1, high=100_000),
    # rounds without a better validation loss before the trial stops (0: never); the model
    # kept is the best round's
    "early_stopping_rounds": HyperParameter("int", 20, low=0),
}
SPACE = {
    "learning_rate": {"type": "loguniform", "low": 0.03, "high": 0.3},
    "max_depth": {"type": "choice", "values": [4, 6, 8]},
    "subsample": {"type": "uniform", "low": 0.7, "high": 1.0},
    "colsample_bytree": {"type": "uniform", "low": 0.7, "high": 1.0},
}


class Gbdt:
    name = "gbdt"
    hyperparameters: Mapping[str, HyperParameter] = HYPERPARAMETERS
    min_grace_share = 0.1  # a high learning rate leads early: rungs from a tenth of the rounds
    library = "xgboost"
    accepts_any_name = False

    def context(self) -> dict[str, Any]:
        return {}

    def default_space(self) -> dict[str, dict[str, Any]]:
        return dict(SPACE)

    def iterations(
        self, cfg_epochs: int, defaults: Mapping[str, Any], space: Mapping[str, SearchParam]
    ) -> int:
        """The most rounds any trial can boost."""
        searched = space.get("num_boost_round")
        if searched is None:
            return int(defaults["num_boost_round"])
        return int(max(searched.values or [searched.high or 1]))

    def trainable(self) -> Callable[[dict[str, Any], TrialContext], None]:
        from jobs.train.trial import gbdt_trial

        return gbdt_trial

    def export(
        self, checkpoint: str, hp: Mapping[str, Any], ctx: TrialContext
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        from jobs.train.boost import describe
        from serving.families.trees import BOOSTER

        data = checkpoint_file(checkpoint, BOOSTER)
        return describe(data, ctx), {BOOSTER: data}


GBDT = Gbdt()
