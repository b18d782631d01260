"""Pictures: sample grids, training curves and confusion matrices, written as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.runs import atomic_write_bytes


def _save(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def sample_grid(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], path: str | Path,
                title: str = "", columns: int = 8) -> Path:
    """A labelled grid of uint8 images ``(N, H, W)``, white ink on black as the network sees them."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(class_names[int(label)], fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training against validation."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((ax_loss, "loss", "loss (cross-entropy)"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, [row[key] for row in history], "o-", label="train")
        if "val_" + key in history[0]:
            ax.plot(epochs, [row["val_" + key] for row in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "Training curves")
    return _save(fig, path)


def confusion_matrix(matrix: list[list[int]], class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Counts of true (rows) against predicted (columns) classes, with the counts written in."""
    counts = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = np.log1p(counts)  # log scale so the few errors are visible next to the diagonal
    ax.imshow(shown, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for (i, j), value in np.ndenumerate(counts):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > shown.max() * 0.6 else "black")
    ax.set_title(title or "Confusion matrix (test set)")
    return _save(fig, path)


def accuracy_vs_seconds(curves: dict[str, tuple[list[float], list[float]]], path: str | Path,
                        target: float | None = None) -> Path:
    """Test accuracy after each epoch against cumulative training seconds, one line per recipe."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, (seconds, accuracy) in curves.items():
        ax.plot(seconds, [100 * a for a in accuracy], "o-", label=name, markersize=4)
    if target is not None:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"{100 * target:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (log scale)")
    ax.set_ylabel("test accuracy (%)")
    lowest = min((100 * min(a) for _, a in curves.values()), default=90)
    ax.set_ylim(max(lowest - 0.5, 90), 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    ax.set_title("Time to accuracy on MNIST, this machine")
    return _save(fig, path)
