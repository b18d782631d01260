"""The built-in datasets: where to download them, their checksums and class names.

Each dataset's original files are stored under ``<data dir>/<name>/`` with their original names,
e.g. ``~/.cache/cnnlab/mnist/train-images-idx3-ubyte.gz``: the MNIST family as four IDX ``.gz``
files, CIFAR as its binary tarball, SVHN as two ``.mat`` files (cnnlab.data.archives reads them).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from cnnlab.errors import CnnlabError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/")  # CIFAR-10 and -100


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset.

    Attributes:
        name: registry key and folder name.
        description: one line for listings.
        mirrors: base URLs tried in order; each holds every file of ``md5``.
        md5: the well-known reference MD5 of each file, keyed by file name.
        class_names: label index -> human-readable name (empty: read from the files).
        kind: what the images are, which the presets and augmentation choose by: ``digits`` and
            ``characters`` (centred on an empty border; never mirrored), ``clothing`` (filling
            the frame), ``photo-digits`` (colour photos of digits: never mirrored) or ``natural``
            (colour photos of things).
        format: how the files are read: ``idx``, ``cifar10``, ``cifar100`` or ``svhn``.
    """

    name: str
    description: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    class_names: tuple[str, ...]
    kind: str = "digits"
    format: str = "idx"


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mnist",
            description="handwritten digits 0-9, 60k train / 10k test, 28x28 grey",
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            md5={
                TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
                TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
                TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
            },
            class_names=tuple(str(d) for d in range(10)),
        ),
        DatasetSpec(
            name="fashion-mnist",
            description="Zalando clothing images, 10 classes, 60k train / 10k test, 28x28 grey",
            mirrors=(
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/fashion-mnist/",
                "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            ),
            md5={
                TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
                TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
                TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
            },
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),
            kind="clothing",
        ),
        DatasetSpec(
            name="kmnist",
            description="Kuzushiji-MNIST, cursive Japanese hiragana, 10 classes, 28x28 grey",
            mirrors=(
                "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            ),
            md5={
                TRAIN_IMAGES: "bdb82020997e1d708af4cf47b453dcf7",
                TRAIN_LABELS: "e144d726b3acfaa3e44228e80efcd344",
                TEST_IMAGES: "5c965bf0a639b31b8f53240b1b52f4d7",
                TEST_LABELS: "7320c461ea6c1c855c0b718fb2a4b134",
            },
            class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            kind="characters",
        ),
        # The colour datasets below were never downloaded on cnnlab's development machines (they
        # cannot reach the mirrors); their readers are tested on files generated in their formats.
        DatasetSpec(
            name="cifar10",
            description="CIFAR-10, photos of 10 kinds of things, 50k train / 10k test, 32x32 colour",
            mirrors=CIFAR_MIRRORS,
            md5={"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
            class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            kind="natural",
            format="cifar10",
        ),
        DatasetSpec(
            name="cifar100",
            description="CIFAR-100, photos of 100 kinds of things, 50k train / 10k test, 32x32 colour",
            mirrors=CIFAR_MIRRORS,
            md5={"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
            class_names=(),  # its 100 fine labels' names come from the tarball
            kind="natural",
            format="cifar100",
        ),
        DatasetSpec(
            name="svhn",
            description="SVHN cropped digits, house numbers from Street View, 73k train / 26k test, 32x32 colour",
            mirrors=("http://ufldl.stanford.edu/housenumbers/", "https://ufldl.stanford.edu/housenumbers/"),
            md5={"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
                 "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"},
            class_names=tuple(str(d) for d in range(10)),
            kind="photo-digits",
            format="svhn",
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """Return the registered dataset called ``name``, or raise a helpful error."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        if looks_like_a_path(name):
            raise CnnlabError(f"{name}: no such folder or file; give an image folder (a subfolder per class), a CSV "
                              f"file, or one of {known}") from None
        close = difflib.get_close_matches(name.lower(), list(DATASETS), n=1, cutoff=0.7)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise CnnlabError(
            f"unknown dataset '{name}': {guess}use one of {known}, or a path to an image folder or CSV file"
        ) from None


def looks_like_a_path(name: str) -> bool:
    """Whether ``name`` was meant as a folder or file rather than a dataset's name."""
    return any(mark in name for mark in ("/", "\\")) or name.startswith(("~", ".")) or name.lower().endswith(".csv")


def dataset_kind(dataset: str) -> str:
    """The kind of a registered dataset's images, or ``images`` for a user's folder or file."""
    return DATASETS[dataset].kind if dataset in DATASETS else "images"
