"""``POST /api/explain``'s answer: the prediction, a heatmap of the pixels that decided it, and every
layer's activations, in a form the page draws directly.

A conv layer comes as one PNG of its maps tiled in a grid (``columns`` to a row, ``gap`` pixels
apart, each ``tile`` high and wide), coloured on one scale for the layer, with each map's own value
range under ``channels``, so the page can say which map the pointer is over and what it holds. A
dense layer comes as its values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.models.attribution import SIGNED, Activation, output_layer
from cnnlab.reporting.inside import MAP_COLUMNS, MAP_GAP, MAX_MAPS, map_mosaic, overlay
from cnnlab.reporting.plots import plt
from cnnlab.using.explanation import Explanation
from cnnlab.using.prediction import Prediction, png_base64


def explain_json(answer: Prediction, explanation: Explanation, method: str, class_names: list[str]) -> dict[str, Any]:
    """The JSON answer for one explained image: what ``/api/predict`` answers (``answer``, with
    details), plus ``method``, ``target``, ``heatmap`` (a PNG of the heatmap over the image the
    network saw) and ``layers``."""
    heat = overlay(explanation.image, explanation.maps[method], method in SIGNED)
    scores = output_layer(explanation.layers)
    return {
        **answer.to_json(), "method": method, "target": explanation.target,
        "heatmap": png_base64((heat * 255).round().astype(np.uint8)),
        "layers": [conv_json(layer) if layer.kind == "conv" else
                   dense_json(layer, class_names if i == scores else None)
                   for i, layer in enumerate(explanation.layers)],
    }


def conv_json(layer: Activation) -> dict[str, Any]:
    """A conv layer's first :data:`MAX_MAPS` maps as one PNG, and where each lies in it."""
    values = layer.values[:MAX_MAPS]
    low, high = layer.value_range
    mosaic = map_mosaic((values - low) / (high - low) if high > low else np.zeros_like(values))
    colours = plt.get_cmap("magma")(np.nan_to_num(mosaic, nan=1.0))[..., :3]
    colours[np.isnan(mosaic)] = 1.0  # white between the maps
    count, height, width = layer.values.shape
    return {"name": layer.name, "kind": "conv", "shape": [count, height, width], "range": [low, high],
            "columns": min(MAP_COLUMNS, len(values)), "tile": [height, width], "gap": MAP_GAP,
            "shown": len(values),
            "channels": [[round(float(m.min()), 4), round(float(m.max()), 4)] for m in values],
            "image": png_base64((colours * 255).round().astype(np.uint8))}


def dense_json(layer: Activation, classes: list[str] | None) -> dict[str, Any]:
    """A dense layer's values; for the output layer, the class each one scores."""
    low, high = layer.value_range
    entry = {"name": layer.name, "kind": "dense", "units": len(layer.values), "range": [low, high],
             "values": [round(float(v), 4) for v in layer.values]}
    if classes is not None and len(classes) == len(layer.values):
        entry["classes"] = classes
    return entry
