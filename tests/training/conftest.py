"""Fixtures of the training tests: a dataset on disk small enough for whole runs, command line included, in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.data.idx import write_idx
from cnnlab.data.registry import FILES
from tests.conftest import make_blobs


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """A small generated dataset in MNIST's four files: 120 training and 30 test images of 3 classes."""
    folder = tmp_path_factory.mktemp("toy-idx")
    arrays = (*make_blobs(120, seed=1), *make_blobs(30, seed=2))
    for name, array in zip(FILES, arrays, strict=True):
        write_idx(folder / name, array)
    return folder
