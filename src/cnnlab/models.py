"""The model registry: every network cnnlab can train, by name.

Each model takes a float batch of shape ``(N, 1, H, W)`` (normalised pixels) and returns
logits of shape ``(N, num_classes)``; softmax lives in the loss, as in PyTorch practice.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError


def keras_init(model: nn.Module) -> nn.Module:
    """Initialise as Keras does: Glorot-uniform weights, zero biases (the article used Keras)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def mlp(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The article's MLP: Dense(784, relu) -> Dense(10)."""
    pixels = image_size * image_size
    return keras_init(nn.Sequential(nn.Flatten(), nn.Linear(pixels, pixels), nn.ReLU(), nn.Linear(pixels, num_classes)))


def seed_cnn(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The article's CNN as its text describes it: 32 5x5 'same' convs, pool, dropout, dense 128."""
    side = image_size // 2
    return keras_init(nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(32 * side * side, 128), nn.ReLU(), nn.Linear(128, num_classes),
    ))


class SeedCnnAsPrinted(nn.Module):
    """What the article's printed Keras code really computes.

    ``Conv2D(32, 5, 5, padding='same', input_shape=(1, 28, 28))`` in Keras 2+ means 32 5x5
    filters with **stride 5**, and a channels-last input of shape (1, 28, 28) is an image of
    height 1 and width 28 with 28 channels: each image column becomes a channel and the rows
    become the width. The conv therefore sees the digit as 28 one-pixel rows, 5 at a time,
    giving a 1x6 map (TF 'same' pads height by 2+2 and width by 1+1). A 2x2 pool only runs
    with 'same' padding (a 'valid' one has no room in a height of 1), leaving 1x3x32 = 96
    features for the dense layers. That is why the article's CNN lost to its MLP.
    """

    def __init__(self, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        width = -(-image_size // 5)  # ceil: TF 'same' output size for stride 5
        pad_w = max((width - 1) * 5 + 5 - image_size, 0)
        self.conv = nn.Conv2d(image_size, 32, 5, stride=5, padding=(2, pad_w // 2))
        self.pool = nn.MaxPool2d((1, 2), ceil_mode=True)  # 'same' 2x2 pool over a height of 1
        self.head = nn.Sequential(
            nn.Dropout(0.2), nn.Flatten(), nn.Linear(32 * -(-width // 2), 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )
        keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 1, rows, cols) -> (N, cols as channels, 1, rows): Keras' channels-last reading.
        x = x.permute(0, 3, 1, 2)
        return self.head(self.pool(torch.relu(self.conv(x))))


def lenet5(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): conv 6 -> avgpool -> conv 16 -> avgpool -> conv 120 -> 84.

    Simplified as usual: full C3 connectivity and a linear output in place of RBF units.
    The 28x28 input is padded by 2 to give the paper's 32x32.
    """
    side = (image_size // 2 - 4) // 2 - 4  # 'same' conv, pool, 5x5 conv, pool, 5x5 conv: 1 for 28x28
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
        nn.Linear(120 * side * side, 84), nn.Tanh(), nn.Linear(84, num_classes),
    )


def cnn(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The ``accurate`` preset's network, and the base of ``cnn-fast`` and ``cnn-wide``.

    Two conv blocks with batch norm, which lets a high one-cycle learning rate converge in
    one or two epochs. Each block pools *before* batch norm and ReLU: max-pooling commutes
    with ReLU, and on a CPU the elementwise work on the full-size conv output costs more
    than the conv itself, so this order is 1.5x faster per epoch at the same accuracy.
    'valid' convs spend no FLOPs on the empty border of centred digits.
    """
    side = ((image_size - 4) // 2 - 2) // 2  # 5 for 28x28 input
    return nn.Sequential(
        nn.Conv2d(1, 24, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(24), nn.ReLU(),
        nn.Conv2d(24, 32, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )


class CropBorder(nn.Module):
    """Drop ``pixels`` from each edge: MNIST centres each digit's 20x20 box in a 28x28 frame, so
    the outer 2 pixels are nearly always empty and cost convolution work for nothing."""

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pixels
        return x[:, :, p:-p, p:-p]


def cnn_fast(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The ``fast`` preset's network: :func:`cnn` with 16 first-layer maps, on the centre 24x24.

    Cropping 2 border pixels cuts the conv work by a third (20x20 instead of 24x24 outputs,
    then 8x8 instead of 10x10), and 16 maps instead of 24 cut the costliest layer, the first, by a
    third; on MNIST validation this lost 0.1 points after one epoch. Not for images whose
    content reaches the border (Fashion-MNIST): use ``cnn`` there.
    """
    side = ((image_size - 4 - 4) // 2 - 2) // 2  # 4 for 28x28 input
    return nn.Sequential(
        CropBorder(2),
        nn.Conv2d(1, 16, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )


def cnn_wide(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """:func:`cnn` made wider and one conv deeper (32, 64, 64 maps); three make the ``best`` preset's ensemble.

    About 4x the work of ``cnn`` per image; with strong augmentation it keeps improving for
    many more epochs, where ``cnn`` levels off.
    """
    side = ((image_size - 4) // 2 - 4) // 2  # 4 for 28x28 input
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * side * side, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )


def pytorch_example(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """pytorch/examples mnist/main.py's Net: conv 32 -> conv 64 -> pool -> dropout -> fc 128."""
    side = (image_size - 4) // 2  # 12 for 28x28: the example's fc1 takes 9216 = 64 * 12 * 12
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes),
    )


def keras_convnet(num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """The keras-io mnist_convnet example: conv 32 -> pool -> conv 64 -> pool -> dropout -> dense."""
    side = ((image_size - 2) // 2 - 2) // 2  # 5 for 28x28
    return keras_init(nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * side * side, num_classes),
    ))


class Ensemble(nn.Module):
    """``members`` copies of one architecture, each with its own random initialisation.

    In eval mode the output is the log of the members' mean softmax, usable wherever logits
    are (softmax of it is the averaged probability). In training mode it returns every member's
    logits stacked as ``(N, classes, members)`` so each member learns from its own loss
    (:func:`cnnlab.train.training_loss`), as independently trained networks would.
    """

    def __init__(self, build: Callable[..., nn.Module], members: int, num_classes: int = 10,
                 image_size: int = 28) -> None:
        super().__init__()
        self.members = nn.ModuleList(build(num_classes=num_classes, image_size=image_size) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(x) for member in self.members], dim=-1)
        if self.training:
            return logits
        return logits.float().log_softmax(1).logsumexp(-1) - math.log(len(self.members))


def ensemble(build: Callable[..., nn.Module], members: int) -> Callable[..., nn.Module]:
    """A registry builder for an :class:`Ensemble` of ``members`` networks made by ``build``."""
    return functools.partial(Ensemble, build, members)


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: its builder and a one-line description."""

    name: str
    build: Callable[..., nn.Module]
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("cnn", cnn, "the accurate preset's: 2 conv+BN blocks (24, 32 maps), dense 256"),
        ModelSpec("cnn-fast", cnn_fast, "default (fast preset): cnn with 16 first maps on the centre 24x24"),
        ModelSpec("cnn-wide", cnn_wide, "3 conv+BN layers (32, 64, 64 maps), dense 256"),
        ModelSpec("cnn-wide-x3", ensemble(cnn_wide, 3), "the best preset's: 3 cnn-wide nets, softmax averaged"),
        ModelSpec("mlp", mlp, "the article's MLP: dense 784 relu, dense 10"),
        ModelSpec("seed-cnn", seed_cnn, "the article's CNN as described: conv 32 5x5, pool, dropout, dense 128"),
        ModelSpec(
            "seed-cnn-as-printed", SeedCnnAsPrinted,
            "the article's CNN as printed: stride 5 over a 1x28 image of 28 channels",
        ),
        ModelSpec("lenet5", lenet5, "LeNet-5 (LeCun et al. 1998): conv 6, conv 16, conv 120, dense 84, tanh"),
        ModelSpec("pytorch-example", pytorch_example, "pytorch/examples mnist Net: conv 32, conv 64, pool, fc 128"),
        ModelSpec("keras-convnet", keras_convnet, "keras-io mnist_convnet: conv 32, pool, conv 64, pool, dense"),
    )
}


def build_model(name: str, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """Build a fresh, randomly initialised model from the registry.

    Args:
        name: a key of :data:`MODELS`.
        num_classes: size of the output layer.
        image_size: side length of the square grey input images.
    """
    try:
        spec = MODELS[name]
    except KeyError:
        raise CnnlabError(f"unknown model '{name}': use one of {', '.join(MODELS)} (see 'cnnlab models')") from None
    return spec.build(num_classes=num_classes, image_size=image_size)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_image(model: nn.Module, image_size: int = 28) -> int:
    """Forward-pass FLOPs for one image (a multiply-add counts as 2), from PyTorch's counter."""
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, image_size, image_size))
    model.train(was_training)
    return int(counter.get_total_flops())
