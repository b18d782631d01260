"""Image files as pixels: decoding safely, grey or colour, and fitting any shape to a square.

Every image file cnnlab reads (a training folder, a photo to predict, an upload) goes through
:func:`decode`, which refuses damaged or hostile files before they are allocated and applies the
EXIF orientation of phone photos.

Non-square images keep their aspect: :func:`fit_square` pads the short side with the colour of
the image's own border, then resizes. A centre crop was the other choice; it was not taken because
it can cut off what names the class (a digit near the edge, a shoe's toe), while padding only adds
background.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Image.MAX_IMAGE_PIXELS = 64_000_000  # larger claims are refused as decompression bombs
# A valid file cannot hold more pixels per byte than this: DEFLATE (PNG, TIFF) compresses at most
# about 1,032:1, so 8-bit pixels stop near 1,000 a byte and 1-bit ones near 8,300. A header that
# claims more is refused before Pillow allocates the image, so memory stays in proportion to the file.
MAX_PIXELS_PER_BYTE = 16_384
MIN_SIDE = 8  # smaller images hold too little to classify (and to resize sensibly)
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
COLOUR_CHROMA = 3.0  # mean (max - min) over R, G, B, in 0-255 levels, above which an image counts as colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


class UnreadableImageError(CnnlabError):
    """The bytes are not an image in a format Pillow reads."""


class ImageTooLargeError(CnnlabError):
    """The image claims more pixels than a photo has (a decompression bomb)."""


class ImageTooSmallError(CnnlabError):
    """The image has fewer than :data:`MIN_SIDE` pixels on a side."""


def decode(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open an image file (or its bytes), loaded and turned upright (EXIF orientation).

    Raises one-line errors: :class:`UnreadableImageError`, :class:`ImageTooLargeError` (more than
    64 megapixels, or more pixels than its bytes can hold), :class:`ImageTooSmallError`.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "image")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    size = stream.getbuffer().nbytes if isinstance(stream, io.BytesIO) else Path(stream).stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, do not just warn
            with Image.open(stream) as image:  # reads the header only
                if image.width * image.height > MAX_PIXELS_PER_BYTE * max(size, 1):
                    raise ImageTooLargeError(f"{name}: claims {image.width}x{image.height} pixels from only "
                                             f"{size:,} bytes: a damaged or hostile file, refusing it before decoding")
                image.load()
                upright = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name}: has more than {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels, too many "
                                 "pixels for a photo; shrink it and try again") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImageError(f"{name}: not a readable image ({exc}); use PNG, JPEG, BMP, GIF, TIFF or WebP"
                                   ) from None
    if min(upright.size) < MIN_SIDE:
        raise ImageTooSmallError(f"{name}: is {upright.width}x{upright.height} pixels, too small to classify; "
                                 f"use images of at least {MIN_SIDE}x{MIN_SIDE}")
    return upright


def read_grey(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as grey float32 ``(H, W)`` in 0-1.

    Transparency is flattened onto the shade that contrasts with the drawing, so ink on a
    transparent canvas is kept.
    """
    return to_grey(decode(source, name))


def to_grey(image: Image.Image) -> np.ndarray:
    """A decoded image as grey float32 ``(H, W)`` in 0-1 (transparency flattened, as :func:`read_grey`)."""
    if _has_alpha(image):
        return _flatten_alpha(np.asarray(image.convert("LA"), dtype=np.float32) / 255)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded image as float32 ``(H, W, 3)``, height x width x RGB in 0-1; transparency is
    flattened onto black or white, whichever contrasts with what is drawn."""
    if not _has_alpha(image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    return rgb * alpha + _backdrop((rgb @ LUMA)[alpha[..., 0] > 0.5]) * (1 - alpha)


def is_colour(image: Image.Image) -> bool:
    """Whether the image's mode can hold colour (its pixels may still all be grey: see :func:`has_chroma`)."""
    return image.mode not in GREY_MODES


def has_chroma(rgb: np.ndarray) -> bool:
    """Whether uint8 ``(H, W, 3)`` pixels are really coloured, not grey saved as RGB (a scan, a JPEG)."""
    pixels = rgb.astype(np.int16)
    return float((pixels.max(-1) - pixels.min(-1)).mean()) > COLOUR_CHROMA


def rgb_to_grey(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3)`` -> uint8 ``(...)`` by the ITU-R 601 luma weights (as Pillow's convert("L"))."""
    return np.round(images.astype(np.float32) @ LUMA).clip(0, 255).astype(np.uint8)


def fit_square(pixels: np.ndarray, side: int) -> np.ndarray:
    """Float ``(H, W)`` or ``(H, W, 3)`` pixels in 0-1 -> uint8 ``(side, side[, 3])``: the short side
    padded with the median colour of the image's border (the aspect is kept), then resized
    (Pillow's bilinear filter, which averages when shrinking)."""
    height, width = pixels.shape[:2]
    if height != width:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        fill = np.median(border, axis=0)
        square = np.empty((max(height, width), max(height, width), *pixels.shape[2:]), dtype=pixels.dtype)
        square[...] = fill
        top, left = (len(square) - height) // 2, (len(square) - width) // 2
        square[top : top + height, left : left + width] = pixels
        pixels = square
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _flatten_alpha(grey_alpha: np.ndarray) -> np.ndarray:
    """Grey ``(H, W, 2)`` with alpha -> grey on a backdrop of the opposite shade to the drawing."""
    grey, alpha = grey_alpha[..., 0], grey_alpha[..., 1]
    if alpha.min() > 0.99:
        return grey
    return grey * alpha + _backdrop(grey[alpha > 0.5]) * (1 - alpha)


def _backdrop(drawn: np.ndarray) -> float:
    """The shade to put behind transparent pixels: black under a light drawing, else white
    (``drawn``: the grey levels, 0-1, of the opaque pixels)."""
    return 0.0 if drawn.size and drawn.mean() > 0.5 else 1.0
