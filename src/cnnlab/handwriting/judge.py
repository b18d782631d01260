"""The segment judge: a small network that tells one whole digit from a piece of one or from
two digits touching, so that a written number can be cut where its digits really end.

A digit classifier cannot answer that: trained on single digits, it names whatever it is
shown, and half a 0 makes a confident 1. The judge is trained for the question itself, on
MNIST *training* digits, each tilted and resized a little, composed side by side as pairs
(from a gap of 3 pixels to an overlap of 3), enlarged and blurred as a photo would be, and
their ink cut along vertical lines as :mod:`cnnlab.handwriting.segment` cuts it:

    one digit   cut at the pair's true boundary, give or take 2 pixels (the sliver of the
                neighbour a vertical cut leaves), or a digit on its own
    not one     a piece of a digit (cut between a quarter and three quarters of its width),
                the whole pair, or a digit with part of its neighbour

Every example goes through :func:`cnnlab.handwriting.digit.to_mnist`, exactly as a cut of a photo
does. The weights ship with cnnlab (``judge.safetensors``, 0.1 MB); retrain them with

    python -m cnnlab.handwriting.judge [--data-dir DIR] [--examples 120000] [--seed 0]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

WEIGHTS = Path(__file__).with_name("judge.safetensors")
INK = 64  # an MNIST pixel at least this bright is ink (of 255)
THIN = 0.5  # digits narrower than this x their height (most 1s) give no pieces: half a 1 is still a 1


def judge_network() -> nn.Module:
    """``(N, 1, 28, 28)`` images in 0-1 -> ``(N,)`` logits of "one whole digit"."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 25, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0),
    )


@functools.cache
def load_judge() -> nn.Module:
    """The shipped judge, in eval mode (loaded once per process, no code executed)."""
    network = judge_network()
    network.load_state_dict(load_file(WEIGHTS))
    return network.eval()


def one_digit_log_prob(images: np.ndarray, network: nn.Module | None = None) -> np.ndarray:
    """log P(one whole digit) for uint8 images ``(N, 28, 28)`` made by ``to_mnist``: ``(N,)``."""
    network = network or load_judge()
    with torch.inference_mode():
        logits = network(torch.from_numpy(np.asarray(images, dtype=np.float32) / 255).unsqueeze(1))
    return torch.nn.functional.logsigmoid(logits).numpy()


def _ink_crop(digit: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero((digit >= INK).any(1)), np.flatnonzero((digit >= INK).any(0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _varied(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit as one of several in a number: tilted up to 10 degrees, 85-115% in size, cropped."""
    from PIL import Image

    image = Image.fromarray(digit).rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    side = round(28 * rng.uniform(0.85, 1.15))
    return _ink_crop(np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)))


def _compose_pair(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Two ink crops side by side -> ``(canvas, boundary column, where the second starts)``."""
    gap = max(int(rng.integers(-3, 4)), -(min(first.shape[1], second.shape[1]) // 2))  # a thin 1 may not vanish
    height = max(first.shape[0], second.shape[0]) + 4
    start = first.shape[1] + gap
    canvas = np.zeros((height, max(start + second.shape[1], first.shape[1])), dtype=np.uint8)
    for crop, left in ((first, 0), (second, start)):
        top = int(rng.integers(0, height - crop.shape[0] + 1))
        region = canvas[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.maximum(region, crop, out=region)
    boundary = (min(start, first.shape[1]) + max(start, first.shape[1])) // 2
    return canvas, boundary, start


def _windows(first_width: int, second: tuple[int, int], width: int, boundary: int, rng: np.random.Generator,
             thin: tuple[bool, bool]) -> list[tuple[int, int, float]]:
    """Column ranges ``[left, right)`` to cut from a composed pair, each with its label (1: one digit)."""
    second_start, second_width = second
    wobble = lambda: int(rng.integers(-2, 3))  # noqa: E731 - a cut a little off the true boundary
    windows = [(0, max(1, boundary + wobble()), 1.0), (min(width - 1, boundary + wobble()), width, 1.0),
               (0, width, 0.0)]
    if not thin[0]:
        windows.append((0, max(1, round(first_width * rng.uniform(0.25, 0.75))), 0.0))
    if not thin[1]:
        windows.append((second_start + round(second_width * rng.uniform(0.25, 0.75)), width, 0.0))
    windows.append((0, min(width, second_start + round(second_width * rng.uniform(0.3, 0.75))), 0.0))
    windows.append((round(first_width * rng.uniform(0.25, 0.7)), width, 0.0))
    return windows


def _as_seen(canvas: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """An ink canvas (uint8, 28x28 scale) as the number reader sees a photo of it:
    ``(ink 0-1, ink mask, zoom)``, enlarged 1-4x with some blur, its mask from ``ink_mask``."""
    from PIL import Image
    from scipy import ndimage

    from cnnlab.handwriting.digit import ink_mask

    zoom = float(rng.uniform(1, 4))
    size = (round(canvas.shape[1] * zoom), round(canvas.shape[0] * zoom))
    big = np.asarray(Image.fromarray(canvas.astype(np.float32) / 255, mode="F").resize(size, Image.Resampling.BICUBIC))
    big = ndimage.gaussian_filter(big, sigma=float(rng.uniform(0, 0.5)) * zoom)
    ink = np.clip(big / max(float(np.percentile(big[big > 0.3], 90)), 0.3), 0, 1).astype(np.float32)
    labels, _ = ink_mask(ink)
    return ink, labels > 0, zoom


def make_examples(digits: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Judge training examples from MNIST digits ``(N, 28, 28)`` uint8.

    Returns ``(images, labels)``: uint8 ``(count, 28, 28)`` as ``to_mnist`` makes them, and
    float ``(count,)``, 1 for one whole digit; about half are ones.
    """
    from cnnlab.handwriting.digit import to_mnist

    rng = np.random.default_rng(seed)
    images, labels = [], []
    while len(images) < count:
        first, second = (_varied(digits[i], rng) for i in rng.choice(len(digits), 2, replace=False))
        for crop in (first, second):  # each digit on its own: one whole digit
            ink, mask, _ = _as_seen(np.pad(crop, 2), rng)
            images.append(to_mnist(ink, mask))
            labels.append(1.0)
        canvas, boundary, start = _compose_pair(first, second, rng)
        thin = tuple(bool(c.shape[1] < THIN * c.shape[0]) for c in (first, second))
        ink, mask, zoom = _as_seen(canvas, rng)
        for left, right, label in _windows(first.shape[1], (start, second.shape[1]), canvas.shape[1], boundary,
                                           rng, thin):
            piece = np.zeros_like(mask)
            columns = slice(round(left * zoom), round(right * zoom))
            piece[:, columns] = mask[:, columns]
            if piece.sum() >= 4:
                images.append(to_mnist(ink, piece))
                labels.append(label)
    return np.stack(images[:count]), np.asarray(labels[:count], dtype=np.float32)


def train_judge(images: np.ndarray, labels: np.ndarray, epochs: int = 4, seed: int = 0) -> nn.Module:
    """Train :func:`judge_network` on ``make_examples`` output (Adam one-cycle, batch 256)."""
    torch.manual_seed(seed)
    network = judge_network()
    inputs = torch.from_numpy(images).float().div(255).unsqueeze(1)
    targets = torch.from_numpy(labels)
    batch = 256
    steps = -(-len(targets) // batch)
    optimizer = torch.optim.Adam(network.parameters())
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.01, total_steps=epochs * steps)
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(targets))
        for step in range(steps):
            chosen = order[step * batch : (step + 1) * batch]
            loss = nn.functional.binary_cross_entropy_with_logits(network(inputs[chosen]), targets[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return network.eval()


def main() -> None:
    from cnnlab.data import load_dataset
    from cnnlab.files import atomic_write_bytes

    parser = argparse.ArgumentParser(description="Train the segment judge on MNIST's training digits.")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--examples", type=int, default=120_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    images, labels = make_examples(mnist.train_images.numpy(), args.examples, args.seed)
    held_out = len(labels) // 10  # a last check on examples it did not learn from
    network = train_judge(images[held_out:], labels[held_out:], seed=args.seed)
    right = (one_digit_log_prob(images[:held_out], network) > np.log(0.5)) == (labels[:held_out] > 0.5)
    print(f"judge: {100 * right.mean():.2f}% right on {held_out} held-out examples")
    atomic_write_bytes(args.out, save({k: v.contiguous() for k, v in network.state_dict().items()}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
