"""Plots logged as MLflow artifacts (PNG, rendered off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def learning_curves(
    histories: dict[str, list[tuple[int, float]]], best: str, metric: str, path: Path
) -> Path:
    """One line per trial (metric by epoch); the best trial drawn thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, points in sorted(histories.items()):
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        is_best = name == best
        axes.plot(
            epochs,
            values,
            marker="o",
            markersize=3,
            linewidth=2.5 if is_best else 1,
            alpha=1.0 if is_best else 0.6,
            label=f"{name} (best)" if is_best else None,
        )
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per trial ({len(histories)} trials; stopped lines = ASHA)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def histories_from(
    client: Any, run_ids: list[str], metric: str
) -> dict[str, list[tuple[int, float]]]:
    """Per trial run, (epoch, metric) pairs as logged to MLflow."""
    return {
        run: [
            (m.step, m.value)
            for m in sorted(client.get_metric_history(run, metric), key=lambda m: m.step)
        ]
        for run in run_ids
    }
