"""What a photo of handwriting does to strokes that MNIST's scans never show, made on whole batches.

Used by the ``handwriting`` augmentation (cnnlab.training.augment) behind the ``reader`` preset.
Each function takes the batch's *ink*, normalised images ``(N, C, H, W)`` minus the value of an
empty pixel (so 0 is paper), and a CPU generator, so a run's draws are the same on every device.

    thicken         a felt pen or a marker: strokes grown by 1 or 2 pixels each side
    break_strokes   a pen that skipped: a short thin gap in the strokes
    low_resolution  a digit a few pixels tall in the photo: detail lost, then enlarged
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

THICKER = ((1, 0.30), (2, 0.20))  # (pixels grown each side, share of the images); the rest as they are
MNIST_BOX = 20  # MNIST's digits fill a 20x20 box; a grown digit is shrunk back into it
BREAK_SHARE, BREAK_WIDTH, BREAK_LENGTH = 0.25, (0.6, 1.4), (3, 8)  # share of the images with a gap, its
# half-width and its length in pixels
LOW_RES_SHARE, LOW_RES_SIDES = 0.15, (10, 16)  # share of the images, and the range of the side they drop to


def _uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator)


def thicken(ink: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow the strokes of a random share of the images (:data:`THICKER`), by a grey dilation.

    Returns the ink and each image's scale ``(N,)`` that brings its grown box back to MNIST's
    20 pixels, as cnnlab's preprocessing of a photo does (cnnlab.handwriting.digit.to_mnist).
    """
    draw = _uniform(generator, len(ink))
    shrink = torch.ones(len(ink))
    grown, start = ink, 0.0
    for pixels, share in THICKER:
        chosen = ((draw >= start) & (draw < start + share)).to(ink.device)
        start += share
        if chosen.any():
            dilated = F.max_pool2d(ink, 2 * pixels + 1, stride=1, padding=pixels)
            grown = torch.where(chosen.view(-1, 1, 1, 1), dilated, grown)
            shrink = torch.where(chosen.cpu(), MNIST_BOX / (MNIST_BOX + 2 * pixels), shrink)
    return grown, shrink


def break_strokes(ink: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Cut a short thin gap (:data:`BREAK_WIDTH` wide each side, :data:`BREAK_LENGTH` long) at a
    random angle near the centre of a random share of the images (:data:`BREAK_SHARE`); the
    others are unchanged."""
    n, _, height, width = ink.shape
    chosen = _uniform(generator, n) < BREAK_SHARE
    angle = (_uniform(generator, n) * math.pi).view(n, 1, 1)
    centre = ((_uniform(generator, 2, n) - 0.5) * 10).view(2, n, 1, 1)  # pixels from the middle
    half_width = (BREAK_WIDTH[0] + _uniform(generator, n) * (BREAK_WIDTH[1] - BREAK_WIDTH[0])).view(n, 1, 1)
    half_length = (BREAK_LENGTH[0] + _uniform(generator, n) * (BREAK_LENGTH[1] - BREAK_LENGTH[0])).view(n, 1, 1) / 2
    y, x = torch.meshgrid(torch.arange(height) - (height - 1) / 2, torch.arange(width) - (width - 1) / 2,
                          indexing="ij")
    across = ((x - centre[0]) * torch.sin(angle) - (y - centre[1]) * torch.cos(angle)).abs()
    along = ((x - centre[0]) * torch.cos(angle) + (y - centre[1]) * torch.sin(angle)).abs()
    # 0 in the gap, with a one-pixel soft edge on every side
    keep = torch.maximum((across - half_width).clamp(0, 1), (along - half_length).clamp(0, 1))
    keep = torch.where(chosen.view(n, 1, 1), keep, torch.ones(()))
    return ink * keep.unsqueeze(1).to(ink.device, ink.dtype)


def low_resolution(ink: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Reduce a random share of the images (:data:`LOW_RES_SHARE`) to a side drawn from
    :data:`LOW_RES_SIDES` (one for the batch), enlarge them back and stretch their brightest ink
    to what it was, as the preprocessing stretches a blurred photo's."""
    chosen = (_uniform(generator, len(ink)) < LOW_RES_SHARE).nonzero().view(-1)
    side = int(LOW_RES_SIDES[0] + _uniform(generator, 1).item() * (LOW_RES_SIDES[1] - LOW_RES_SIDES[0] + 1))
    if not len(chosen):
        return ink
    chosen = chosen.to(ink.device)
    picked = ink[chosen]
    small = F.interpolate(picked, size=(side, side), mode="area")
    enlarged = F.interpolate(small, size=ink.shape[-2:], mode="bilinear", align_corners=False)
    brightest, was = enlarged.amax((1, 2, 3), keepdim=True), picked.amax((1, 2, 3), keepdim=True)
    enlarged = (enlarged * was / brightest.clamp_min(1e-6)).clamp(max=was)
    out = ink.clone()
    out[chosen] = enlarged
    return out
