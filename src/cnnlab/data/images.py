"""Image files as pixels: decoding safely, grey or colour, and fitting any shape to a square.

Every image file cnnlab reads (a training folder, a photo to predict, an upload) goes through
:func:`decode`, which refuses damaged or hostile files before they are allocated, decodes at most
:data:`MAX_DECODED_PIXELS` pixels (a larger JPEG is decoded reduced, by its own decoder; other
formats are refused), applies the EXIF orientation of phone photos, and brings 16-bit, 32-bit and
float images to 8 bits (:func:`eight_bit`).

Non-square images keep their aspect: :func:`fit_square` pads the short side with the colour of
the image's own border, then resizes. A centre crop was the other choice; it was not taken because
it can cut off what names the class (a digit near the edge, a shoe's toe), while padding only adds
background.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from cnnlab.errors import CnnlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
Image.MAX_IMAGE_PIXELS = 64_000_000  # larger claims are refused as decompression bombs
# Pixels decoded per image: 16 MB grey, 64 MB colour (Pillow keeps RGB as 4 bytes), 64 MB as the float
# grey the handwriting steps work on. A 12-megapixel phone photo (4032x3024) is read whole; a larger JPEG
# is decoded at 1/2, 1/4 or 1/8 of its size by its own decoder (Pillow's draft); other formats are refused.
MAX_DECODED_PIXELS = 16_000_000
# The formats cnnlab opens, by Pillow's names ("JPEG" opens a phone's multi-picture MPO too). Pillow
# knows more, and some decode the whole image while opening it (ICO, ICNS), or hand the file to
# another program (EPS, to Ghostscript).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# The most memory preparing one image takes, in bytes: 20 a decoded pixel, 320 MB (measured: 290 MB for a
# 16-megapixel PNG with transparency on the handwriting path, at most 175 MB for one without or on a plain resize).
MAX_IMAGE_MEMORY = 20 * MAX_DECODED_PIXELS
# A valid file cannot hold more pixels per byte than this: DEFLATE (PNG, TIFF) compresses at most
# about 1,032:1, so 8-bit pixels stop near 1,000 a byte and 1-bit ones near 8,300. A header that
# claims more is refused before Pillow allocates the image, so memory stays in proportion to the file.
MAX_PIXELS_PER_BYTE = 16_384
MIN_SIDE = 8  # smaller images hold too little to classify (and to resize sensibly)
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
BIT_DEPTHS = (8, 10, 12, 14, 16)  # the depths of integer pixels in a 16-bit file: 8-bit data, or a 10-16 bit sensor
COLOUR_CHROMA = 3.0  # mean (max - min) over R, G, B, in 0-255 levels, above which an image counts as colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")
READABLE = "PNG, JPEG, BMP, GIF, TIFF or WebP"
REDUCING_GAP = 3  # see reduced_for


class UnreadableImageError(CnnlabError):
    """The bytes are not an image in a format Pillow reads."""


class ImageTooLargeError(CnnlabError):
    """The image has more pixels than cnnlab decodes (:data:`MAX_DECODED_PIXELS`), or claims more
    than its bytes can hold (a decompression bomb)."""


class ImageTooSmallError(CnnlabError):
    """The image has fewer than :data:`MIN_SIDE` pixels on a side."""


def decode(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Open an image file (or its bytes): decoded, at most :data:`MAX_DECODED_PIXELS` pixels, turned
    upright (EXIF orientation) and in 8 bits a channel (:func:`eight_bit`).

    Raises one-line errors: :class:`UnreadableImageError`, :class:`ImageTooLargeError` (a file other
    than JPEG of more than :data:`MAX_DECODED_PIXELS` pixels, any of more than 64 megapixels, or one
    claiming more pixels than its bytes can hold), :class:`ImageTooSmallError`.
    """
    name = name or (str(source) if not isinstance(source, bytes) else "the image")
    try:
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        # cnnlab opens the file itself, so it can close it while the decoded pixels are kept (no copy)
        with (nullcontext(io.BytesIO(source)) if isinstance(source, bytes) else open(source, "rb")) as stream, \
                warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, do not just warn
            image = Image.open(stream, formats=FORMATS)  # reads the header only
            if image.width * image.height > MAX_PIXELS_PER_BYTE * max(size, 1):
                raise ImageTooLargeError(f"{name}: claims {image.width}x{image.height} pixels from only "
                                         f"{size:,} bytes: a damaged or hostile file, refusing it before decoding")
            _reduce_while_decoding(image, name)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            upright = eight_bit(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(f"{name}: has more than {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels, too many "
                                 f"pixels for a photo; shrink it to at most {MAX_DECODED_PIXELS // 1_000_000} "
                                 "megapixels") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(f"{name}: not a readable image; use {READABLE}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnreadableImageError(f"{name}: not a readable image ({_without_reprs(exc)}); use {READABLE}"
                                   ) from None
    if min(upright.size) < MIN_SIDE:
        raise ImageTooSmallError(f"{name}: is {upright.width}x{upright.height} pixels, too small to classify; "
                                 f"use images of at least {MIN_SIDE}x{MIN_SIDE}")
    return upright


def _reduce_while_decoding(image: Image.Image, name: str) -> None:
    """Have a JPEG of more than :data:`MAX_DECODED_PIXELS` pixels decoded at 1/2, 1/4 or 1/8 of its
    size (the least reduction that brings it under), by its own decoder: the full image is never
    allocated. Any other format that large is refused: Pillow decodes it whole before it can be reduced."""
    width, height = image.size
    if width * height <= MAX_DECODED_PIXELS:
        return
    # A progressive JPEG's decoder keeps every coefficient of the whole image whatever the scale
    # (2 bytes a sample): only a baseline JPEG is read reduced. MPO, a phone's multi-picture JPEG, is one too.
    if isinstance(image, JpegImagePlugin.JpegImageFile) and not image.info.get("progressive"):
        scale = next((s for s in (2, 4, 8) if math.ceil(width / s) * math.ceil(height / s) <= MAX_DECODED_PIXELS),
                     None)
        if scale and image.draft(None, (width // scale, height // scale)):
            return
    megapixels = MAX_DECODED_PIXELS // 1_000_000
    raise ImageTooLargeError(f"{name}: is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), more "
                             f"than the {megapixels} megapixels cnnlab decodes; shrink it to at most {megapixels} "
                             "megapixels (e.g. 4608x3456), or save it as a baseline (not progressive) JPEG, which "
                             "is read reduced")


def _without_reprs(exc: BaseException) -> str:
    """Pillow's message for ``exc`` without the Python object reprs some carry (``<_io.BytesIO object at 0x...>``)."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    return text or type(exc).__name__


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8 bits a channel: a 16-bit, 32-bit or float grey image is scaled onto 0-255 by its range.

    Integer pixels (a 16-bit PNG or TIFF) are divided by the top of the smallest bit depth in
    :data:`BIT_DEPTHS` that holds the brightest one: a 16-bit file's 65535 becomes 255, as an
    8-bit export of it would have, and a 12-bit sensor's 4095 becomes 255 too, not a nearly black
    16. A blank frame stays blank. Float pixels in 0-1 are multiplied by 255. Anything else
    (negative values, floats past 1, integers past 65535) is stretched from its darkest pixel to
    its brightest. NaN pixels count as the darkest. Other modes are returned as they are.
    """
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    pixels = np.array(image, dtype=np.float32)
    finite = np.isfinite(pixels)
    low, high = (float(pixels[finite].min()), float(pixels[finite].max())) if finite.any() else (0.0, 0.0)
    if image.mode == "F" and low >= 0 and high <= 1:
        low, top = 0.0, 1.0
    elif image.mode != "F" and low >= 0 and high <= 2 ** BIT_DEPTHS[-1] - 1:
        low, top = 0.0, float(next(2**bits - 1 for bits in BIT_DEPTHS if high <= 2**bits - 1))
    else:
        top = high
    pixels[~finite] = low
    np.clip(pixels, low, top, out=pixels)
    pixels -= low
    pixels *= 255 / (top - low) if top > low else 0.0
    return Image.fromarray(np.round(pixels, out=pixels).astype(np.uint8))


def read_grey(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as grey float32 ``(H, W)`` in 0-1.

    Transparency is flattened onto the shade that contrasts with the drawing, so ink on a
    transparent canvas is kept.
    """
    return to_grey(decode(source, name))


def to_grey(image: Image.Image) -> np.ndarray:
    """A decoded image as grey float32 ``(H, W)`` in 0-1 (transparency flattened, as :func:`read_grey`)."""
    if _has_alpha(image):
        return _flatten_alpha(_unit_floats(image.convert("LA")))
    return _unit_floats(image if image.mode == "L" else image.convert("L"))


def to_rgb(image: Image.Image) -> np.ndarray:
    """A decoded image as float32 ``(H, W, 3)``, height x width x RGB in 0-1; transparency is
    flattened onto black or white, whichever contrasts with what is drawn."""
    if not _has_alpha(image):
        return _unit_floats(image if image.mode == "RGB" else image.convert("RGB"))
    rgba = _unit_floats(image if image.mode == "RGBA" else image.convert("RGBA"))
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    return rgb * alpha + _backdrop((rgb @ LUMA)[alpha[..., 0] > 0.5]) * (1 - alpha)


def _unit_floats(image: Image.Image) -> np.ndarray:
    """An 8-bit image's pixels as float32 in 0-1, divided in place: one float copy of a large photo, not two."""
    pixels = np.array(image, dtype=np.float32)
    pixels /= 255
    return pixels


def reduced_for(image: Image.Image, side: int) -> Image.Image:
    """``image`` reduced by a whole factor (each factor x factor block averaged, Pillow's ``reduce``)
    while its longer side stays at least :data:`REDUCING_GAP` x ``side``, the size it is to be resized
    to: the first step of Pillow's ``resize(reducing_gap=3)``, whose result Pillow documents as
    indistinguishable from a full resize. A large photo is made small while it is still 8-bit,
    before it is turned into floats (4 bytes a channel)."""
    factor = max(image.size) // (REDUCING_GAP * side)
    if factor < 2:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA"):  # reduce takes no palette or 1-bit images
        image = image.convert("RGBA" if _has_alpha(image) else "RGB" if is_colour(image) else "L")
    return image.reduce(factor)


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
    scaled = pixels * 255
    image = Image.fromarray(np.round(scaled, out=scaled).astype(np.uint8))
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
    backdrop = _backdrop(grey[alpha > 0.5])
    flat = 1 - alpha  # grey * alpha + backdrop * (1 - alpha), computed in place: one new array, not four
    flat *= backdrop
    flat += np.multiply(grey, alpha, out=grey)
    return flat


def _backdrop(drawn: np.ndarray) -> float:
    """The shade to put behind transparent pixels: black under a light drawing, else white
    (``drawn``: the grey levels, 0-1, of the opaque pixels)."""
    return 0.0 if drawn.size and drawn.mean() > 0.5 else 1.0
