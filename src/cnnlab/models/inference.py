"""Running a model on images: uint8 pixels to the model's input, and logits out, batched."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo

EVAL_BATCH = 1000
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (down, right) in pixels


def to_input(images: torch.Tensor, mean: float, std: float, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images ``(N, H, W)`` -> normalised float ``(N, 1, H, W)`` in channels_last memory.

    channels_last lets oneDNN pick its fastest conv kernels on CPU (1.45-2.2x per training step here).
    """
    x = images.to(device).unsqueeze(1).float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``(N, classes)`` for normalised inputs ``(N, 1, H, W)``, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return out.float()


def shift_images(inputs: torch.Tensor, down: int, right: int, background: float) -> torch.Tensor:
    """Normalised images ``(N, C, H, W)`` moved by whole pixels; the uncovered edge is ``background``."""
    if down == right == 0:
        return inputs
    height, width = inputs.shape[-2:]
    pad = max(abs(down), abs(right))
    padded = F.pad(inputs, (pad, pad, pad, pad), value=background)
    top, left = pad - down, pad - right
    return padded[:, :, top : top + height, left : left + width].contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits_tta(model: nn.Module, inputs: torch.Tensor, background: float,
                       shifts: tuple[tuple[int, int], ...] = TTA_SHIFTS) -> torch.Tensor:
    """Test-time augmentation: log of the mean softmax over the image and its one-pixel shifts.

    Args:
        inputs: normalised images ``(N, 1, H, W)``.
        background: the normalised value of an empty pixel, ``-mean / std``.
        shifts: ``(down, right)`` offsets; the default is the image and 4 one-pixel moves (5x the work).
    Returns:
        ``(N, classes)`` log-probabilities, usable wherever logits are.
    """
    probabilities = sum(predict_logits(model, shift_images(inputs, *s, background)).softmax(1) for s in shifts)
    return (probabilities / len(shifts)).log()


def images_logits(model: nn.Module, info: ModelInfo, images: torch.Tensor, device: str | torch.device = "cpu",
                  tta: bool = False) -> torch.Tensor:
    """Logits ``(N, classes)`` for uint8 images ``(N, H, W)``, with test-time augmentation if ``tta``."""
    inputs = to_input(images, info.mean, info.std, device)
    model = model.to(device)
    return predict_logits_tta(model, inputs, -info.mean / info.std) if tta else predict_logits(model, inputs)


def check_logits(network: nn.Module, num_classes: int, image_size: int) -> None:
    """Refuse a network whose output is not ``(N, num_classes)`` logits for this data's images."""
    was_training = network.training
    try:
        with torch.no_grad():
            shape = tuple(network.eval()(torch.zeros(2, 1, image_size, image_size)).shape)
    except RuntimeError as exc:
        raise CnnlabError(f"the network fails on this data's images (2, 1, {image_size}, {image_size}): "
                          f"{str(exc).splitlines()[0]}") from None
    finally:
        network.train(was_training)
    if shape != (2, num_classes):
        raise CnnlabError(f"the network maps images (2, 1, {image_size}, {image_size}) to {shape}; "
                          f"cnnlab needs logits (2, {num_classes}), one score per class")
