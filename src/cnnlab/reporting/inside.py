"""Pictures of what happens inside a network: attribution heatmaps over the image (``cnnlab explain``,
the report's "why it was wrong") and every layer's activations for one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.gridspec import GridSpec

from cnnlab.models.attribution import SIGNED, Activation, output_layer
from cnnlab.reporting.plots import plt, save_figure, tile  # plots sets matplotlib's file-only backend

TITLES = {"saliency": "saliency", "integrated-gradients": "integrated gradients", "occlusion": "occlusion",
          "gradcam": "Grad-CAM"}
MAX_MAPS = 64  # a conv layer's maps drawn (the first ones); the rest are said in its title
MAP_COLUMNS = 16
MAP_GAP = 1  # pixels between two maps


def overlay(image: np.ndarray, heat: np.ndarray, signed: bool) -> np.ndarray:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` image with the attribution ``heat`` ``(H, W)`` painted over it:
    RGB floats in 0-1. ``signed``: red where a pixel speaks for the class, blue where against;
    otherwise yellow-red by size. Strong pixels are opaque, weak ones let the image show through."""
    base = image.astype(np.float32) / 255
    base = np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base
    base = 0.25 + 0.5 * base  # dimmed, so the colours read on white strokes as on black ground
    top = float(np.abs(heat).max())
    scaled = heat / top if top > 0 else np.zeros_like(heat)
    if signed:
        colour = np.where(scaled[..., None] >= 0, np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.3, 0.95]))
    else:
        colour = plt.get_cmap("hot")(0.35 + 0.6 * np.clip(scaled, 0, 1))[..., :3]
    alpha = np.clip(np.abs(scaled), 0, 1)[..., None] ** 0.7
    return base * (1 - alpha) + colour * alpha


def _show(ax: plt.Axes, pixels: np.ndarray, title: str) -> None:
    ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255 if pixels.dtype == np.uint8 else 1,
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def map_mosaic(values: np.ndarray) -> np.ndarray:
    """A conv layer's first :data:`MAX_MAPS` maps ``(C, h, w)`` tiled ``MAP_COLUMNS`` to a row,
    :data:`MAP_GAP` pixels apart (NaN between), with no border around the grid."""
    mosaic = tile(values[:MAX_MAPS], min(MAP_COLUMNS, len(values)), pad=MAP_GAP, fill=np.nan)[0]
    return mosaic[MAP_GAP:-MAP_GAP, MAP_GAP:-MAP_GAP]


def _conv_row(ax: plt.Axes, layer: Activation) -> None:
    mosaic = map_mosaic(layer.values)
    low, high = layer.value_range
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="magma", vmin=low, vmax=high if high > low else low + 1,
              interpolation="nearest")
    count, height, width = layer.values.shape
    shown = f", the first {MAX_MAPS} shown" if count > MAX_MAPS else ""
    ax.set_title(f"{layer.name}: {count} maps {height}x{width}{shown}; values {low:.2f} to {high:.2f} "
                 "(dark: low, bright: high)", fontsize=8, loc="left")
    ax.set_axis_off()


def _dense_row(ax: plt.Axes, layer: Activation, class_names: list[str] | None, chosen: int | None) -> None:
    values = layer.values
    colours = ["#c0392b" if v < 0 else "#2c7fb8" for v in values]
    if class_names is not None and chosen is not None:
        colours[chosen] = "#f39c12"
    ax.bar(np.arange(len(values)), values, color=colours, width=0.85 if len(values) <= 32 else 1.0)
    ax.axhline(0, color="black", linewidth=0.5)
    low, high = layer.value_range
    what = "one score per class (orange: the answer)" if class_names is not None else f"{len(values)} units"
    ax.set_title(f"{layer.name}: {what}; values {low:.2f} to {high:.2f}", fontsize=8, loc="left")
    if class_names is not None:
        ax.set_xticks(np.arange(len(values)), class_names, fontsize=7, rotation=0 if len(values) <= 12 else 90)
    else:
        ax.set_xticks([])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(-0.6, len(values) - 0.4)


def explanation(photo: np.ndarray, seen: np.ndarray, maps: dict[str, np.ndarray], layers: list[Activation],
                class_names: list[str], answer: int, target: int, title: str, path: str | Path) -> Path:
    """One PNG: the ``photo``, the input ``seen`` by the network, a heatmap over it for each method in
    ``maps``, then every layer in ``layers`` (a grid of maps for a conv layer, bars for a dense one)."""
    panels = 2 + len(maps)
    heights = [2.4]
    for layer in layers:
        if layer.kind == "conv":
            mosaic = map_mosaic(layer.values)
            heights.append(min(4.5, 0.35 + 9.6 * mosaic.shape[0] / mosaic.shape[1]))
        else:
            heights.append(1.5)
    fig = plt.figure(figsize=(max(10, 2 * panels), sum(heights) + 0.6))
    grid = GridSpec(len(heights), 1, figure=fig, height_ratios=heights, hspace=0.55)
    top = grid[0].subgridspec(1, panels, wspace=0.08)
    _show(fig.add_subplot(top[0]), photo, "your image")
    _show(fig.add_subplot(top[1]), seen, f"what the network saw ({seen.shape[1]}x{seen.shape[0]})")
    for k, (method, heat) in enumerate(maps.items()):
        signed = method in SIGNED
        note = "red: for, blue: against" if signed else "bright: most"
        _show(fig.add_subplot(top[2 + k]), overlay(seen, heat, signed), f"{TITLES[method]}\n({note})")
    scores = output_layer(layers)
    for row, layer in enumerate(layers, 1):
        ax = fig.add_subplot(grid[row])
        if layer.kind == "conv":
            _conv_row(ax, layer)
        else:
            final = row - 1 == scores and len(layer.values) == len(class_names)
            _dense_row(ax, layer, class_names if final else None, answer if final else None)
    because = "" if target == answer else f"; the maps explain '{class_names[target]}'"
    fig.suptitle(f"{title}: '{class_names[answer]}'{because}", fontsize=10)
    return save_figure(fig, path)


def why_wrong(images: np.ndarray, heats: np.ndarray, true: list[str], predicted: list[str],
              path: str | Path, columns: int = 6) -> Path:
    """uint8 images ``(N, H, W[, 3])`` the model got wrong, each beside its saliency for the predicted
    class: which pixels made it say what it said."""
    count = max(len(images), 1)
    columns = min(columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2 * columns * 1.1, rows * 1.35), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, (image, heat) in enumerate(zip(images, heats, strict=True)):
        r, c = divmod(k, columns)
        _show(axes[r, 2 * c], image, f"{true[k]} -> {predicted[k]}")
        _show(axes[r, 2 * c + 1], overlay(image, heat, signed=False), f"why {predicted[k]}")
    if not len(images):
        axes[0, 0].set_title("No test image was misclassified", fontsize=9)
    fig.suptitle("Most confidently wrong: true -> predicted, and the saliency of the predicted class",
                 fontsize=9)
    return save_figure(fig, path)
