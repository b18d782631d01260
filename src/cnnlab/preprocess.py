"""Turning the user's images into what the network saw in training.

MNIST digits are light ink on a dark background. A scan or a drawing is usually dark ink on
light paper, so the polarity is detected from the image border (mostly background) and
flipped when the background is light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.user import load_grey_image


def to_mnist_polarity(grey: np.ndarray) -> np.ndarray:
    """Return uint8 ``grey`` as light-on-dark, inverting it when its border is light."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 255 - grey if border.mean() > 127 else grey


def load_for_model(path: str | Path, image_size: int = 28) -> torch.Tensor:
    """One image file -> uint8 tensor ``(image_size, image_size)`` in the model's convention."""
    return torch.from_numpy(to_mnist_polarity(load_grey_image(Path(path), image_size)).copy())
