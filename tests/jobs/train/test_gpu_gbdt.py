"""gbdt on a GPU: XGBoost's CUDA build trains the same trees' quality and its booster scores
anywhere. Runs without Ray, MLflow or the shared fixtures
(`pytest --noconftest tests/jobs/train/test_gpu_gbdt.py`); skips unless this xgboost has CUDA
and a device (CI has neither: it installs the CPU build)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from jobs.models.gbdt import HYPERPARAMETERS
from jobs.train.boost import params, pick_device
from jobs.train.context import TrialContext
from serving.families.trees import TreeScorer, load_booster


def cuda_available() -> bool:
    if not xgb.build_info().get("USE_CUDA"):
        return False
    try:
        xgb.train({"device": "cuda", "tree_method": "hist"}, xgb.DMatrix(np.ones((2, 1))), 1)
    except xgb.core.XGBoostError:
        return False
    return True


needs_cuda = pytest.mark.skipif(
    not cuda_available(), reason="no CUDA xgboost or device here (CI has none)"
)
CTX = TrialContext(
    dataset_path="",
    id_column=None,
    features={"numeric": [], "categorical": [], "label": {"name": "y", "classes": ["0", "1"]}},
    task="classification",
    epochs=1,
    seed=3,
    defaults={},
    threads=4,
)


def fit(device: str) -> tuple[xgb.Booster, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 12)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] - x[:, 2] ** 2 / 4) > 0).astype(np.float32)
    hp = {k: h.default for k, h in HYPERPARAMETERS.items()}
    train, val = (
        xgb.DMatrix(x[:160_000], label=y[:160_000]),
        xgb.DMatrix(x[160_000:], label=y[160_000:]),
    )
    result: dict = {}
    booster = xgb.train(
        params(hp, CTX, device, 4),
        train,
        100,
        evals=[(val, "val")],
        evals_result=result,
        verbose_eval=False,
    )
    return booster, result["val"]["logloss"][-1]


@needs_cuda
def test_a_trial_given_a_gpu_boosts_on_cuda_as_well_as_on_the_cpu() -> None:
    assert pick_device([0]) == "cuda" and pick_device([]) == "cpu"
    gpu, gpu_loss = fit("cuda")
    _, cpu_loss = fit("cpu")
    assert json.loads(gpu.save_config())["learner"]["generic_param"]["device"].startswith("cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=0.02)  # the same model quality
    scorer = TreeScorer(load_booster(bytes(gpu.save_raw("ubj"))), classify=True)
    probabilities = scorer(np.zeros((3, 12), np.float32))
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(axis=1), 1.0)


def test_without_a_cuda_build_a_gpu_trial_falls_back_to_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": False})
    assert pick_device([0]) == "cpu"
