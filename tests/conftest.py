"""Shared fixtures: small generated data for unit behaviour, the real MNIST for MNIST claims."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.download import resolve_data_dir
from cnnlab.data.idx import write_idx
from cnnlab.data.registry import FILES

# The Hugging Face Hub, as timm reaches it (--model timm:NAME): offline, and a cache of this process's own
# that the tests fill (tests/models/test_timm.py); huggingface_hub reads both once, when it is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="cnnlab-hub-")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the network: a missing file is an error, not a download."""
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The data directory holding the real MNIST (CI: ../shared/data via the Makefile)."""
    folder = resolve_data_dir()
    if not (folder / "mnist" / FILES[0]).is_file():
        pytest.fail(f"MNIST not found under {folder}: set CNNLAB_DATA to a folder with an 'mnist' subfolder")
    return folder


@pytest.fixture(scope="session")
def mnist(mnist_dir) -> Dataset:
    return load_dataset("mnist", data_dir=mnist_dir)


def make_blobs(n: int, num_classes: int = 3, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: class k is a bright square in a class-specific corner, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    images = rng.integers(0, 40, size=(n, size, size)).astype(np.uint8)
    half = size // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label) % 4, 2)
        images[i, r * half : r * half + half, c * half : c * half + half] = 220
    return images, labels.astype(np.uint8)


COLOURS = {"red": (255, 60, 130), "green": (60, 175, 60), "blue": (90, 110, 255)}  # about equally bright in grey


def make_colour_folder(folder: Path, per_class: int = 40, size: int = 64, seed: int = 0) -> Path:
    """``folder/<colour>/<i>.png``: RGB images whose class is the colour of a rectangle on a grey
    background. The colours are about equally bright, and each image's brightness varies by up to
    25%, so grey copies of them cannot tell the classes apart; the colour can."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.full((size, size, 3), rng.integers(40, 200), dtype=np.float32)
            top, left = rng.integers(0, size // 2, 2)
            height, width = rng.integers(size // 4, size // 2, 2)
            image[top : top + height, left : left + width] = np.array(colour) * rng.uniform(0.75, 1.0)
            image += rng.normal(0, 8, image.shape)
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / name / f"{i}.png")
    return folder


@pytest.fixture
def idx_folder(tmp_path) -> Path:
    """A folder with the four MNIST-style IDX files of a small generated dataset."""
    folder = tmp_path / "toy-idx"
    folder.mkdir()
    train_x, train_y = make_blobs(120, seed=1)
    test_x, test_y = make_blobs(30, seed=2)
    for name, array in zip(FILES, (train_x, train_y, test_x, test_y), strict=True):
        write_idx(folder / name, array)
    return folder


@pytest.fixture
def toy_dataset() -> Dataset:
    train_x, train_y = make_blobs(240, seed=1)
    test_x, test_y = make_blobs(60, seed=2)
    val_x, val_y = make_blobs(30, seed=3)
    t = torch.from_numpy
    return Dataset("toy", ["a", "b", "c"], t(train_x), t(train_y.astype(np.int64)), t(test_x),
                   t(test_y.astype(np.int64)), t(val_x), t(val_y.astype(np.int64)))


@pytest.fixture(scope="session")
def colour_run(tmp_path_factory) -> Path:
    """A model trained by the fast preset on a generated folder of 3 colour classes (64x64 RGB), with
    ``held-out/`` beside it: images of each class it never saw."""
    from cnnlab import train

    root = tmp_path_factory.mktemp("colours")
    make_colour_folder(root / "colours" / "train", per_class=60, seed=1)
    make_colour_folder(root / "colours" / "test", per_class=20, seed=2)
    make_colour_folder(root / "held-out", per_class=2, seed=3)
    # One thread: the thread count, which cnnlab otherwise picks by how busy the machine is, changes
    # the order of float sums, and with it which of these 60 test images the 19 short epochs get right.
    train(dataset=root / "colours", out=str(root / "run"), progress=False, threads=1)
    return root / "run"


@pytest.fixture(scope="session")
def mnist_run(mnist_dir, tmp_path_factory):
    """cnn-fast on 6,000 MNIST images: a real digit model in a few seconds, shared by the tests."""
    from cnnlab import train

    out = tmp_path_factory.mktemp("mnist-run") / "run"
    train(model="cnn-fast", epochs=1, limit=6000, data_dir=str(mnist_dir), out=str(out), progress=False)
    return out
