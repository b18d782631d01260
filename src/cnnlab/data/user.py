"""User datasets: a folder of class subfolders of images, or a Kaggle digit-recognizer CSV."""

from __future__ import annotations

import io
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Image.MAX_IMAGE_PIXELS = 64_000_000  # larger claims are refused as decompression bombs
# A valid file cannot hold more pixels per byte than this: DEFLATE (PNG, TIFF) compresses at most
# about 1,032:1, so 8-bit pixels stop near 1,000 a byte and 1-bit ones near 8,300. A header that
# claims more is refused before Pillow allocates the image, so memory stays in proportion to the file.
MAX_PIXELS_PER_BYTE = 16_384


class UnreadableImageError(CnnlabError):
    """The bytes are not an image in a format Pillow reads."""


class ImageTooLargeError(CnnlabError):
    """The image claims more pixels than a photo has (a decompression bomb)."""


def read_grey(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as grey float32 ``(H, W)`` in 0-1.

    EXIF orientation is applied (phone photos), and transparency is flattened onto the colour
    that contrasts with the drawing, so ink on a transparent canvas is kept.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, do not just warn
            return _read(io.BytesIO(source) if isinstance(source, bytes) else source, name)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name}: the image claims too many pixels to be a photo; refusing it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImageError(f"{name}: not a readable image ({exc}); use PNG, JPEG, BMP, GIF, TIFF or WebP"
                                   ) from None


def _read(source: str | Path | io.BytesIO, name: str) -> np.ndarray:
    size = source.getbuffer().nbytes if isinstance(source, io.BytesIO) else Path(source).stat().st_size
    with Image.open(source) as image:  # reads the header only
        if image.width * image.height > MAX_PIXELS_PER_BYTE * max(size, 1):
            raise ImageTooLargeError(f"{name}: claims {image.width}x{image.height} pixels from only {size:,} bytes: "
                                     "a damaged or hostile file, refusing it before decoding")
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            return _flatten_alpha(np.asarray(image.convert("LA"), dtype=np.float32) / 255)
        return np.asarray(image.convert("L"), dtype=np.float32) / 255


def _flatten_alpha(grey_alpha: np.ndarray) -> np.ndarray:
    """Grey ``(H, W, 2)`` with alpha -> grey on a backdrop of the opposite shade to the drawing."""
    grey, alpha = grey_alpha[..., 0], grey_alpha[..., 1]
    if alpha.min() > 0.99:
        return grey
    drawn = grey[alpha > 0.5]
    backdrop = 0.0 if drawn.size and drawn.mean() > 0.5 else 1.0
    return grey * alpha + backdrop * (1 - alpha)


def load_grey_image(path: Path, size: int) -> np.ndarray:
    """Open any supported image (as :func:`read_grey` does) as grey uint8 of shape ``(size, size)``."""
    image = Image.fromarray(np.round(read_grey(path) * 255).astype(np.uint8))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


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
    images, kept, skipped = [], [], []
    for path, label in tqdm(list(zip(files, labels, strict=True)), desc=f"reading {folder.name}", leave=False):
        try:
            images.append(load_grey_image(path, size))
            kept.append(label)
        except (UnreadableImageError, ImageTooLargeError) as exc:  # one bad file does not cost the rest
            skipped.append(str(exc))
    if not images:
        raise CnnlabError(f"{folder}: none of its {len(files)} images could be read, e.g. {skipped[0]}")
    if skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        print(f"warning: skipped {len(skipped)} of {len(files)} images that could not be read: {skipped[0]}{more}",
              file=sys.stderr)
    return np.stack(images), np.asarray(kept, dtype=np.int64), list(class_names)


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
