"""User datasets: a folder of class subfolders of images, or a Kaggle digit-recognizer CSV.

A folder keeps its images' colour: it is read as RGB when any image in it is really coloured
(grey ones are then converted, and that is said), else as grey. Its images are brought to one
square size, by default their median size capped at :data:`FOLDER_SIDE_CAP`
(cnnlab.data.images.fit_square keeps their aspect).
"""

from __future__ import annotations

import math
import statistics
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data.images import (
    FORMATS,
    IMAGE_SUFFIXES,
    MIN_SIDE,
    decode,
    fit_square,
    has_chroma,
    is_colour,
    reduced_for,
    rgb_to_grey,
    to_grey,
    to_rgb,
)
from cnnlab.errors import CnnlabError

FOLDER_SIDE_CAP = 64  # a folder's default size: its images' median side, at most this


@dataclass(frozen=True)
class FolderImages:
    """A folder's images as arrays: ``images`` uint8 ``(N, side, side)`` (grey) or ``(N, side, side, 3)``
    (RGB), ``labels`` int64 ``(N,)`` indexing ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[-1]

    @property
    def side(self) -> int:
        return self.images.shape[1]

    def __iter__(self):
        """``images, labels, class_names = read_image_folder(...)`` still works."""
        return iter((self.images, self.labels, self.class_names))

def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(folder: Path, size: int | None = None, class_names: list[str] | None = None,
                      channels: int | None = None, read: Callable[[Path], np.ndarray] | None = None) -> FolderImages:
    """Read ``folder/<class>/<image>`` into arrays.

    Args:
        folder: a folder whose subfolders are the classes (sorted by name unless given).
        size: the square side images are brought to; None: their median side, at most
            :data:`FOLDER_SIDE_CAP` (the cap, when it applies, is said on stderr).
        class_names: fix the class order (e.g. for a test folder that must match train).
        channels: 1 (grey) or 3 (RGB); None: RGB if any image is really coloured, else grey.
        read: how one image file becomes its array, in place of the plain resize: e.g. a photo of a
            digit found as ink (cnnlab.handwriting.digit.read_as_mnist), for a run fine-tuned from an MNIST model.

    Unreadable, too small or too large images are skipped and counted in one warning.
    """
    files, labels, class_names = _class_files(folder, class_names)
    side = size or (0 if read else _median_side(files, folder))
    pixels, kept, skipped = [], [], []
    for path, label in tqdm(list(zip(files, labels, strict=True)), desc=f"reading {folder.name}", leave=False):
        try:
            pixels.append(read(path) if read else _load(path, side))
            kept.append(label)
        except CnnlabError as exc:  # one bad file does not cost the rest
            skipped.append(str(exc))
    if not pixels:
        raise CnnlabError(f"{folder}: none of its {len(files)} images could be read, e.g. {skipped[0]}")
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        print(f"warning: skipped {len(skipped)} of {len(files)} images that could not be used: {skipped[0]}{more}",
              file=sys.stderr)
    return FolderImages(_one_channel_count(pixels, channels, folder), np.asarray(kept, dtype=np.int64),
                        list(class_names))


def _class_files(folder: Path, class_names: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = class_names or subfolders
    if not class_names:
        raise CnnlabError(f"{folder}: no class subfolders; make one subfolder of images per class")
    if len(class_names) == 1:
        raise CnnlabError(f"{folder} has one class folder ({class_names[0]}); a classifier needs at least two: "
                          "add a subfolder of images for each other class")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = list_images(folder / name) if (folder / name).is_dir() else []
        files += found
        labels += [label] * len(found)
    if not files:
        raise CnnlabError(f"{folder}: no images found in its class subfolders ({', '.join(class_names)})")
    return files, labels, class_names


def _median_side(files: list[Path], folder: Path) -> int:
    """The median of the images' longer sides (from their headers alone), at most :data:`FOLDER_SIDE_CAP`;
    images too small to be used are left out of it."""
    sides = []
    for path in files:
        try:
            with Image.open(path, formats=FORMATS) as image:
                if min(image.size) >= MIN_SIDE:
                    sides.append(max(image.size))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            continue  # reported when the image itself is read
    median = int(statistics.median(sides)) if sides else FOLDER_SIDE_CAP
    if median > FOLDER_SIDE_CAP:
        print(f"note: {folder.name}'s images are {median} pixels on their longer side (median); resized to "
              f"{FOLDER_SIDE_CAP}x{FOLDER_SIDE_CAP}, the cap for a folder (--image-size N sets the size)",
              file=sys.stderr)
    return min(median, FOLDER_SIDE_CAP)


def _load(path: Path, side: int) -> np.ndarray:
    """One image at ``side x side``: uint8 grey ``(side, side)``, or RGB ``(side, side, 3)`` if it is coloured."""
    image = reduced_for(decode(path), side)  # a large photo made small while it is 8-bit
    if not is_colour(image):
        return fit_square(to_grey(image), side)
    rgb = fit_square(to_rgb(image), side)
    return rgb if has_chroma(rgb) else rgb_to_grey(rgb)


def _one_channel_count(pixels: list[np.ndarray], channels: int | None, folder: Path) -> np.ndarray:
    """Stack images of one or three channels as ``channels`` (None: 3 if any is coloured), saying
    how many were converted."""
    coloured = sum(p.ndim == 3 for p in pixels)
    channels = channels or (3 if coloured else 1)
    if channels == 1:
        if coloured:
            print(f"note: {folder.name}: converted {coloured} colour image{'s' * (coloured > 1)} to grey "
                  "(1 channel was asked for)", file=sys.stderr)
        return np.stack([rgb_to_grey(p) if p.ndim == 3 else p for p in pixels])
    if grey := len(pixels) - coloured:
        print(f"note: {folder.name}: {grey} of {len(pixels)} images are grey; converted to RGB like the rest "
              "(--grey trains on grey instead)", file=sys.stderr)
    return np.stack([p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=-1) for p in pixels])


def read_pixel_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV: ``label,pixel0..pixel783`` (or no label column).

    Returns:
        ``(images, labels)``: uint8 ``(N, side, side)`` and int64 ``(N,)``, or ``None`` for
        labels when the file has only pixel columns (a test file).
    """
    try:
        with path.open() as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": our own error says it
            header = handle.readline().strip().split(",")
            rows = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CnnlabError(f"{path}: not a pixel CSV ({exc}); expected 'label,pixel0,...,pixel783'") from None
    has_label = header[:1] == ["label"]
    n_pixels = len(header) - int(has_label)
    side = math.isqrt(n_pixels)
    if n_pixels < 1 or side * side != n_pixels or not header[int(has_label)].startswith("pixel") or not len(rows):
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
