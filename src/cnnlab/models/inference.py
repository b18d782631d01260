"""Running a model on images: uint8 pixels to the model's input, and logits out, batched."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError, first_line
from cnnlab.models.files import ModelInfo

EVAL_BATCH = 1000
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (down, right) in pixels


Stats = float | Sequence[float]  # a normalisation mean or std: one number, or one per channel


def per_channel(values: Stats, like: torch.Tensor) -> torch.Tensor:
    """``values`` as ``(1, C, 1, 1)`` (or a scalar tensor) on ``like``'s device, to broadcast over
    images ``(N, C, H, W)``."""
    tensor = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return tensor.view(1, -1, 1, 1) if tensor.ndim else tensor


def background_of(mean: Stats, std: Stats) -> list[float]:
    """The normalised value of an empty (zero) pixel, ``-mean / std``, one per channel."""
    means, stds = (torch.as_tensor(v, dtype=torch.float64) for v in (mean, std))
    return (-means / stds).reshape(-1).tolist()


def channels_first(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (height x width x RGB) -> ``(N, C, H, W)``."""
    return images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)


def to_input(images: torch.Tensor, mean: Stats, std: Stats, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` -> normalised float ``(N, C, H, W)`` in
    channels_last memory. ``mean``, ``std``: of the pixels scaled to 0-1, one number or one per channel.

    channels_last lets oneDNN pick its fastest conv kernels on CPU (1.45-2.2x per training step here).
    """
    x = channels_first(images.to(device)).float().div_(255)
    x = x.sub_(per_channel(mean, x)).div_(per_channel(std, x))
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``(N, classes)`` for normalised inputs ``(N, C, H, W)``, in eval mode, batched."""
    was_training = model.training
    if was_training:  # switching walks every module: a tenth of reading one photo when done each call
        model.eval()
    out = torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
    if was_training:
        model.train()
    return out.float()


def shift_images(inputs: torch.Tensor, down: int, right: int, background: Stats) -> torch.Tensor:
    """Normalised images ``(N, C, H, W)`` moved by whole pixels; the uncovered edge is ``background``
    (one value, or one per channel)."""
    if down == right == 0:
        return inputs
    height, width = inputs.shape[-2:]
    pad = max(abs(down), abs(right))
    empty = per_channel(background, inputs)
    padded = F.pad(inputs - empty, (pad, pad, pad, pad)) + empty
    top, left = pad - down, pad - right
    return padded[:, :, top : top + height, left : left + width].contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits_tta(model: nn.Module, inputs: torch.Tensor, background: Stats,
                       shifts: tuple[tuple[int, int], ...] = TTA_SHIFTS) -> torch.Tensor:
    """Test-time augmentation: log of the mean softmax over the image and its one-pixel shifts.

    Args:
        inputs: normalised images ``(N, C, H, W)``.
        background: the normalised value of an empty pixel, ``-mean / std`` (one per channel).
        shifts: ``(down, right)`` offsets; the default is the image and 4 one-pixel moves (5x the work).
    Returns:
        ``(N, classes)`` log-probabilities, usable wherever logits are.
    """
    # Each chunk of images goes through the network once with all its shifts, not once per shift:
    # reading one photo, the reader's three networks run 3 times instead of 15 (each run costs far
    # more than its few 28x28 images).
    chunk = max(1, EVAL_BATCH // len(shifts))
    parts = []
    for start in range(0, len(inputs), chunk):
        images = inputs[start : start + chunk]
        shifted = torch.cat([shift_images(images, *shift, background) for shift in shifts])
        probabilities = predict_logits(model, shifted.contiguous(memory_format=torch.channels_last)).softmax(1)
        parts.append(probabilities.view(len(shifts), len(images), -1).mean(0).log())
    return torch.cat(parts)


def images_logits(model: nn.Module, info: ModelInfo, images: torch.Tensor, device: str | torch.device = "cpu",
                  tta: bool = False) -> torch.Tensor:
    """Logits ``(N, classes)`` for uint8 images ``(N, H, W)`` or ``(N, H, W, C)``, with test-time
    augmentation if ``tta``."""
    inputs = to_input(images, info.mean, info.std, device)
    model = model.to(device)
    if tta:
        return predict_logits_tta(model, inputs, background_of(info.mean, info.std))
    return predict_logits(model, inputs)


def check_logits(network: nn.Module, num_classes: int, image_size: int, in_channels: int = 1) -> None:
    """Refuse a network whose output is not ``(N, num_classes)`` logits for this data's images."""
    was_training = network.training
    shape_in = (2, in_channels, image_size, image_size)
    try:
        with torch.no_grad():
            shape = tuple(network.eval()(torch.zeros(*shape_in)).shape)
    except RuntimeError as exc:
        raise CnnlabError(f"the network fails on this data's images {shape_in}: {first_line(exc)}") from None
    finally:
        network.train(was_training)
    if shape != (2, num_classes):
        raise CnnlabError(f"the network maps images {shape_in} to {shape}; "
                          f"cnnlab needs logits (2, {num_classes}), one score per class")
