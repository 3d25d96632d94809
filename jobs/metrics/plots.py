"""Plots logged as MLflow artifacts (PNG, rendered off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _figure(size: tuple[float, float] = (7, 4.5)) -> tuple[Any, Any]:
    """A figure on the off-screen backend (no display on a cluster node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=110)


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def learning_curves(
    histories: dict[str, list[tuple[int, float]]], best: str, metric: str, path: Path
) -> Path:
    """One line per trial (metric by epoch); the best trial drawn thick."""
    figure, axes = _figure()
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
    return _save(figure, path)


def roc(truth: np.ndarray, score: np.ndarray, path: Path) -> Path:
    """ROC curve of the positive class's score, with its AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(truth, score)
    figure, axes = _figure((5, 5))
    axes.plot(fpr, tpr, label=f"AUC {roc_auc_score(truth, score):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    axes.legend(loc="lower right")
    return _save(figure, path)


def calibration(truth: np.ndarray, score: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Observed positive share against mean predicted probability, per probability bin."""
    which = np.minimum((score * bins).astype(int), bins - 1)
    used = np.unique(which)
    predicted = [score[which == b].mean() for b in used]
    observed = [truth[which == b].mean() for b in used]
    figure, axes = _figure((5, 5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    axes.plot(predicted, observed, marker="o", label="model")
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed positive share",
        title="calibration (test split)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axes.legend(loc="upper left")
    return _save(figure, path)


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: list[str], path: Path) -> Path:
    """Counts of true class (rows) against predicted class (columns)."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(truth, predicted, labels=list(range(len(classes))))
    figure, axes = _figure((5, 4.5))
    image = axes.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        dark = value > counts.max() / 2
        axes.text(j, i, str(value), ha="center", va="center", color="white" if dark else "black")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set(xlabel="predicted", ylabel="true", title="confusion matrix (test split)")
    figure.colorbar(image, ax=axes)
    return _save(figure, path)


def residuals(truth: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    """Residual (true - predicted) against the prediction."""
    figure, axes = _figure()
    axes.scatter(predicted, truth - predicted, s=4, alpha=0.4)
    axes.axhline(0, color="grey", linestyle="--", linewidth=1)
    axes.set(xlabel="prediction", ylabel="true - predicted", title="residuals (test split)")
    return _save(figure, path)


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


def drift_bars(scores: dict[str, float], limit: float, method: str, title: str, path: Path) -> Path:
    """One bar per feature (its drift score), the threshold as a line; over it in red."""
    figure, axes = _figure((7, max(2.5, 0.35 * len(scores) + 1.2)))
    names = sorted(scores, key=lambda n: scores[n])
    values = [scores[n] for n in names]
    colours = ["tab:red" if v > limit else "tab:blue" for v in values]
    axes.barh(names, values, color=colours)
    axes.axvline(limit, color="black", linestyle="--", linewidth=1, label=f"max {limit:g}")
    axes.set_xlabel(method)
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)
