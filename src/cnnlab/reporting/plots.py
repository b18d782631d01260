"""Pictures: sample grids, training curves and confusion matrices, written as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
import torch

from cnnlab.files import atomic_write_bytes


def save_figure(fig: plt.Figure, path: str | Path | io.BytesIO) -> Path | io.BytesIO:
    """Write ``fig`` as a PNG to ``path`` atomically (or into a buffer), and close it."""
    buffer = path if isinstance(path, io.BytesIO) else io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    if buffer is path:
        return path
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def tile(images: np.ndarray, columns: int, pad: int = 2, fill: float = 0.0) -> tuple[np.ndarray, list]:
    """Images ``(N, H, W)`` or ``(N, H, W, C)`` laid out in one array with ``pad`` pixels between them.

    One imshow of the mosaic is many times faster than a matplotlib axes per image, which
    keeps the pictures of a run to a fraction of a second. Returns the mosaic and each image's
    top-left ``(x, y)``.
    """
    count, height, width = images.shape[:3]
    rows = max(1, -(-count // columns))
    mosaic = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, *images.shape[3:]), fill,
                     dtype=np.float32)
    corners = []
    for i, image in enumerate(images):
        y, x = pad + (i // columns) * (height + pad), pad + (i % columns) * (width + pad)
        mosaic[y : y + height, x : x + width] = image
        corners.append((x, y))
    return mosaic, corners


def _mosaic_figure(mosaic: np.ndarray, scale: float = 0.045) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(max(3.0, mosaic.shape[1] * scale), max(1.5, mosaic.shape[0] * scale + 0.6)))
    ax.axis("off")
    return fig, ax


def _show_pixels(ax: plt.Axes, mosaic: np.ndarray) -> None:
    """A mosaic of uint8-valued pixels: grey ``(H, W)`` on a grey scale, RGB ``(H, W, 3)`` in colour."""
    if mosaic.ndim == 3:
        ax.imshow(mosaic / 255)
    else:
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255)


def sample_grid(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], path: str | Path,
                title: str = "", columns: int = 8) -> Path:
    """A labelled grid of uint8 images ``(N, H, W)`` (white ink on black as the network sees them)
    or ``(N, H, W, 3)`` (colour)."""
    mosaic, corners = tile(images.numpy().astype(np.float32), min(columns, len(images)), pad=8)
    fig, ax = _mosaic_figure(mosaic)
    _show_pixels(ax, mosaic)
    for (x, y), label in zip(corners, labels, strict=False):
        ax.text(x, y - 1, class_names[int(label)], color="white", fontsize=7, va="bottom")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def training_curves(history: list[dict[str, float]], path: str | Path, title: str = "",
                    points: list[dict[str, float]] | None = None, train_loss_label: str = "train loss") -> Path:
    """Loss and accuracy, training against validation: per epoch, and for a short run also at the
    ``points`` taken during each epoch (fractional epochs). The training loss is labelled as what
    was minimized (``train_loss_label``); ``train_ce``, its plain cross-entropy, is drawn beside it."""
    rows = points or history  # points: the batches since the last point, validation on its first images
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    series = ((ax_loss, "loss", train_loss_label, "-"), (ax_loss, "train_ce", "train cross-entropy", "--"),
              (ax_loss, "val_loss", "validation cross-entropy", "-"), (ax_acc, "accuracy", "train", "-"),
              (ax_acc, "val_accuracy", "validation", "-"))
    marker = "." if points else "o"
    for ax, key, label, style in series:
        if key == "train_ce" and "label-smoothed" not in train_loss_label and "augmented" not in train_loss_label:
            continue  # the same as the loss
        shown = [row for row in rows if key in row]
        if shown:
            ax.plot([r["epoch"] for r in shown], [r[key] for r in shown], style, marker=marker, label=label)
    epochs = [row["epoch"] for row in history]
    kept = [row["epoch"] for row in history if row.get("kept")]
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        if kept and len(history) > 1:  # the epoch whose weights the model is (cnnlab.training.early_stopping)
            ax.axvline(kept[0], color="0.4", linestyle=":", linewidth=1.2, label=f"kept: epoch {int(kept[0])}")
        ax.set_xlabel("epoch" + (" (a point every 1/8 epoch)" if points else ""))
        ax.set_ylabel(label)
        ax.set_xticks(range(0, int(max(epochs, default=1)) + 1) if points else epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Training curves")
    return save_figure(fig, path)


def compared_curves(runs: list[tuple[str, list[dict[str, float]], list[dict[str, float]]]], path: str | Path) -> Path:
    """Several runs' curves overlaid, one colour each: cross-entropy and accuracy, training dashed
    and validation solid. ``runs``: ``(name, history, points)``, points used where a run has them."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for index, (name, history, points) in enumerate(runs):
        rows, colour = points or history, f"C{index}"
        for ax, train_key, val_key in ((ax_loss, "train_ce", "val_loss"), (ax_acc, "accuracy", "val_accuracy")):
            train_key = train_key if any(train_key in r for r in rows) else "loss"
            for key, style, label in ((train_key, "--", f"{name} train"), (val_key, "-", f"{name} validation")):
                shown = [r for r in rows if key in r]
                if shown:
                    ax.plot([r["epoch"] for r in shown], [r[key] for r in shown], style, color=colour, label=label,
                            marker="." if points else "o")
    for ax, label in ((ax_loss, "cross-entropy"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(compared_title(runs))
    return save_figure(fig, path)


def compared_title(runs: list[tuple[str, list[dict[str, float]], list[dict[str, float]]]]) -> str:
    """The compared curves' title: it names validation only where some run has it."""
    if any("val_loss" in row for _, history, points in runs for row in points or history):
        return "Training (dashed) and validation (solid)"
    return "Training (no validation images were held out)"


def lr_finder(lrs: list[float], losses: list[float], suggestion: float, path: str | Path, title: str = "") -> Path:
    """The learning-rate range test: smoothed loss against the learning rate (log scale), with the
    suggestion marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    at = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / suggestion)))
    ax.plot([suggestion], [losses[at]], "o", color="C3", markersize=9, label=f"suggestion: {suggestion:.2g}")
    ax.axvline(suggestion, color="C3", alpha=0.3)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss (smoothed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.suptitle(title or "Learning-rate range test")
    return save_figure(fig, path)


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
    return save_figure(fig, path)


def accuracy_vs_seconds(curves: dict[str, tuple[list[float], list[float]]], path: str | Path,
                        target: float | None = None, dataset: str = "MNIST") -> Path:
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
    ax.set_ylim(max(lowest - 0.5, 100 * (target or 1) - 9), 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    ax.set_title(f"Time to accuracy on {dataset}, this machine")
    return save_figure(fig, path)


def per_class_accuracy(per_class: dict[str, float], path: str | Path, title: str = "") -> Path:
    """Test accuracy of each class as bars, the worst class marked, the axis zoomed to the spread."""
    names, values = list(per_class), [100 * v for v in per_class.values()]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(names) + 2), 3.8))
    worst = int(np.argmin(values))
    bars = ax.bar(names, values, color=["tab:red" if i == worst else "tab:blue" for i in range(len(values))])
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_ylim(max(0.0, min(values) - 2), 100.5)
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.tick_params(axis="x", rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_title(title or "Accuracy per class (worst in red)")
    return save_figure(fig, path)


def labelled_mistakes(images: torch.Tensor, true: list[str], predicted: list[str], confidence: list[float],
                      path: str | Path, title: str = "", columns: int = 8) -> Path:
    """uint8 images ``(N, H, W[, 3])`` the model got wrong, each labelled 'true -> predicted (confidence)'."""
    if not len(images):
        images = torch.zeros(1, 28, 28)
        title = "No test image was misclassified"
    mosaic, corners = tile(images.numpy().astype(np.float32), min(columns, len(images)), pad=12)
    fig, ax = _mosaic_figure(mosaic, scale=0.05)
    _show_pixels(ax, mosaic)
    for (x, y), t, p, c in zip(corners, true, predicted, confidence, strict=False):
        ax.text(x, y - 1, f"{t}->{p} {100 * c:.0f}%", color="tomato", fontsize=8, va="bottom")
    ax.set_title(title or "Most confidently wrong test images: true -> predicted (confidence)")
    return save_figure(fig, path)


def conv_filters(weight: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """First-layer kernels ``(maps, C, k, k)``, each on its own symmetric scale: for grey input red +,
    blue -; for RGB input each kernel as a colour patch (grey: 0, brighter in a channel: weight +)."""
    kernels = weight.detach().float().cpu().numpy()
    kernels = kernels / np.maximum(np.abs(kernels).max(axis=(1, 2, 3), keepdims=True), 1e-12)
    colour = kernels.shape[1] == 3
    kernels = (kernels.transpose(0, 2, 3, 1) + 1) / 2 if colour else kernels[:, 0]
    mosaic, _ = tile(kernels, min(8, len(kernels)), pad=1, fill=0.5 if colour else 0.0)
    fig, ax = _mosaic_figure(mosaic, scale=0.25)
    if colour:
        ax.imshow(mosaic)
    else:
        ax.imshow(mosaic, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(title or ("First-layer filters\n(the colour each one looks for)" if colour else
                           "First-layer filters\n(red: weight on ink, blue: on background)"), fontsize=9)
    return save_figure(fig, path)


def feature_maps(image: torch.Tensor, maps: list[tuple[str, torch.Tensor]], path: str | Path, title: str = "",
                 per_layer: int = 8) -> Path:
    """One input image, then the first ``per_layer`` maps ``(C, H, W)`` of each conv layer, a row a layer.

    Every map is scaled to the input's size and to its own 0-1 range, so weak layers stay visible.
    """
    size = image.shape[1]
    rows = [np.zeros((per_layer, size, size), dtype=np.float32)]  # the input goes in the first cell
    for _, activation in maps:
        chosen = activation[:per_layer].float()[None]
        scaled = torch.nn.functional.interpolate(chosen, size=(size, size), mode="nearest")[0].numpy()
        low = scaled.min(axis=(1, 2), keepdims=True)
        scaled = (scaled - low) / np.maximum(scaled.max(axis=(1, 2), keepdims=True) - low, 1e-12)
        rows.append(np.pad(scaled, ((0, per_layer - len(scaled)), (0, 0), (0, 0))))
    mosaic, corners = tile(np.concatenate(rows), per_layer, pad=4)
    mosaic = plt.get_cmap("magma")(mosaic)[..., :3]
    pixels = image.numpy().astype(np.float32) / 255
    x, y = corners[0]
    mosaic[y : y + size, x : x + size] = pixels[..., None] if pixels.ndim == 2 else pixels
    fig, ax = _mosaic_figure(mosaic, scale=0.06)
    ax.imshow(mosaic)
    names = ["input", *(name for name, _ in maps)]
    for row, name in enumerate(names):
        x, y = corners[row * per_layer]
        ax.text(x, y - 0.5, name, color="white", fontsize=8, va="bottom")
    ax.set_title(title or "Feature maps of one test image after each conv layer", fontsize=9)
    return save_figure(fig, path)
