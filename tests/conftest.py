"""Shared fixtures: small generated data for unit behaviour, the real MNIST for MNIST claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.download import resolve_data_dir
from cnnlab.data.idx import write_idx
from cnnlab.data.registry import FILES


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
