"""Attribution maps (Captum) and layer activations: shapes for every kind of network, where the maps
fall for a digit in a corner, and Grad-CAM's placement of a layer's cells on the image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab import train
from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.models.attribution import (
    METHODS,
    activations,
    attribute,
    cell_geometry,
    check_methods,
    has_conv,
    last_map_layer,
    networks,
    on_input,
)
from cnnlab.models.inference import background_of, to_input
from cnnlab.models.layers import build_spec
from cnnlab.models.registry import MODELS, build_model

NETWORKS = [  # (name or spec, channels, size): every registry model, a spec with a residual block, colour
    *((name, 1, 28) for name in MODELS), ("conv16k3-same res32s2 gap", 1, 28), ("cnn-small", 3, 32),
]


def make(name: str, channels: int, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if " " in name:
        return build_spec(name, 10, channels, size)
    return build_model(name, 10, size, channels)


@pytest.mark.parametrize(("name", "channels", "size"), NETWORKS)
def test_every_method_gives_a_map_of_the_input_size(name, channels, size):
    model = make(name, channels, size)
    inputs = torch.randn(3, channels, size, size)
    for method in METHODS:
        if method == "gradcam" and name == "mlp":
            with pytest.raises(CnnlabError, match="gradcam needs a conv layer"):
                attribute(model, inputs, 1, method)
            continue
        maps = attribute(model, inputs, torch.tensor([0, 1, 2]), method, [-0.4] * channels)
        assert maps.shape == (3, size, size), (name, method)
        assert torch.isfinite(maps).all()
        if method in ("saliency", "gradcam"):
            assert (maps >= 0).all()
    assert model.training, "attribution leaves the model in the mode it found it in"


def test_layers_are_every_conv_and_dense_in_order():
    model = make("cnn-fast", 1, 28)
    layers = activations(model, torch.randn(1, 1, 28, 28))
    assert [(layer.kind, layer.values.shape) for layer in layers] == [
        ("conv", (16, 20, 20)), ("conv", (32, 8, 8)), ("dense", (256,)), ("dense", (10,))]
    assert layers[0].name.startswith("conv 1") and layers[3].name.startswith("dense 2")
    low, high = layers[0].value_range
    assert low < high


def test_methods_are_checked():
    assert check_methods(["all"]) == METHODS
    assert check_methods(["gradcam", "saliency", "gradcam"]) == ("gradcam", "saliency")
    with pytest.raises(CnnlabError, match=r"unknown method 'heat'.*saliency"):
        check_methods(["heat"])


@pytest.mark.parametrize(("spec", "start", "jump"), [
    ("conv8k5 maxpool conv8k3 maxpool", 5.5, 4),  # valid convs: the cells sit in the middle of the image
    ("crop2 conv8k5 maxpool conv8k3 maxpool", 7.5, 4),
    ("conv8k3-same maxpool conv8k3-same maxpool", 1.5, 4),
])
def test_a_layers_cells_land_on_the_pixels_they_see(spec, start, jump):
    network = build_spec(spec + " dense10", 10, 1, 28)
    layer = [m for m in network if isinstance(m, torch.nn.MaxPool2d)][-1]
    side = network[: list(network).index(layer) + 1](torch.zeros(1, 1, 28, 28)).shape[-1]
    for row, column in [(0, 0), (side - 1, 1)]:
        cells = torch.zeros(1, 1, side, side)
        cells[0, 0, row, column] = 1
        placed = on_input(cells, network, layer, 28)[0, 0]
        y, x = divmod(int(placed.argmax()), 28)
        assert abs(y - (start + row * jump)) <= 0.5 and abs(x - (start + column * jump)) <= 0.5, (spec, row, column)


def test_the_arithmetic_predicts_every_registry_networks_last_map():
    inputs = torch.zeros(1, 1, 28, 28)
    for name in MODELS:
        for network in networks(make(name, 1, 28)):
            if not has_conv(network):
                continue
            layer = last_map_layer(network, inputs)
            shapes = []
            hook = layer.register_forward_hook(lambda _m, _i, out, found=shapes: found.append(tuple(out.shape[-2:])))
            network.eval()(inputs)
            hook.remove()
            geometry = cell_geometry(network, layer, 28)
            if name == "seed-cnn-as-printed":  # it turns its input around: its map is stretched instead
                assert geometry is None or tuple(geometry[2]) != shapes[0]
            else:
                assert geometry is not None and tuple(geometry[2]) == shapes[0], name


def corner_digits(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits shrunk to 14x14, each in one of the four corners of an empty 28x28 image."""
    generator = torch.Generator().manual_seed(seed)
    small = F.interpolate(images[:, None].float(), size=(14, 14), mode="area")[:, 0].round().to(torch.uint8)
    corners = torch.randint(0, 4, (len(images),), generator=generator)
    placed = torch.zeros_like(images)
    for i, corner in enumerate(corners.tolist()):
        row, column = divmod(corner, 2)
        placed[i, row * 14 : row * 14 + 14, column * 14 : column * 14 + 14] = small[i]
    return placed, corners


def test_the_maps_of_a_digit_in_a_corner_lie_in_that_corner(mnist):
    train_x, _ = corner_digits(mnist.train_images[:8000], 1)
    test_x, corners = corner_digits(mnist.test_images[:200], 2)
    data = Dataset("corners", mnist.class_names, train_x, mnist.train_labels[:8000], test_x,
                   mnist.test_labels[:200], test_x[:100], mnist.test_labels[:100])
    run = train(dataset=data, model="cnn", epochs=2, augment="none", progress=False, seed=0)
    inputs = to_input(test_x, run.info.mean, run.info.std)
    answers = run.model.eval()(inputs).argmax(1)
    background = background_of(run.info.mean, run.info.std)
    measured = {}
    for method in METHODS:
        size = attribute(run.model, inputs, answers, method, background).abs()
        quarters = size.view(-1, 2, 14, 2, 14).sum((2, 4)).view(-1, 4)
        share = quarters.gather(1, corners[:, None])[:, 0] / quarters.sum(1).clamp(min=1e-12)
        measured[method] = (float(share.min()), float((quarters.argmax(1) == corners).float().mean()))
    # Integrated gradients and occlusion give an empty pixel exactly 0 (it equals the baseline); a
    # gradient (saliency) is not 0 there, but is largest in the digit's corner (95% of images here);
    # Grad-CAM's coarse 4x4 cells put it there for 81%.
    assert measured["integrated-gradients"][0] > 0.99 and measured["occlusion"][0] > 0.85, measured
    assert measured["saliency"][1] >= 0.85 and measured["gradcam"][1] >= 0.65, measured
