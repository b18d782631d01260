"""The model registry: every network cnnlab ships, by name, stored as its layer spec.

Each model takes a float batch of shape ``(N, C, H, W)`` (normalised pixels) and returns
logits of shape ``(N, num_classes)``; softmax lives in the loss, as in PyTorch practice.
Every network a spec can say is a spec here (cnnlab.models.layers); only the article's CNN as
printed and the ensemble stay classes. ``--model`` also takes a spec, or a file holding one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.files import names_a_file
from cnnlab.models.layers import MAX_SPEC_CHARACTERS, SpecError, build_spec, keras_init, parse
from cnnlab.models.timm_nets import TIMM, checked_name, is_timm, timm_network


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

    def __init__(self, num_classes: int = 10, image_size: int = 28, in_channels: int = 1) -> None:
        super().__init__()
        if in_channels != 1:
            raise CnnlabError("seed-cnn-as-printed reads grey images only (1 channel); use seed-cnn for colour")
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


class Ensemble(nn.Module):
    """``members`` copies of one architecture, each with its own random initialisation.

    In eval mode the output is the log of the members' mean softmax, usable wherever logits
    are (softmax of it is the averaged probability). In training mode it returns every member's
    logits stacked as ``(N, classes, members)`` so each member learns from its own loss
    (cnnlab.training.loop.training_loss), as independently trained networks would.
    """

    def __init__(self, build: Callable[..., nn.Module], members: int, num_classes: int = 10,
                 image_size: int = 28, in_channels: int = 1) -> None:
        super().__init__()
        self.members = nn.ModuleList(build(num_classes=num_classes, image_size=image_size, in_channels=in_channels)
                                     for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(x) for member in self.members], dim=-1)
        if self.training:
            return logits
        return logits.float().log_softmax(1).logsumexp(-1) - math.log(len(self.members))


def ensemble(build: Callable[..., nn.Module], members: int) -> Callable[..., nn.Module]:
    """A registry builder for an :class:`Ensemble` of ``members`` networks made by ``build``."""
    return functools.partial(Ensemble, build, members)


# The accurate preset's network, and the base of cnn-fast and cnn-wide. Two conv blocks with batch
# norm, which lets a high one-cycle learning rate converge in one or two epochs. Each block pools
# *before* batch norm and ReLU: max-pooling commutes with ReLU, and on a CPU the elementwise work on
# the full-size conv output costs more than the conv itself, so this order is 1.5x faster per epoch
# at the same accuracy. 'valid' convs spend no FLOPs on the empty border of centred digits; a conv
# followed by batch norm needs no bias.
CNN = "conv24k5-nobias-linear maxpool bn relu conv32k3-nobias-linear maxpool bn relu dense256"
# The fast preset's: cnn with 16 first-layer maps, on the centre 24x24. Cropping 2 border pixels
# cuts the conv work by a third, and 16 maps instead of 24 cut the costliest layer, the first, by a
# third; on MNIST validation this lost 0.1 points after one epoch. Not for images whose content
# reaches the border (Fashion-MNIST): use cnn there.
CNN_FAST = "crop2 conv16k5-nobias-linear maxpool bn relu conv32k3-nobias-linear maxpool bn relu dense256"
# cnn-fast's network on the whole frame, for images that fill it (clothing, a user's photos): the fast
# preset trains it 3 epochs there. On Fashion-MNIST validation (seed 1) 3 epochs at batch 256 reached
# 91.80% in 8.8 s, against 91.25% in 8.6 s for 2 epochs of cnn.
CNN_SMALL = "conv16k5-nobias-linear maxpool bn relu conv32k3-nobias-linear maxpool bn relu dense256"
# cnn made wider and one conv deeper; about 4x the work of cnn per image. With strong augmentation it
# keeps improving for many more epochs, where cnn levels off.
CNN_WIDE = ("conv32k5-nobias-linear maxpool bn relu conv64k3-nobias-linear bn relu "
            "conv64k3-nobias-linear maxpool bn relu dense256")


@dataclass(frozen=True)
class Architecture:
    """A registered network: its name, a one-line description, and its layer spec, or for what a
    spec cannot say, the class (or function) that builds it."""

    name: str
    description: str
    spec: str | None = None
    build: Callable[..., nn.Module] | None = None

    def make(self, num_classes: int = 10, image_size: int = 28, in_channels: int = 1) -> nn.Module:
        if self.spec is not None:
            return build_spec(self.spec, num_classes, in_channels, image_size)
        return self.build(num_classes=num_classes, image_size=image_size, in_channels=in_channels)


MODELS: dict[str, Architecture] = {
    entry.name: entry
    for entry in (
        Architecture("cnn", "the accurate preset's: 2 conv+BN blocks (24, 32 maps), dense 256", CNN),
        Architecture("cnn-fast", "default (fast preset): cnn with 16 first maps on the centre 24x24", CNN_FAST),
        Architecture("cnn-small", "cnn-fast on the whole frame: the fast preset's for images that fill it",
                     CNN_SMALL),
        Architecture("cnn-wide", "3 conv+BN layers (32, 64, 64 maps), dense 256", CNN_WIDE),
        Architecture("cnn-wide-x3", "the best preset's: 3 cnn-wide nets, softmax averaged",
                     build=ensemble(functools.partial(build_spec, CNN_WIDE), 3)),
        Architecture("mlp", "the article's MLP: dense 784 relu, dense 10", "init=glorot dense784"),
        Architecture("seed-cnn", "the article's CNN as described: conv 32 5x5, pool, dropout, dense 128",
                     "init=glorot conv32k5-same maxpool dropout0.2 dense128"),
        Architecture("seed-cnn-as-printed", "the article's CNN as printed: stride 5 over a 1x28 image of 28 channels",
                     build=SeedCnnAsPrinted),
        # LeNet-5 (LeCun et al. 1998), simplified as usual: full C3 connectivity and a linear output in
        # place of RBF units; the 28x28 input is padded by 2 ('same') to give the paper's 32x32.
        Architecture("lenet5", "LeNet-5 (LeCun et al. 1998): conv 6, conv 16, conv 120, dense 84, tanh",
                     "conv6k5-same-tanh avgpool conv16k5-tanh avgpool conv120k5-tanh dense84-tanh"),
        Architecture("pytorch-example", "pytorch/examples mnist Net: conv 32, conv 64, pool, fc 128",
                     "conv32k3 conv64k3 maxpool dropout0.25 dense128 dropout0.5"),
        Architecture("keras-convnet", "keras-io mnist_convnet: conv 32, pool, conv 64, pool, dense",
                     "init=glorot conv32k3 maxpool conv64k3 maxpool flatten dropout0.5 dense"),
    )
}


def spec_file(model: str) -> Path | None:
    """The spec file ``--model`` names, if it names one: a path with a suffix, to an existing file."""
    path = Path(model)
    return path if path.suffix and names_a_file(model) else None


def resolve_model(model: str) -> str:
    """What ``--model`` names, as a registry name or a spec's text: a registry name stays as it is,
    a file's spec is read from it, and anything else must be a spec itself."""
    if model in MODELS:
        return model
    if is_timm(model):
        return TIMM + checked_name(model)
    path = Path(model)
    if spec_file(model):
        if path.stat().st_size > MAX_SPEC_CHARACTERS:
            raise CnnlabError(f"{path}: {path.stat().st_size:,} bytes is too long for a spec file; "
                              f"at most {MAX_SPEC_CHARACTERS:,}")
        try:
            model = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CnnlabError(f"{path}: cannot read it as a spec file ({exc})") from None
    try:
        return parse(model).text
    except SpecError as exc:
        if len(model.split()) == 1 and not path.suffix:
            raise CnnlabError(f"unknown model '{model}': not a model name ({', '.join(MODELS)}; see "
                              f"'cnnlab models') nor a layer spec ({exc})") from None
        raise


def build(model: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, pretrained: bool = False
          ) -> nn.Module:
    """Build a fresh, randomly initialised network that maps ``(N, in_channels, image_size,
    image_size)`` images to ``(N, num_classes)`` logits.

    Args:
        model: a key of :data:`MODELS`, a layer spec (``"conv32k5-same maxpool dropout0.2 dense128"``,
            see cnnlab.models.layers) or the path of a file holding one.
        num_classes: size of the output layer, when the spec leaves it out.
        in_channels: channels of the input images (1: grey).
        image_size: side length of the square input images.

        pretrained: for a ``timm:NAME`` backbone, its ImageNet weights from the Hub (cnnlab.models.timm_nets).

    Raises :class:`CnnlabError` naming the layer that does not fit, before anything is allocated.
    """
    model = resolve_model(model)
    if is_timm(model):
        return timm_network(model, num_classes, in_channels, pretrained)
    if model in MODELS:
        return MODELS[model].make(num_classes, image_size, in_channels)
    return build_spec(model, num_classes, in_channels, image_size)


def build_model(name: str, num_classes: int = 10, image_size: int = 28, in_channels: int = 1,
                pretrained: bool = False) -> nn.Module:
    """:func:`build` with the image size before the channels: ``build_model("cnn", 10, 28)``."""
    return build(name, num_classes, in_channels, image_size, pretrained)


def model_spec(model: str) -> str | None:
    """The layer spec behind ``model`` (a registry name, a spec or a spec file), or None for a
    registered class."""
    model = resolve_model(model)
    if is_timm(model):
        return None
    return MODELS[model].spec if model in MODELS else model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_image(model: nn.Module, image_size: int = 28, in_channels: int = 1) -> int:
    """Forward-pass FLOPs for one image (a multiply-add counts as 2), from PyTorch's counter."""
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter, torch.no_grad():
        model(torch.zeros(1, in_channels, image_size, image_size, device=next(model.parameters()).device))
    model.train(was_training)
    return int(counter.get_total_flops())
