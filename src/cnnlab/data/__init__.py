"""Datasets as in-memory uint8 tensors: the built-in ones and the user's own files.

>>> from cnnlab.data import load_dataset
>>> ds = load_dataset("mnist", val_split=0.1)
>>> ds.train_images.shape, ds.train_images.dtype
(torch.Size([54000, 28, 28]), torch.uint8)

Grey images are ``(N, H, W)``; colour ones ``(N, H, W, 3)``, height x width x RGB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.archives import read_cifar, read_svhn
from cnnlab.data.download import ensure_files, resolve_data_dir
from cnnlab.data.idx import read_idx, read_idx_pair
from cnnlab.data.images import rgb_to_grey
from cnnlab.data.registry import (
    DATASETS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    dataset_kind,
    get_spec,
)
from cnnlab.data.user import read_image_folder, read_pixel_csv
from cnnlab.errors import CnnlabError, require

__all__ = ["DATASETS", "Dataset", "describe", "load_dataset", "read_idx", "reshape_images", "resolve_data_dir",
           "split_validation"]

# A user dataset that comes as one set of labelled images is split with this fixed seed,
# so the test images never change with --seed and runs stay comparable.
_HOLDOUT_SEED = 0
_HOLDOUT_FRACTION = 0.2
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 512  # --image-size's range


@dataclass
class Dataset:
    """Images and labels for train, validation and test, all in memory.

    Images are uint8 tensors of shape ``(N, H, W)`` for grey (0 = background) or ``(N, H, W, 3)``
    for colour (height x width x RGB), square; labels are int64 of shape ``(N,)`` with values in
    ``range(len(class_names))``. The validation split is empty when ``val_split`` was 0. ``source``
    says where it came from, so a model trained on it can be evaluated again (empty for data made
    in Python). ``kind`` says what the images are (cnnlab.data.registry.DatasetSpec).
    """

    name: str
    class_names: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    val_images: torch.Tensor = field(default_factory=lambda: torch.empty(0, 28, 28, dtype=torch.uint8))
    val_labels: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    source: str = ""  # what loads it again: a registry name, or a user folder's or file's absolute path
    kind: str = "images"

    def __post_init__(self) -> None:
        images = self.train_images
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
            raise CnnlabError(f"dataset '{self.name}': images must be (N, H, W) grey or (N, H, W, 3) colour, got "
                              f"{tuple(images.shape)}; for channels-first (N, C, H, W) use images.permute(0, 2, 3, 1)")
        if len(self.class_names) < 2:  # one class is learnt perfectly by answering it: "0.00% error", learning nothing
            raise CnnlabError(f"dataset '{self.name}' has {len(self.class_names)} class{'es' * (not self.class_names)} "
                              f"({', '.join(map(str, self.class_names))}); a classifier needs at least two: "
                              "give images of two or more classes")
        if not len(self.val_labels) and self.val_images.shape[1:] != images.shape[1:]:
            self.val_images = torch.empty(0, *images.shape[1:], dtype=images.dtype)  # empty, but shaped as the rest

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.train_images.ndim == 3 else int(self.train_images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"train": (images, labels), "val": ..., "test": ...}``, skipping an empty val."""
        out = {"train": (self.train_images, self.train_labels)}
        if len(self.val_labels):
            out["val"] = (self.val_images, self.val_labels)
        out["test"] = (self.test_images, self.test_labels)
        return out


def load_dataset(
    dataset: str | Path = "mnist",
    data_dir: str | Path | None = None,
    val_split: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    download: bool | None = None,
    channels: int | None = None,
    *,
    read_image: Callable[[Path], np.ndarray] | None = None,
) -> Dataset:
    """Load a built-in dataset by name, or the user's own from a path.

    Args:
        dataset: a name in :data:`DATASETS` (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ...);
            or a path: a folder with the four MNIST-style IDX files, a folder of class subfolders
            of images (with optional ``train/`` and ``test/`` parts), or a Kaggle-style CSV.
        data_dir: where built-in datasets live (see :func:`resolve_data_dir`).
        val_split: fraction of the training set held out for validation, in ``[0, 1)``.
        limit: keep only the first ``limit`` images of each split (quick runs).
        seed: chooses which training images go to validation.
        image_size: the square side to resize to, 8 to 512; None: a built-in dataset's own size,
            a folder's median image side capped at 64.
        download: fetch missing built-in files (default: yes unless ``$CNNLAB_OFFLINE``).
        channels: 1 to make colour images grey, 3 to make grey ones RGB; None: keep what the data has
            (a folder is colour if any of its images is).
        read_image: how a folder's image file becomes its array, in place of the plain resize (see
            cnnlab.data.user.read_image_folder); a model's own: cnnlab.handwriting.digit.folder_reader.
    """
    require(0.0 <= val_split < 1.0, f"--val-split must be in [0, 1), got {val_split}")
    require(limit is None or limit > 0, f"--limit must be a positive number of images, got {limit}")
    _check_shape_asked(image_size, channels)  # before a large folder is read
    train_x, train_y, test_x, test_y, names, label = _load_arrays(dataset, data_dir, (image_size, channels, read_image),
                                                                  download)
    _check_labels(train_y, names, label)
    present = np.unique(train_y)  # before --limit: a fault of the data's own, not of the limit
    if len(present) == 1 and len(names) > 1:
        raise CnnlabError(f"{label}: all its training images are of one class ({names[present[0]]}); a classifier "
                          "needs images of at least two classes")
    _check_labels(test_y, names, label)
    source = str(Path(dataset).resolve()) if Path(dataset).exists() else str(dataset)
    ds = split_validation(Dataset(label, names, *_tensors(train_x, train_y), *_tensors(test_x, test_y),
                                  source=source, kind=dataset_kind(str(dataset))), val_split, seed)
    if limit:
        for split in ("train", "val", "test"):
            for kind in ("images", "labels"):
                attr = f"{split}_{kind}"
                setattr(ds, attr, getattr(ds, attr)[:limit])
    return reshape_images(ds, image_size, channels)  # after the limit: only the images kept are resized


def _check_shape_asked(image_size: int | None, channels: int | None) -> None:
    require(image_size is None or MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE,
            f"--image-size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {image_size}")
    require(channels in (None, 1, 3), f"channels must be 1 (grey) or 3 (RGB), got {channels}")


def reshape_images(ds: Dataset, image_size: int | None = None, channels: int | None = None) -> Dataset:
    """``ds`` with every split's images brought to ``image_size`` (square) and ``channels`` (1 or 3),
    as :func:`load_dataset` does for the data it loads; None keeps what the data has."""
    _check_shape_asked(image_size, channels)
    if image_size is None and channels is None:
        return ds
    return replace(ds, **{f"{split}_images": _fit(getattr(ds, f"{split}_images"), image_size, channels)
                          for split in ("train", "val", "test")})


RESIZE_CHUNK = 2048  # images resized at a time: memory stays near the uint8 result's


def _fit(images: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """uint8 images ``(N, H, W[, 3])`` brought to ``channels`` and ``size x size`` (None: as they are)."""
    if channels == 1 and images.ndim == 4:
        images = torch.from_numpy(rgb_to_grey(images.numpy()))
    elif channels == 3 and images.ndim == 3:
        images = images.unsqueeze(-1).expand(*images.shape, 3).contiguous()
    if size is None or images.shape[1:3] == (size, size):
        return images
    out = torch.empty(len(images), size, size, *images.shape[3:], dtype=torch.uint8)
    for start in range(0, len(images), RESIZE_CHUNK):  # antialiased bilinear, as Pillow's resize of a folder
        chunk = images[start : start + RESIZE_CHUNK].float()
        chunk = chunk.unsqueeze(1) if images.ndim == 3 else chunk.permute(0, 3, 1, 2)
        resized = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + RESIZE_CHUNK] = resized[:, 0] if images.ndim == 3 else resized.permute(0, 2, 3, 1)
    return out


def split_validation(ds: Dataset, val_split: float, seed: int = 0) -> Dataset:
    """Move a random ``val_split`` fraction of the training images to the validation split.

    A dataset that already has a validation split is returned as it is.
    """
    if val_split <= 0 or len(ds.val_labels):
        return ds
    order = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(val_split * len(order)))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return replace(ds, train_images=ds.train_images[train], train_labels=ds.train_labels[train],
                   val_images=ds.train_images[val], val_labels=ds.train_labels[val])


def _tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # copy: np.frombuffer arrays are read-only and torch wants writable memory.
    return torch.from_numpy(np.array(images, dtype=np.uint8)), torch.from_numpy(labels.astype(np.int64))


def _check_labels(labels: np.ndarray, names: list[str], source: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise CnnlabError(f"{source}: labels must be in 0..{len(names) - 1}, found {labels.min()}..{labels.max()}")


def _load_arrays(dataset, data_dir, reading, download):
    """Return ``(train_x, train_y, test_x, test_y, class_names, display_name)`` as numpy; ``reading``:
    a folder's ``(image_size, channels, read_image)``."""
    image_size, channels, read_image = reading
    path = Path(dataset)
    if str(dataset) in DATASETS:
        spec = get_spec(str(dataset))
        folder = ensure_files(spec, resolve_data_dir(data_dir), download)
        return *_read_builtin(spec, folder), spec.name
    if path.is_dir():
        return _load_folder(path, image_size, channels, read_image)
    if path.is_file() and path.suffix.lower() == ".csv":
        images, labels = read_pixel_csv(path)
        if labels is None:
            raise CnnlabError(f"{path}: has no 'label' column, so it can be predicted on but not trained on")
        names = [str(i) for i in range(int(labels.max()) + 1)]
        return *_holdout(images, labels), names, path.name
    if path.exists():
        raise CnnlabError(f"{path}: a dataset path must be a folder of class subfolders or a .csv file")
    return get_spec(str(dataset))  # raises the unknown-dataset error listing the choices


def _idx_file(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, gzip-compressed or raw, if present."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_builtin(spec, folder: Path):
    """``(train_x, train_y, test_x, test_y, class_names)`` from a built-in dataset's original files."""
    if spec.format == "cifar10":
        return read_cifar(folder / next(iter(spec.md5)))
    if spec.format == "cifar100":
        return read_cifar(folder / next(iter(spec.md5)), hundred=True)
    if spec.format == "svhn":
        return read_svhn(folder)
    train = read_idx_pair(folder / TRAIN_IMAGES, folder / TRAIN_LABELS)
    test = read_idx_pair(folder / TEST_IMAGES, folder / TEST_LABELS)
    return *train, *test, list(spec.class_names)


def _load_folder(path: Path, image_size: int | None, channels: int | None, read: Callable | None = None):
    idx_files = [_idx_file(path, name) for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)]
    if all(idx_files):  # the four MNIST-style IDX files, e.g. EMNIST or the user's own
        train_x, train_y = read_idx_pair(idx_files[0], idx_files[1])
        test_x, test_y = read_idx_pair(idx_files[2], idx_files[3])
        names = [str(i) for i in range(int(max(train_y.max(), test_y.max())) + 1)]
        return train_x, train_y, test_x, test_y, names, path.name
    if (path / "train").is_dir() and (path / "test").is_dir():
        train = read_image_folder(path / "train", image_size, channels=channels, read=read)
        test = read_image_folder(path / "test", train.side, train.class_names, train.channels, read=read)
        return train.images, train.labels, test.images, test.labels, train.class_names, path.name
    found = read_image_folder(path, image_size, channels=channels, read=read)
    return *_holdout(found.images, found.labels), found.class_names, path.name


def _holdout(images: np.ndarray, labels: np.ndarray):
    """Split one labelled set into train and test with a fixed seed."""
    require(len(labels) >= 2, "a dataset needs at least 2 labelled images to split off a test set")
    order = np.random.default_rng(_HOLDOUT_SEED).permutation(len(labels))
    n_test = max(1, round(_HOLDOUT_FRACTION * len(labels)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return images[train], labels[train], images[test], labels[test]


def describe(ds: Dataset) -> dict:
    """Sizes, class counts and pixel statistics (0-1 scale) of each split, as plain data."""
    splits = {}
    for split, (images, labels) in ds.splits().items():
        counts = torch.bincount(labels, minlength=ds.num_classes).tolist()
        pixels = images.float().div_(255)
        splits[split] = {
            "count": len(labels),
            "class_counts": dict(zip(ds.class_names, counts, strict=True)),
            "pixel_mean": pixels.mean().item(),
            "pixel_std": pixels.std().item(),
        }
    return {"name": ds.name, "num_classes": ds.num_classes, "class_names": ds.class_names,
            "image_shape": list(ds.train_images.shape[1:]), "channels": ds.channels, "kind": ds.kind,
            "splits": splits}
