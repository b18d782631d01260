"""MNIST test digits rendered the way people's photos and scans of handwriting look.

Dark ink on tinted paper, 20-300 px tall, off-centre, slightly rotated, under uneven light,
with blur, noise and JPEG artefacts, in colour. Used by the preprocessing tests and by
benchmarks/handwriting.py; the digits come from MNIST's *test* split, never from training.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage


def ink_crop(digit: np.ndarray) -> np.ndarray:
    """A uint8 MNIST digit cropped to its ink."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def compose_number(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """MNIST digits (uint8, ink bright) side by side as one handwritten number, ink bright on black.

    Gaps vary from a slight touch to a wide space, and each digit sits a little higher or lower.
    """
    crops = [ink_crop(d) for d in digits]
    height = max(c.shape[0] for c in crops)
    gaps = [int(rng.integers(-1, 6)) for _ in crops[1:]]
    width = sum(c.shape[1] for c in crops) + sum(gaps) + 4
    canvas = np.zeros((height + 8, width + 4), dtype=np.uint8)
    x = 2
    for i, crop in enumerate(crops):
        y = int(rng.integers(0, 8 + height - crop.shape[0]))  # a little higher or lower than its neighbours
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return canvas


def render_photo(ink: np.ndarray, rng: np.random.Generator, height: int | None = None) -> bytes:
    """Ink bright on black (uint8, e.g. an MNIST digit) -> JPEG or PNG bytes of a photo of it."""
    rows = np.flatnonzero(ink.any(1))
    ink_height = rows[-1] - rows[0] + 1
    target = height or int(rng.integers(20, 301))
    scale = target / ink_height
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    strokes = Image.fromarray(ink).resize(size, Image.Resampling.BICUBIC)
    strokes = strokes.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC, expand=True)
    pad_x, pad_y = (int(s * rng.uniform(0.1, 0.8)) + 2 for s in strokes.size)
    canvas = Image.new("L", (strokes.width + pad_x + int(rng.integers(2, pad_x + 3)),
                             strokes.height + pad_y + int(rng.integers(2, pad_y + 3))))
    canvas.paste(strokes, (pad_x, pad_y))
    alpha = np.asarray(canvas, dtype=np.float32) / 255 * rng.uniform(0.75, 1.0)
    h, w = alpha.shape
    paper = np.array([rng.uniform(200, 250), rng.uniform(195, 245), rng.uniform(180, 240)])
    pen = np.array([rng.uniform(0, 60), rng.uniform(0, 60), rng.uniform(0, 110)])
    image = paper * (1 - alpha[..., None]) + pen * alpha[..., None]
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    slope = rng.uniform(-1, 1, 2)
    light = 1 - rng.uniform(0, 0.35) * np.clip(slope[0] * (x - 0.5) + slope[1] * (y - 0.5) + 0.5, 0, 1)
    image = image * light[..., None] + rng.normal(0, rng.uniform(1, 8), image.shape)
    photo = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.03) * target))  # focus blur, by writing size
    buffer = io.BytesIO()
    if rng.random() < 0.7:
        photo.save(buffer, "JPEG", quality=int(rng.integers(40, 92)))
    else:
        photo.save(buffer, "PNG")
    return buffer.getvalue()


def uci_digits_as_photos(count: int, rng: np.random.Generator, half: str | None = None
                         ) -> tuple[list[bytes], np.ndarray]:
    """A second handwriting source: the UCI digits bundled with scikit-learn (43 writers, none of
    MNIST's; 8x8, 17 grey levels), rendered as photos like the MNIST ones. ``half``: ``validation``
    draws from one half of them (a fixed shuffle), ``test`` from the other, None from all; ``count``
    is capped at what there is."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(1797).permutation(len(digits.images))
    pool = {"validation": order[::2], "test": order[1::2]}.get(half, order) if half else order
    picks = rng.choice(pool, min(count, len(pool)), replace=False)
    ink = (digits.images[picks] * 255 / 16).astype(np.uint8)
    return [render_photo(np.pad(image, 1), rng) for image in ink], digits.target[picks]


def number_written_differently(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A number made another way than ``compose_number`` + ``render_photo``, to check that the
    reader was not fitted to one generator: each digit tilted up to 12 degrees and 80-120% in
    size, gaps from an overlap of 3 px to a space of 8, ruled paper with a shadow across it,
    pencil grey, JPEG 40-95, grey only."""
    crops = []
    for digit in digits:
        image = Image.fromarray(digit).rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
        size = rng.uniform(0.8, 1.2)
        image = np.asarray(image.resize((round(28 * size * rng.uniform(0.9, 1.1)), round(28 * size)),
                                        Image.Resampling.BILINEAR))
        columns = np.flatnonzero(image.max(0) > 30)
        crops.append(image[:, columns[0] : columns[-1] + 1])
    height = max(c.shape[0] for c in crops) + 10
    canvas = np.zeros((height, sum(c.shape[1] + 12 for c in crops) + 10), np.uint8)
    x = 5
    for crop in crops:
        y = int(rng.integers(0, height - crop.shape[0] + 1))
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + int(rng.integers(-3, 9))
    scale = rng.uniform(1.5, 8)
    big = Image.fromarray(canvas[:, : x + 5])
    big = big.resize((round(big.width * scale), round(big.height * scale)), Image.Resampling.BICUBIC)
    ink = np.asarray(big.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))), np.float32) / 255
    paper = np.full(ink.shape, rng.uniform(170, 255), np.float32)
    for line in range(int(rng.integers(0, 30)), ink.shape[0], int(rng.integers(25, 60))):
        paper[line] -= rng.uniform(10, 40)
    paper += np.linspace(0, rng.uniform(-40, 40), ink.shape[1])[None, :]
    image = paper * (1 - ink) + rng.uniform(20, 120) * ink + rng.normal(0, rng.uniform(0, 10), ink.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(40, 95)))
    return buffer.getvalue()


def number_on_a_page(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A number made a third way: written with a slant on a page photographed whole, so it is a small
    part of the photo, often under the phone's shadow. Digits 30-100 px tall, gaps of 2-12 MNIST
    pixels, slant up to 0.25, a page 1.5-3x as wide and 3-6x as tall as the number, a shadow (in 70%)
    with a sharp or soft edge that dims a side of it by 30-55%, blue or black ballpoint, JPEG 60-95."""
    crops = [ink_crop(d) for d in digits]
    canvas = np.zeros((40, sum(c.shape[1] + 12 for c in crops) + 12), np.uint8)
    x = 6
    for crop in crops:
        y = int(rng.integers(2, 40 - crop.shape[0]))  # MNIST's ink is at most 28 tall
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + int(rng.integers(2, 13))
    number = Image.fromarray(canvas[:, : x + 4])
    scale = rng.uniform(30, 100) / 28
    number = number.resize((round(number.width * scale), round(number.height * scale)), Image.Resampling.BICUBIC)
    slant = rng.uniform(-0.25, 0.25)
    number = number.transform((number.width + round(abs(slant) * number.height), number.height),
                              Image.Transform.AFFINE, (1, slant, -max(slant, 0) * number.height, 0, 1, 0),
                              Image.Resampling.BICUBIC)
    height, width = round(number.height * rng.uniform(3, 6)), round(number.width * rng.uniform(1.5, 3))
    alpha = np.zeros((height, width), np.float32)
    top, left = int(rng.integers(0, height - number.height)), int(rng.integers(0, width - number.width))
    alpha[top : top + number.height, left : left + number.width] = np.asarray(number, np.float32) / 255
    paper = np.array([rng.uniform(215, 250), rng.uniform(215, 250), rng.uniform(205, 245)])
    pen = np.array([20, 25, 40]) if rng.random() < 0.5 else np.array([30, 45, 150])
    image = paper * (1 - alpha[..., None]) + pen * alpha[..., None]
    if rng.random() < 0.7:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        across = (x - rng.uniform(0.2, 0.8) * width) + rng.uniform(-1, 1) * (y - height / 2)
        softness = rng.choice([1.0, rng.uniform(0.05, 0.2) * width])
        shade = np.clip(across / softness + 0.5, 0, 1)
        shade = shade if rng.random() < 0.5 else 1 - shade  # the shadow on either side of its edge
        image = image * (1 - rng.uniform(0.3, 0.55) * shade)[..., None]
    image = image + rng.normal(0, rng.uniform(2, 6), image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG",
                                                                        quality=int(rng.integers(60, 96)))
    return buffer.getvalue()


def photographed_number(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """``compose_number`` rendered by ``render_photo`` at a random height of 20-300 px."""
    return render_photo(compose_number(digits, rng), rng, int(rng.integers(20, 301)))


def read_numbers(read: Callable[[bytes], list[np.ndarray]], classify: Callable[[list[np.ndarray]], np.ndarray],
                 images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
                 make_photo: Callable[[list[np.ndarray], np.random.Generator], bytes] = photographed_number,
                 ) -> tuple[int, int]:
    """Photos of ``count`` numbers of 3-6 MNIST digits (``make_photo``), each read by ``read`` (a photo
    -> the 28x28 digits it saw) and classified by ``classify``: ``(read whole, wrong count of digits)``."""
    right = wrong_count = 0
    for _ in range(count):
        chosen = rng.choice(len(images), int(rng.integers(3, 7)), replace=False)
        digits = read(make_photo(list(images[chosen]), rng))
        if len(digits) != len(chosen):
            wrong_count += 1
        else:
            right += bool((classify(digits) == labels[chosen]).all())
    return right, wrong_count


def lay_out(crops: list[np.ndarray], rng: np.random.Generator, margin: int, rise: tuple[int, int],
            gaps: tuple[int, int]) -> np.ndarray:
    """Ink crops (uint8, bright) left to right on black, ``margin`` px from each side: each placed
    ``rise[0]`` to ``rise[1] - 1`` px (plus the room a shorter crop leaves) from the top, and the
    next ``gaps[0]`` to ``gaps[1] - 1`` px further on."""
    height = max(c.shape[0] for c in crops)
    canvas = np.zeros((height + rise[0] + rise[1], sum(c.shape[1] + gaps[1] for c in crops) + 2 * margin), np.uint8)
    x = margin
    for crop in crops:
        y = int(rng.integers(rise[0], rise[1] + height - crop.shape[0]))
        region = canvas[y : y + crop.shape[0], x : x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + int(rng.integers(*gaps))
    return canvas[:, : x + margin]


def number_in_marker(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A number written with a thick marker: strokes grown by 1-1.5 MNIST pixels each side (so
    about twice as thick as a ballpoint's, a quarter of the digit's height), the digits spaced as
    a marker's writer spaces them (2-7 px), photographed like ``render_photo``'s."""
    big = Image.fromarray(lay_out([ink_crop(d) for d in digits], rng, 4, (2, 10), (2, 8)))
    big = big.resize((big.width * 4, big.height * 4), Image.Resampling.BICUBIC)
    radius = rng.uniform(4, 6)  # at 4x: 1-1.5 MNIST pixels
    y, x = np.mgrid[-6:7, -6:7]
    thick = ndimage.grey_dilation(np.asarray(big), footprint=(x**2 + y**2) <= radius**2)
    return render_photo(thick, rng, int(rng.integers(60, 301)))
