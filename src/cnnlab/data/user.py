"""User datasets: a folder of class subfolders of images, or a Kaggle digit-recognizer CSV."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_grey_image(path: Path, size: int) -> np.ndarray:
    """Open any supported image as grey uint8 of shape ``(size, size)``."""
    try:
        with Image.open(path) as image:
            image.load()
            grey = image.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CnnlabError(f"{path}: cannot read this image ({exc}); remove or replace it") from None
    except Image.DecompressionBombError:
        raise CnnlabError(f"{path}: image is too large to be a real picture; refusing it") from None
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(
    folder: Path, size: int, class_names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``folder/<class>/<image>`` into arrays.

    Args:
        folder: a folder whose subfolders are the classes (sorted by name unless given).
        size: images are resized to ``size x size``.
        class_names: fix the class order (e.g. for a test folder that must match train).

    Returns:
        ``(images, labels, class_names)``: uint8 ``(N, size, size)``, int64 ``(N,)``, names.
    """
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = class_names or subfolders
    if not class_names:
        raise CnnlabError(f"{folder}: no class subfolders; make one subfolder of images per class")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = list_images(folder / name) if (folder / name).is_dir() else []
        files += found
        labels += [label] * len(found)
    if not files:
        raise CnnlabError(f"{folder}: no images found in its class subfolders ({', '.join(class_names)})")
    images = np.stack([load_grey_image(p, size) for p in tqdm(files, desc=f"reading {folder.name}", leave=False)])
    return images, np.asarray(labels, dtype=np.int64), list(class_names)


def read_pixel_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV: ``label,pixel0..pixel783`` (or no label column).

    Returns:
        ``(images, labels)``: uint8 ``(N, side, side)`` and int64 ``(N,)``, or ``None`` for
        labels when the file has only pixel columns (a test file).
    """
    try:
        with path.open() as handle:
            header = handle.readline().strip().split(",")
            rows = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CnnlabError(f"{path}: not a pixel CSV ({exc}); expected 'label,pixel0,...,pixel783'") from None
    has_label = header[:1] == ["label"]
    n_pixels = len(header) - int(has_label)
    side = math.isqrt(n_pixels)
    if side * side != n_pixels or not header[int(has_label)].startswith("pixel") or len(rows) == 0:
        raise CnnlabError(
            f"{path}: expected a header 'label,pixel0,...,pixelN' with a square number of pixel "
            f"columns and at least one row, got {len(header)} columns and {len(rows)} rows"
        )
    if rows.shape[1] != len(header):
        raise CnnlabError(f"{path}: rows have {rows.shape[1]} values but the header has {len(header)}")
    pixels = rows[:, int(has_label):]
    if pixels.min() < 0 or pixels.max() > 255:
        raise CnnlabError(f"{path}: pixel values must be 0-255")
    images = pixels.astype(np.uint8).reshape(-1, side, side)
    return images, (rows[:, 0].astype(np.int64) if has_label else None)
