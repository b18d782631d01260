"""Turning a photo or scan of handwriting into what an MNIST network saw in training.

MNIST digits are light ink on black, size-normalised to fit a 20x20 box keeping their aspect
ratio, and placed in 28x28 with their centre of mass at the centre. A photo is dark ink on
light paper, at any size and place, under uneven light. The steps, each a function here:

    read_grey     any image file or bytes -> grey float (H, W) in 0-1, EXIF rotation applied
    ink_image     -> ink bright on black: polarity detected, the paper's light and shadows removed
    ink_mask      -> which pixels are ink: Otsu threshold, specks dropped
    ink_of_photo  -> both, of the part of a large photo that has writing, at full detail
    to_mnist      one digit's ink -> uint8 (28, 28), strokes thickened to MNIST's width
    (a written number: cnnlab.handwriting.number, one mask per digit by cnnlab.handwriting.segment)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cnnlab.data.images import ImageTooLargeError, UnreadableImageError, read_grey
from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo

__all__ = ["ImageTooLargeError", "NoInkError", "UnreadableImageError", "digit_to_mnist", "ink_image", "ink_mask",
           "read_as_mnist", "read_grey", "to_mnist"]

WORK_SIDE = 400  # photos are reduced to at most this many pixels a side first: speed, and less noise
MNIST_BOX = 20  # MNIST fits each digit into a 20x20 box ...
MNIST_SIDE = 28  # ... centred by mass in a 28x28 frame
# Stroke width as stroke_width() measures it on MNIST's ink (>= 128): median 4.7, 98% of digits in 4.02-6.9.
MNIST_STROKE_RANGE = (4.02, 6.9)
MNIST_PEN = 2.6  # the true pen width, in 28x28 pixels, that measures 4.7 there (lines drawn at 1000 px)
MIN_CONTRAST = 0.12  # ink must differ from the paper by this fraction of the full range
NOISE_BLUR = 1.5  # px of the work image: a lone hot pixel keeps under 7% of its contrast, a pen line half
PAPER_SCALE = 0.5  # x the picture's height: anything thinner that stands out from the paper is writing
SPECK_FRACTION = 0.04  # ink blobs smaller than this fraction of the largest are noise
CROP_MARGIN = 0.25  # the writing's part of a large photo is looked at again with this margin (x its size)
DETAILED = 3 * MNIST_BOX  # writing this many pixels tall in the reduced photo has detail enough: not looked at again
# A polarity vote this clear (x the contrast cast) decides; photos of validation digits gave 0.49-1
# without a shadow, and -0.35-0.09 with a shadow's edge through the number (the lit paper voting).
CLEAR_VOTE = 0.4
RULE_LENGTH, RULE_ASPECT = 0.4, 8  # a blob this long (x the image width) and this flat is a ruled line
STRIP_VALUES = 100_000  # a running minimum or maximum works on strips of this many pixels: 400 kB, in cache
HISTOGRAM_BLOCK = 65_536  # values binned at a time, as np.histogram does: the temporaries stay in cache
EIGHT_NEIGHBOURS = np.ones((3, 3), bool)
NEAR_STEPS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if 0 < abs(dy) + abs(dx) <= 2]


class NoInkError(CnnlabError):
    """The image holds nothing that looks like writing."""


def shrink(grey: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``grey`` reduced by area averaging so its longer side is at most ``side``."""
    height, width = grey.shape
    factor = side / max(height, width)
    if factor >= 1:
        return grey
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX))


def ink_image(grey: np.ndarray) -> np.ndarray:
    """Grey 0-1 ``(H, W)`` -> ink 0-1, bright on black, the paper's light and shade removed.

    Pen strokes are thin: the paper is what is left when everything thinner than ``PAPER_SCALE``
    of the picture's height is removed, a grey closing (dark ink filled in with the paper around
    it) or opening (light ink worn away). Unlike a smooth surface fitted to the paper, this
    follows a shadow's edge, sharp or soft. Dark ink is measured against the paper's brightness
    where it lies, so a digit half in shadow keeps one contrast. Which ink it is: see
    :func:`_ink_is_dark`. Raises :class:`NoInkError` when nothing stands out from the paper.
    """
    smooth = ndimage.gaussian_filter(grey, sigma=NOISE_BLUR)
    if smooth.max() - smooth.min() < MIN_CONTRAST:  # not the 1st-99th percentiles: a number can be under 1%
        raise NoInkError("no ink found: the image is blank or has no contrast")
    size = max(3, round(PAPER_SCALE * grey.shape[0]))
    paper_under_dark_ink = _without_thin_strokes(smooth, size, closing=True)
    paper_under_light_ink = _without_thin_strokes(smooth, size, closing=False)
    if _ink_is_dark(smooth, paper_under_dark_ink, paper_under_light_ink, size):
        ink = (paper_under_dark_ink - grey) / np.maximum(paper_under_dark_ink, 0.05)
    else:
        ink = grey - paper_under_light_ink
    ink = np.maximum(ink, 0, out=ink)  # what np.clip(ink, 0, None) does
    top = _percentile(ink[ink > _otsu(ink)], 90) if ink.max() > 0 else 0
    if top < MIN_CONTRAST:
        raise NoInkError("no ink found: nothing stands out from the paper")
    return np.clip(ink / top, 0, 1).astype(np.float32)


def _without_thin_strokes(image: np.ndarray, size: int, closing: bool) -> np.ndarray:
    """A grey closing (``closing``) or opening of ``size`` x ``size``, of the picture continued by its edge pixels.

    scipy's grey_closing extends the picture afresh before each of its two steps, and that puts
    false ink where a shadow's edge meets the border; here the picture is continued once: the
    first step (a maximum for a closing, a minimum for an opening) is taken over the picture and
    ``size - 1`` pixels of its continuation around it, the second brings it back to the picture's
    size. Each is a running extreme along the columns, then along the rows (:func:`_running`),
    the picture turned between them so that both run down contiguous memory. The windows are
    scipy's (a dilation of even size reaches a pixel further right and down than an erosion), so
    the result is that of ``grey_closing(np.pad(image, size // 2 + 1, mode="edge"), size,
    mode="nearest")`` cut back to the picture, exactly: minima and maxima do no arithmetic.
    """
    first, second = (np.maximum, np.minimum) if closing else (np.minimum, np.maximum)
    height, width = image.shape
    spread = _running(image, size, 1 - size, height + size - 1, first)
    spread = _running(spread.T, size, 1 - size, width + size - 1, first)
    back = _running(spread, size, 0, width, second)
    return _running(back.T, size, 0, height, second)


def _running(image: np.ndarray, size: int, start: int, count: int, extreme: np.ufunc) -> np.ndarray:
    """``extreme`` (np.maximum or np.minimum) of each ``size`` consecutive rows of ``image`` continued
    by its first and last rows: row ``i`` of the ``count`` returned covers rows ``start + i`` to
    ``start + i + size - 1``.

    Runs of 2, 4, 8 ... rows are taken from the runs half as long, and two overlapping runs of
    the largest such length make each window: log2(size) passes over the image, whatever the
    size. Columns are taken a strip at a time, so that a strip's passes stay in the CPU's cache.
    """
    rows = np.clip(np.arange(start, start + count + size - 1), 0, len(image) - 1)
    result = np.empty((count, image.shape[1]), image.dtype)
    strip = max(16, STRIP_VALUES // len(rows))
    for left in range(0, image.shape[1], strip):
        run, length = image[rows, left : left + strip], 1
        while 2 * length <= size:
            run = extreme(run[:-length], run[length:])
            length *= 2
        extreme(run[:count], run[size - length : size - length + count], out=result[:, left : left + strip])
    return result


def _ink_is_dark(smooth: np.ndarray, paper_under_dark_ink: np.ndarray, paper_under_light_ink: np.ndarray,
                 size: int) -> bool:
    """Whether the ink is darker than the paper, by a vote of the ``size`` x ``size`` tiles with
    writing, or, where the vote is unclear, by which of the two kinds of ink would be thinner.

    Around writing the paper is most of what is seen, so a tile's median is paper; a tile votes
    for dark ink by how much further its darkest pixel is from that median than its lightest.
    Only tiles where something thinner than ``size`` stands out vote: a shadow's edge alone, which
    neither paper estimate removes, is not writing (the whole picture's median was, where a
    shadow covered most of it). A shadow's edge through the writing still sways the vote (in
    shadow, the lit paper is the lightest pixel): a vote under ``CLEAR_VOTE`` of the contrast
    cast is settled by breadth. The right paper estimate leaves the strokes standing out, a pen's
    width; the wrong one the paper between them and any lit strip, broader. (Breadth alone fails
    on large single digits, whose strokes are as broad as the holes in their loops.)
    """
    vote = cast = 0.0
    stands_out = np.maximum(paper_under_dark_ink - smooth, smooth - paper_under_light_ink)
    for top in range(0, smooth.shape[0], size):
        for left in range(0, smooth.shape[1], size):
            tile = (slice(top, top + size), slice(left, left + size))
            if stands_out[tile].max() >= MIN_CONTRAST:
                low, median, high = smooth[tile].min(), _median(smooth[tile]), smooth[tile].max()
                vote += (median - low) - (high - median)
                cast += high - low
    if abs(vote) >= CLEAR_VOTE * cast:
        return vote > 0
    return _breadth(paper_under_dark_ink - smooth) <= _breadth(smooth - paper_under_light_ink)


def _breadth(stands_out: np.ndarray) -> float:
    """How broad the pixels standing out by at least half the most (and ``MIN_CONTRAST``) are, as
    :func:`stroke_width` measures a pen; inf when none do."""
    mask = stands_out >= max(MIN_CONTRAST, 0.5 * float(stands_out.max()))
    return stroke_width(mask) if mask.any() else float("inf")


def ink_of_photo(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A whole photo, grey 0-1 ``(H, W)`` -> ``(ink, labels, count)``: :func:`ink_image` of the
    part with writing on it, and :func:`ink_mask` of that.

    A large photo is first looked at reduced to ``WORK_SIDE``; where the writing fills only a
    small part of it (a number in the middle of a photographed sheet), that part, with a margin,
    is cut from the full-size photo and looked at again, so the digits keep their detail.
    """
    ink = ink_image(shrink(grey))
    labels, count = ink_mask(ink)
    factor = max(grey.shape) / max(ink.shape)
    rows, cols = np.flatnonzero(labels.any(1)), np.flatnonzero(labels.any(0))
    if factor < 1.5 or rows[-1] - rows[0] >= DETAILED:  # little detail was lost to the reduction
        return ink, labels, count
    margin = CROP_MARGIN * max(rows[-1] - rows[0], cols[-1] - cols[0]) + 2
    top, bottom = (int(min(max(v * factor, 0), grey.shape[0])) for v in (rows[0] - margin, rows[-1] + 1 + margin))
    left, right = (int(min(max(v * factor, 0), grey.shape[1])) for v in (cols[0] - margin, cols[-1] + 1 + margin))
    if max(bottom - top, right - left) > max(grey.shape) / 1.5:
        return ink, labels, count
    ink = ink_image(shrink(grey[top:bottom, left:right]))
    return (ink, *ink_mask(ink))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold: the cut of a 0-1 histogram that best separates two classes (``values`` >= 0)."""
    histogram, edges = _histogram(values, max(float(values.max()), 1e-6))
    weight = np.cumsum(histogram)
    mass = np.cumsum(histogram * edges[:-1])
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight / total - mass) ** 2 / (weight * (total - weight))
    return float(edges[int(np.nanargmax(between[:-1])) + 1]) if total else 0.0  # the upper edge of the cut bin


def _histogram(values: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(values, bins=256, range=(0, top))`` for float ``values`` in 0-``top``, by its
    arithmetic (a bin guessed from the value, then settled against the bin edges), without the
    checks and the copies it makes for values outside the range or weights."""
    edges = np.linspace(0, top, 257, dtype=values.dtype)
    counts = np.zeros(256, np.intp)
    values = values.ravel()
    for start in range(0, len(values), HISTOGRAM_BLOCK):
        part = values[start : start + HISTOGRAM_BLOCK]
        index = (part / np.float64(top) * 256).astype(np.intp)
        np.minimum(index, 255, out=index)  # a value on the top edge is in the last bin
        index -= part < edges[index]
        index += (part >= edges[index + 1]) & (index != 255)
        counts += np.bincount(index, minlength=256)
    return counts, edges


def _percentile(values: np.ndarray, q: float) -> np.floating:
    """``np.percentile(values, q)`` of a 1-D float array without NaN, by its arithmetic (linear
    interpolation between the two nearest ranks, in the array's precision), without its overhead."""
    if not values.size:
        return np.percentile(values, q)
    place = (values.size - 1) * (q / 100)
    below = min(math.floor(place), values.size - 1)
    above = min(below + 1, values.size - 1)
    ranked = np.partition(values, (below, above))
    low, high = ranked[below], ranked[above]
    fraction = place - below if place < values.size - 1 else 0.0
    step = high - low
    return high - step * (1 - fraction) if fraction >= 0.5 else low + step * fraction


def _median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` of a float array without NaN: the middle value, or the mean of the middle two."""
    flat, half = values.ravel(), values.size // 2
    if values.size % 2:
        return np.partition(flat, half)[half]
    ranked = np.partition(flat, (half - 1, half))
    return (ranked[half - 1] + ranked[half]) / 2


def ink_mask(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Which pixels are ink: ``(labels, count)``, connected blobs numbered 1..count, specks dropped.

    A light blur before Otsu's threshold keeps paper grain and sensor noise from forming blobs;
    blobs smaller than ``SPECK_FRACTION`` of the largest are dropped, and so are the ruled lines
    of notebook paper: blobs at least ``RULE_LENGTH`` of the image wide and ``RULE_ASPECT`` times
    wider than tall (no digit is), which a lone faint digit's threshold can let through.
    """
    smooth = ndimage.gaussian_filter(ink, sigma=max(0.6, max(ink.shape) / 400))
    mask = smooth > max(_otsu(smooth), 0.25)
    labels, count = ndimage.label(mask, structure=EIGHT_NEIGHBOURS)
    boxes = ndimage.find_objects(labels, max_label=count)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    for i, (rows, cols) in enumerate(boxes):
        if cols.stop - cols.start >= RULE_LENGTH * ink.shape[1] and \
                cols.stop - cols.start >= RULE_ASPECT * (rows.stop - rows.start):
            areas[i] = 0  # a ruled line
    if not areas.any():
        raise NoInkError("no ink found: nothing stands out from the paper")
    keep = areas >= SPECK_FRACTION * areas.max()
    if keep.all():
        return labels, count
    # label() numbers blobs in the order their first pixels come, row by row: dropping some
    # leaves the others in that order, so the kept are numbered by their rank.
    renumber = np.zeros(count + 1, labels.dtype)
    renumber[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return renumber[labels], int(keep.sum())


def stroke_width(mask: np.ndarray) -> float:
    """Estimated pen width in pixels: 4 x the mean distance from an ink pixel to the paper."""
    if not mask.any():
        return 0.0
    framed = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    framed[1:-1, 1:-1] = mask
    return float(4 * ndimage.distance_transform_edt(framed)[1:-1, 1:-1][mask].mean())


def to_mnist(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One digit's ``ink`` (0-1, bright) where ``mask`` is set -> uint8 ``(28, 28)`` as in MNIST.

    Crops to the ink, fits the longer side to 20 pixels keeping the aspect ratio, and centres by
    mass. When the strokes come out thinner than nearly all of MNIST's (a fine pen on a large
    photo), the ink is grown at full size and the digit made again. Thick strokes are left as they
    are: wearing them away erased blurred digits.
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    near = _near(mask[box])  # keep the strokes' soft edges
    digit = ink[box] * near
    scale = MNIST_BOX / max(digit.shape)
    small = _fit_box(digit, scale)
    width = stroke_width(small >= 0.5)
    if width < MNIST_STROKE_RANGE[0]:
        # The 28x28 estimate saturates for lines a pixel thin, so the growth is worked out at full size.
        grow = round(MNIST_PEN / scale - stroke_width(mask[box]))
        if grow > 0:
            digit = ndimage.grey_dilation(np.pad(digit, grow // 2 + 1), size=(grow + 1, grow + 1))
            small = _fit_box(digit, MNIST_BOX / max(digit.shape))
    # Blur leaves a small digit's strokes grey; MNIST's cores are saturated, so stretch them to white.
    core = small[small > 0.2]
    if core.size:
        small = np.clip(small / max(_percentile(core, 90), 0.2), 0, 1)
    return _centre_by_mass(small)


def _near(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by 2 pixels, 4-connected: ``ndimage.binary_dilation(mask, iterations=2)``, as the
    pixels at most 2 steps up, down, left and right (together) from one set."""
    height, width = mask.shape
    framed = np.zeros((height + 4, width + 4), bool)
    framed[2:-2, 2:-2] = mask
    near = mask.copy()
    for dy, dx in NEAR_STEPS:
        near |= framed[2 + dy : 2 + dy + height, 2 + dx : 2 + dx + width]
    return near


def _fit_box(digit: np.ndarray, scale: float) -> np.ndarray:
    """``digit`` resized by ``scale`` (area averaging when shrinking), 0-1."""
    height, width = digit.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.clip(np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize(size, resample)), 0, 1)


def _centre_by_mass(small: np.ndarray) -> np.ndarray:
    """Place ``small`` (at most 20x20, 0-1) in a black 28x28 with its centre of mass at pixel (14, 14)."""
    frame = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    height, width = small.shape
    mass = small.sum()
    if mass > 0:  # as ndimage.center_of_mass computes it
        centre_y = (small * np.arange(height, dtype=float)[:, None]).sum() / mass
        centre_x = (small * np.arange(width, dtype=float)[None, :]).sum() / mass
    else:
        centre_y, centre_x = height / 2, width / 2
    top = min(max(round(MNIST_SIDE / 2 - centre_y), 0), MNIST_SIDE - height)
    left = min(max(round(MNIST_SIDE / 2 - centre_x), 0), MNIST_SIDE - width)
    frame[top : top + height, left : left + width] = small
    return np.round(frame * 255).astype(np.uint8)


def digit_to_mnist(grey: np.ndarray) -> np.ndarray:
    """A photo or scan of one digit (grey 0-1) -> uint8 ``(28, 28)``; all ink blobs are the digit."""
    ink, labels, _ = ink_of_photo(grey)
    return to_mnist(ink, labels > 0)


def read_as_mnist(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """One photo or scan of a digit (a file, or its bytes) read as MNIST's digits are: uint8 ``(28, 28)``.
    The one way a digit model's photo is read, by ``predict`` and by a folder fine-tuned from such a model."""
    return digit_to_mnist(read_grey(source, name))


def folder_reader(info: ModelInfo) -> Callable[[Path], np.ndarray] | None:
    """How a folder of images is read for ``info``'s model: :func:`read_as_mnist` for a model that
    finds ink (ModelInfo.finds_ink), else None (a plain resize, cnnlab.data.user)."""
    return read_as_mnist if info.finds_ink() else None
