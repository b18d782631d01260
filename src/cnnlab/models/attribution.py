"""Looking inside a network: which pixels decided its answer (attribution, computed by Captum) and
what every layer made of the image (activations).

Methods (``cnnlab explain --method``), each a map ``(H, W)`` of the input's size:

    saliency              how strongly each pixel moves the class's score: the size of the gradient
                          (Simonyan et al. 2014). Quick; noisy.
    integrated-gradients  how much each pixel added to the score, against an empty image: the gradient
                          averaged along the straight path from the empty image to this one, times the
                          pixel's difference from empty (Sundararajan et al. 2017). Signed; pixels
                          equal to the empty background get exactly 0.
    occlusion             how much the score drops when a small square around each pixel is blanked
                          to the background (Zeiler and Fergus 2014). Signed; one forward pass per square.
    gradcam               the last conv layer's maps, each weighted by its mean gradient, summed and
                          scaled up to the image (Selvaraju et al. 2017): where the network looked.
                          Coarse, as that layer is. Needs a conv layer.

"The empty image" is the background: each channel's value for a 0 pixel after normalisation
(``-mean / std``), which is what the network saw around a digit. For an ensemble, the methods explain
the ensemble's answer (Grad-CAM sums over each member's last conv layer); its layers are shown for
its first member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.inference import Stats, per_channel
from cnnlab.models.layers import CropBorder, Residual

METHODS = ("saliency", "integrated-gradients", "occlusion", "gradcam")
IG_STEPS = 50  # Captum's default; the path integral's error on these networks is under 1% of the score
SIGNED = ("integrated-gradients", "occlusion")  # the others are magnitudes (>= 0)


def check_methods(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``methods`` as a tuple, with 'all' spread out; a :class:`CnnlabError` naming an unknown one."""
    chosen: list[str] = []
    for method in (m.strip().lower() for m in methods):
        for name in (METHODS if method == "all" else [method]):
            if name not in METHODS:
                raise CnnlabError(f"unknown method '{name}': use one or more of {', '.join(METHODS)} (or all)")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise CnnlabError(f"no method given: use one or more of {', '.join(METHODS)}")
    return tuple(chosen)


def first_network(model: nn.Module) -> nn.Module:
    """The model itself, or an ensemble's first member (its pictures stand for the others)."""
    return networks(model)[0]


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The (first) network's first conv layer, whose kernels the filter pictures show; None without one."""
    return next((m for m in first_network(model).modules() if isinstance(m, nn.Conv2d)), None)


def output_layer(layers: list[Activation]) -> int | None:
    """The index in ``layers`` of the last dense layer, the one that scores the classes; None without one."""
    return max((i for i, layer in enumerate(layers) if layer.kind == "dense"), default=None)


def networks(model: nn.Module) -> list[nn.Module]:
    """An ensemble's members, or the model alone."""
    members = getattr(model, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [model]


def attribute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | int, method: str,
              background: Stats = 0.0) -> torch.Tensor:
    """Attribution maps ``(N, H, W)`` of normalised ``inputs`` ``(N, C, H, W)`` for class ``targets``.

    Args:
        targets: the class to explain, one for all images or one per image ``(N,)``.
        method: one of :data:`METHODS`.
        background: the normalised value of an empty pixel (one, or one per channel): the
            baseline of integrated gradients and the fill of occlusion.
    Returns:
        One value per pixel, summed over the channels (for saliency and Grad-CAM, >= 0).
    """
    from captum.attr import IntegratedGradients, LayerGradCam, Occlusion, Saliency

    check_methods([method])
    was_training = model.training
    model.eval()
    inputs = inputs.detach().float().contiguous().requires_grad_()  # Captum warns when it must set this
    targets = torch.as_tensor(targets).expand(len(inputs)) if isinstance(targets, int) else targets
    empty = per_channel(background, inputs).expand_as(inputs).contiguous()
    try:
        if method == "saliency":
            maps = Saliency(model).attribute(inputs, target=targets, abs=True)
        elif method == "integrated-gradients":
            maps = IntegratedGradients(model).attribute(inputs, empty, target=targets, n_steps=IG_STEPS,
                                                        internal_batch_size=256)
        elif method == "occlusion":
            window = max(2, inputs.shape[-1] // 7)  # 4 pixels on a 28x28 image: a stroke's width
            maps = Occlusion(model).attribute(inputs, (inputs.shape[1], window, window), target=targets,
                                              strides=(inputs.shape[1], max(1, window // 2), max(1, window // 2)),
                                              baselines=empty, perturbations_per_eval=64)
        else:  # gradcam
            maps = sum(on_input(LayerGradCam(model, layer).attribute(inputs, target=targets, relu_attributions=True),
                                network, layer, inputs.shape[-1])
                       for network in networks(model) for layer in [last_map_layer(network, inputs)])
    finally:
        model.train(was_training)
    return maps.detach().sum(1)


def last_map_layer(network: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """The module whose output is the network's last map ``(N, C, h, w)`` before the dense layers: for a
    conv block, its ReLU after the pooling and batch norm. Grad-CAM weighs that map, as the paper
    does, rather than a conv's raw output, which batch norm may still flip in sign."""
    finished: list[tuple[nn.Module, int]] = []
    hooks = [m.register_forward_hook(lambda m, _i, out: finished.append((m, getattr(out, "ndim", 0))))
             for m in network.modules() if m is not network]
    try:
        with torch.no_grad():
            network(inputs[:1].detach())
    finally:
        for hook in hooks:
            hook.remove()
    maps = [module for module, ndim in finished if ndim == 4]
    if not maps or not has_conv(network):
        raise CnnlabError("gradcam needs a conv layer, and this network has none; use saliency, "
                          "integrated-gradients or occlusion")
    return maps[-1]


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def on_input(maps: torch.Tensor, network: nn.Module, layer: nn.Module, side: int) -> torch.Tensor:
    """A layer's maps ``(N, C, h, w)`` brought to the input's ``side`` x ``side`` pixels, each cell at
    the centre of the input square it sees. A 'valid' conv's or a crop's output sees the middle of the
    image, not the whole of it, so stretching the map over the image would shift it. Where the layers
    before are not a plain chain of convs, pools and crops whose arithmetic gives the map's very size
    (a user's module, a network that turns its input around), the map is stretched."""
    geometry = cell_geometry(network, layer, side)
    if geometry is None or tuple(geometry[2]) != tuple(maps.shape[-2:]):
        return F.interpolate(maps, size=(side, side), mode="bilinear", align_corners=False)
    starts, jumps, sizes = geometry
    pixels = torch.arange(side, dtype=torch.float32)
    cells = [(pixels - start) / jump / max(n - 1, 1) * 2 - 1  # in grid_sample's [-1, 1]
             for start, jump, n in zip(starts, jumps, sizes, strict=True)]
    grid = torch.stack(torch.meshgrid(cells[0], cells[1], indexing="ij")[::-1], dim=-1)
    # Beyond the outermost cells' centres the map fades to 0 within one cell: nothing there was seen
    # by a cell at its centre, and repeating the edge cell would paint a wide band that it never saw.
    return F.grid_sample(maps, grid.expand(len(maps), -1, -1, -1), mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def cell_geometry(network: nn.Module, layer: nn.Module, side: int
                  ) -> tuple[list[float], list[float], list[int]] | None:
    """For rows and columns: where ``layer``'s first cell is centred and how far apart its cells are,
    in input pixels, and the map's size, worked out from the kernels, strides, paddings, dilations
    and crops in front of it; None when ``layer`` is not on that chain."""
    start, jump, size = [0.0, 0.0], [1.0, 1.0], [side, side]
    for module in _chain(network):
        if isinstance(module, CropBorder):
            for axis in (0, 1):
                start[axis] += module.pixels * jump[axis]
                size[axis] -= 2 * module.pixels
        elif isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            kernel, stride, dilation = (_pair(getattr(module, key, 1)) for key in ("kernel_size", "stride", "dilation"))
            for axis in (0, 1):
                span = (kernel[axis] - 1) * dilation[axis]
                padding = span // 2 if module.padding == "same" else _pair(module.padding)[axis]
                steps = size[axis] + 2 * padding - span - 1
                size[axis] = (-(-steps // stride[axis]) if getattr(module, "ceil_mode", False)
                              else steps // stride[axis]) + 1
                start[axis] += (span / 2 - padding) * jump[axis]
                jump[axis] *= stride[axis]
        if module is layer:
            return start, jump, size
    return None


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _chain(module: nn.Module):
    """Every module, each after those inside it (the order their forward passes end); a residual
    block's shortcut is left out: its main path sets where its output's cells lie."""
    for child in (module.body if isinstance(module, Residual) else module).children():
        yield from _chain(child)
    yield module


@dataclass
class Activation:
    """One layer's output for one image: ``values`` ``(C, H, W)`` for a conv layer, ``(units,)`` for a dense one."""

    name: str  # "conv 1": the kind and its number among the layers of that kind
    kind: str  # "conv" or "dense"
    values: np.ndarray

    @property
    def value_range(self) -> tuple[float, float]:
        return float(self.values.min()), float(self.values.max())


@torch.no_grad()
def layer_outputs(model: nn.Module, inputs: torch.Tensor, kinds: tuple[type, ...] = (nn.Conv2d, nn.Linear)
                  ) -> list[tuple[str, torch.Tensor]]:
    """``(module name, output)`` of every layer of ``kinds`` in the (first) network, in the order they
    ran, for normalised ``inputs`` ``(N, C, H, W)``."""
    found: list[tuple[str, torch.Tensor]] = []
    network = first_network(model)
    hooks = [layer.register_forward_hook(lambda _m, _i, out, name=name: found.append((name, out.detach())))
             for name, layer in network.named_modules() if isinstance(layer, kinds)]
    was_training = network.training
    try:
        network.eval()(inputs)
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    return found


def conv_activations(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``(layer name, output (N, C, H, W))`` of every Conv2d for normalised ``inputs``, in order."""
    found = layer_outputs(model, inputs, (nn.Conv2d,))
    return [(f"conv {i + 1} ({name})", out) for i, (name, out) in enumerate(found)]


def activations(model: nn.Module, inputs: torch.Tensor) -> list[Activation]:
    """Every conv and dense layer's output for one normalised image ``(1, C, H, W)``, in order."""
    counts = {"conv": 0, "dense": 0}
    layers = []
    for _, out in layer_outputs(model, inputs[:1]):
        kind = "conv" if out.dim() == 4 else "dense"
        counts[kind] += 1
        layers.append(Activation(f"{kind} {counts[kind]}", kind, out[0].float().numpy()))
    return layers
