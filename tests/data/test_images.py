"""Decoding and fitting images (cnnlab.data.images): sizes refused, colour told from grey, aspect kept."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.images import (
    ImageTooLargeError,
    ImageTooSmallError,
    decode,
    fit_square,
    has_chroma,
    is_colour,
    rgb_to_grey,
    to_rgb,
)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (its CRC made right)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_a_1x1_image_is_refused_in_one_line_naming_it_and_the_fix(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(ImageTooSmallError) as info:
        decode(tmp_path / "dot.png")
    message = str(info.value)
    assert "dot.png" in message and "1x1" in message and "at least 8x8" in message and "\n" not in message


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_a_huge_image_is_refused_before_it_is_decoded(side):
    with pytest.raises(ImageTooLargeError) as info:
        decode(png_claiming(side, side), "huge.png")
    assert "huge.png" in str(info.value) and "\n" not in str(info.value)


def test_colour_is_told_from_grey_saved_as_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    grey_as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    coloured = grey_as_rgb.copy()
    coloured[..., 0] = 255
    assert not has_chroma(grey_as_rgb) and has_chroma(coloured)
    assert is_colour(Image.fromarray(grey_as_rgb)) and not is_colour(Image.fromarray(grey))
    assert np.array_equal(rgb_to_grey(grey_as_rgb), grey)


def test_fit_square_keeps_the_aspect_and_pads_with_the_border_colour():
    wide = np.zeros((10, 40, 3), dtype=np.float32)
    wide[..., 2] = 1.0  # a blue background
    wide[:, 15:25] = (1.0, 0.0, 0.0)  # a red bar in the middle
    square = fit_square(wide, 40)
    assert square.shape == (40, 40, 3)
    assert (square[:15] == (0, 0, 255)).all() and (square[25:] == (0, 0, 255)).all()  # padding: the border's blue
    assert (square[15:25, 15:25] == (255, 0, 0)).all()  # the content unstretched, in the centre
    assert fit_square(wide[..., 0], 20).shape == (20, 20)


def test_transparent_colour_images_are_flattened_onto_a_contrasting_backdrop():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[2:6, 2:6] = (20, 20, 200, 255)  # a dark blue square on a transparent canvas
    rgb = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert np.allclose(rgb[0, 0], 1.0) and np.allclose(rgb[3, 3], np.array([20, 20, 200]) / 255)
