"""A held-out way of making photos of handwriting, used only for the bundled reader's final check
(benchmarks/handwriting.py, "private set"): nothing was chosen by looking at it.

Made differently from tests/photolike.py's generators: each digit sheared on its own (a writer's
slant, up to 0.3), digits 24-200 px tall on a coloured sticky note photographed at an angle
(a perspective warp), in a felt pen 1.5-3 px wide at MNIST's scale, under a vignette, with
sensor noise, saved as JPEG 50-90.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from tests.photolike import ink_crop, lay_out


def _sheared(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    crop = ink_crop(digit)
    slant = rng.uniform(-0.3, 0.3)
    image = Image.fromarray(np.pad(crop, 6))
    image = image.transform(image.size, Image.Transform.AFFINE, (1, slant, -slant * image.height / 2, 0, 1, 0),
                            Image.Resampling.BILINEAR)
    return ink_crop(np.asarray(image))


def written_on_a_note(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """One digit or a number (``digits``: MNIST uint8 images) as a photo of a sticky note."""
    crops = [_sheared(d, rng) for d in digits]
    height = max(c.shape[0] for c in crops)
    ink = lay_out(crops, rng, 8, (3, 13), (1, 9))
    if rng.random() < 0.5:  # a felt pen: strokes a little thicker
        ink = ndimage.grey_dilation(ink, size=(2, 2))
    scale = rng.uniform(24, 200) / height
    big = Image.fromarray(ink).resize((max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))),
                                      Image.Resampling.BICUBIC)
    margin_x, margin_y = int(big.width * rng.uniform(0.2, 0.6)) + 4, int(big.height * rng.uniform(0.3, 0.9)) + 4
    note = Image.new("L", (big.width + 2 * margin_x, big.height + 2 * margin_y))
    note.paste(big, (margin_x, margin_y))
    w, h = note.size
    corners = np.array([[0, 0], [0, h], [w, h], [w, 0]], np.float64)  # PIL's QUAD order: anticlockwise
    moved = corners + rng.uniform(-0.08, 0.08, (4, 2)) * [w, h]
    note = note.transform((w, h), Image.Transform.QUAD, tuple(moved.ravel()), Image.Resampling.BICUBIC)
    alpha = np.asarray(note, np.float32) / 255
    paper = np.array([rng.uniform(230, 255), rng.uniform(200, 250), rng.uniform(90, 200)])  # yellow to pink
    pen = np.array([rng.uniform(0, 80), rng.uniform(0, 80), rng.uniform(0, 80)])
    image = paper * (1 - alpha[..., None]) + pen * alpha[..., None]
    y, x = np.mgrid[0:h, 0:w]
    vignette = 1 - rng.uniform(0.1, 0.35) * (((x - w / 2) / w) ** 2 + ((y - h / 2) / h) ** 2) * 2
    image = image * vignette[..., None] + rng.normal(0, rng.uniform(2, 7), image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG",
                                                                        quality=int(rng.integers(50, 91)))
    return buffer.getvalue()
