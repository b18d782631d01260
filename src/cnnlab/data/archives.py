"""Readers of the colour datasets' original files: the CIFAR binary tarballs and SVHN's ``.mat`` files.

CIFAR-10 and CIFAR-100 are read from their *binary* versions (``cifar-10-binary.tar.gz``,
``cifar-100-binary.tar.gz``): fixed-length records of a label byte (two for CIFAR-100: coarse,
then fine) and 3,072 pixel bytes, red plane, green plane, blue plane, each 32x32 row by row.
The Python versions are pickles, and cnnlab loads nothing that can run code. Members are read
from the tarball directly, by name, with nothing extracted. SVHN's cropped digits are MATLAB
files (``scipy.io.loadmat``): ``X`` of shape ``(32, 32, 3, N)`` and ``y`` of ``(N, 1)``, where
the digit 0 is labelled 10.

Each reader returns ``(train_images, train_labels, test_images, test_labels, class_names)`` with
images uint8 ``(N, 32, 32, 3)``, height x width x RGB, as the article describes colour images.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

SIDE = 32
PIXELS = 3 * SIDE * SIDE
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def read_cifar(archive: Path, hundred: bool = False) -> Arrays:
    """CIFAR-10 (or, with ``hundred``, CIFAR-100's 100 fine classes) from its binary tarball."""
    if hundred:
        train, test, names = ["cifar-100-binary/train.bin"], ["cifar-100-binary/test.bin"], (
            "cifar-100-binary/fine_label_names.txt")
    else:
        train = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
        test, names = ["cifar-10-batches-bin/test_batch.bin"], "cifar-10-batches-bin/batches.meta.txt"
    label_bytes = 2 if hundred else 1
    try:
        with tarfile.open(archive, "r:gz") as tar:
            train_x, train_y = _records(tar, train, label_bytes, archive)
            test_x, test_y = _records(tar, test, label_bytes, archive)
            class_names = [line.strip() for line in _member(tar, names, archive).decode().splitlines() if line.strip()]
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{archive}: truncated or not a CIFAR binary tarball ({exc}); delete it and download it "
                          "again") from None
    if len(class_names) != (100 if hundred else 10):
        raise CnnlabError(f"{archive}: {names} names {len(class_names)} classes, expected {100 if hundred else 10}")
    return train_x, train_y, test_x, test_y, class_names


def _member(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise CnnlabError(f"{archive}: has no {name}; is it the binary version of CIFAR?") from None
    if not info.isfile():
        raise CnnlabError(f"{archive}: {name} is not a regular file")
    return tar.extractfile(info).read()


def _records(tar: tarfile.TarFile, names: list[str], label_bytes: int, archive: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images and (fine) labels of the record files ``names``, concatenated."""
    size = label_bytes + PIXELS
    chunks = []
    for name in names:
        data = np.frombuffer(_member(tar, name, archive), dtype=np.uint8)
        if len(data) == 0 or len(data) % size:
            raise CnnlabError(f"{archive}: {name} holds {len(data):,} bytes, not a whole number of {size}-byte "
                              "records (truncated?); delete it and download it again")
        chunks.append(data.reshape(-1, size))
    records = np.concatenate(chunks)
    images = records[:, label_bytes:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, label_bytes - 1].astype(np.int64)


def read_svhn(folder: Path) -> Arrays:
    """SVHN's cropped digits from ``train_32x32.mat`` and ``test_32x32.mat`` in ``folder``."""
    train_x, train_y = _svhn_split(folder / "train_32x32.mat")
    test_x, test_y = _svhn_split(folder / "test_32x32.mat")
    return train_x, train_y, test_x, test_y, [str(d) for d in range(10)]


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat  # scipy loads only when SVHN does

    try:
        contents = loadmat(path, variable_names=("X", "y"))
        images, labels = contents["X"], contents["y"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:  # scipy's own errors subclass ValueError
        raise CnnlabError(f"{path}: truncated or not SVHN's .mat file ({exc}); delete it and download it "
                          "again") from None
    if images.dtype != np.uint8 or images.shape[:3] != (SIDE, SIDE, 3) or labels.shape != (images.shape[3], 1):
        raise CnnlabError(f"{path}: expected X uint8 (32, 32, 3, N) and y (N, 1), got X {images.dtype} "
                          f"{images.shape} and y {labels.shape}")
    labels = labels[:, 0].astype(np.int64) % 10  # SVHN labels the digit 0 as 10
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels
