"""Training on a GPU: the same loop gives the CPU's results, and its checkpoints load anywhere.

Runs without Ray, MLflow or the shared fixtures
(`pytest --noconftest tests/jobs/train/test_gpu.py`), so it also runs on a bare GPU machine.
The CUDA cases skip where torch sees no GPU (CI has none); the checkpoint-portability case
fakes a GPU-less reader with `torch.cuda.is_available` patched.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.train.context import TrialContext
from jobs.train.loop import CHECKPOINT_FILE, Executor, loop, read_checkpoint
from jobs.train.tensors import TensorData, pick_device

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (CI has none); run on a GPU machine"
)
N_FEATURES = 12
FEATURES = {
    "numeric": [{"name": f"x{i}", "mean": 0.0, "std": 1.0} for i in range(N_FEATURES)],
    "categorical": [],
    "label": {"name": "y", "classes": ["0", "1"]},
}
HP = {"hidden_size": 64, "depth": 2, "dropout": 0.0, "lr": 0.01, "weight_decay": 1e-4}


def data(rows: int, batch_size: int) -> TensorData:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(rows, N_FEATURES, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] - x[:, 2] ** 2 / 4) > 0).long()
    cut = int(rows * 0.8)
    return TensorData(x[:cut], y[:cut], x[cut:], y[cut:], batch_size=batch_size)


def fit(device: str, rows: int = 4000, batch_size: int = 256, epochs: int = 3) -> list[dict]:
    """The trial loop on `device`; returns the per-epoch results and keeps the checkpoints."""
    results: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], folder: str | None) -> None:
        blob = Path(folder, CHECKPOINT_FILE).read_bytes() if folder else b""
        results.append({**metrics, "checkpoint": blob})

    ctx = TrialContext(
        dataset_path="",
        id_column="id",
        features=FEATURES,
        task="classification",
        epochs=epochs,
        seed=3,
        defaults={},
        threads=1,
    )
    target = torch.device(device)
    executor = Executor(
        report=report,
        checkpoint=None,
        reduce=lambda sums: sums,
        wrap=lambda model: model.to(target),
        device=target,
    )
    batches = data(rows, batch_size).to(target)
    loop({**HP, "batch_size": batch_size}, ctx, batches, executor, 0.0)
    return results


def test_pick_device_falls_back_to_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device([0]) == torch.device("cpu")
    assert pick_device([]) == torch.device("cpu")


@needs_cuda
def test_pick_device_uses_the_gpu_ray_assigned() -> None:
    assert pick_device([0]).type == "cuda"
    assert pick_device([]).type == "cpu"


@needs_cuda
def test_gpu_training_matches_cpu_and_reports_the_device() -> None:
    cpu, gpu = fit("cpu"), fit("cuda")
    assert [r["device"] for r in gpu] == ["cuda"] * 3
    for a, b in zip(cpu, gpu, strict=True):
        # Same seeds, same batches: only float summation order differs between devices.
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=2e-3, abs=1e-4)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=0.01)
    assert gpu[-1]["val_accuracy"] > 0.8  # it learned: the rule is simple


@needs_cuda
def test_gpu_checkpoint_loads_where_there_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = fit("cuda", epochs=1)[-1]["checkpoint"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(io.BytesIO(blob), weights_only=True)  # what evaluate did before
    state = read_checkpoint(blob)
    assert {t.device.type for t in state["model"].values()} == {"cpu"}
    assert state["epoch"] == 1


@needs_cuda
def test_gpu_epoch_time_against_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """A figure, not a gate: printed for the record (pytest -s shows it)."""
    rows, batch = 200_000, 4096
    timings = {}
    for device in ("cpu", "cuda"):
        began = time.perf_counter()
        last = fit(device, rows=rows, batch_size=batch, epochs=2)[-1]
        timings[device] = (time.perf_counter() - began, last["epoch_seconds"])
    with capsys.disabled():
        print(
            f"\nGPU check: {rows:,} rows, batch {batch}: epoch seconds cpu "
            f"{timings['cpu'][1]:.3f} vs cuda {timings['cuda'][1]:.3f} "
            f"(ratio {timings['cpu'][1] / timings['cuda'][1]:.2f}); "
            f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}"
        )
    assert timings["cuda"][1] > 0
