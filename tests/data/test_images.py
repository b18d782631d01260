"""Decoding and fitting images (cnnlab.data.images): sizes refused, colour told from grey, aspect kept."""

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.images import (
    ImageTooLargeError,
    ImageTooSmallError,
    UnreadableImageError,
    decode,
    fit_square,
    has_chroma,
    is_colour,
    read_grey,
    reduced_for,
    rgb_to_grey,
    to_grey,
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


def drawn_digit(side: int = 64) -> np.ndarray:
    """uint8 ``(side, side)``: a dark stroke on light paper."""
    image = np.full((side, side), 230, np.uint8)
    image[side // 4 : 3 * side // 4, side // 2 - 3 : side // 2 + 3] = 25
    return image


def saved(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_a_16_bit_png_reads_as_its_8_bit_export_would():
    digit = drawn_digit()
    sixteen = saved(Image.fromarray(digit.astype(np.uint16) * 257))  # 0-255 spread over 0-65535
    assert Image.open(io.BytesIO(sixteen)).mode == "I;16"
    assert decode(sixteen).mode == "L"
    assert np.array_equal(read_grey(sixteen), read_grey(saved(Image.fromarray(digit))))


def test_a_12_bit_sensor_s_image_in_a_16_bit_file_is_scaled_by_its_12_bits_not_left_dark():
    digit = (drawn_digit().astype(np.uint32) * 4095 // 255).astype(np.uint16)  # 0-4095: 0-16 of 255 by 16 bits
    grey = read_grey(saved(Image.fromarray(digit)))
    assert np.allclose(grey, drawn_digit() / 255, atol=1 / 255)


def test_a_blank_16_bit_frame_stays_blank():
    rng = np.random.default_rng(0)
    frame = (30_000 + rng.integers(0, 20, (64, 64))).astype(np.uint16)  # paper and a little sensor noise
    grey = read_grey(saved(Image.fromarray(frame)))
    assert grey.max() - grey.min() < 1 / 255 + 1e-6  # not stretched into a pattern of noise


def test_float_images_in_0_1_are_scaled_by_255_and_others_stretched_by_their_range():
    digit = drawn_digit()
    unit = saved(Image.fromarray(digit.astype(np.float32) / 255), "TIFF")
    assert np.array_equal(read_grey(unit), read_grey(saved(Image.fromarray(digit))))
    raw = digit.astype(np.float32) * 0.1 - 5  # e.g. a measurement: -2.5 to 18
    raw[0, 0] = np.nan
    grey = read_grey(saved(Image.fromarray(raw), "TIFF"))
    assert grey.max() == 1.0 and grey[0, 0] == 0.0  # NaN counts as the darkest
    assert np.allclose(grey[1:, 1:], (digit[1:, 1:] - digit.min()) / (digit.max() - digit.min()), atol=1 / 255)


def test_32_bit_integer_images_past_16_bits_are_stretched_by_their_range():
    digit = drawn_digit().astype(np.int32) * 1000 - 70_000  # negative and past 65535
    grey = to_grey(decode(saved(Image.fromarray(digit), "TIFF")))
    assert grey.min() == 0.0 and grey.max() == 1.0
    assert np.allclose(grey, (drawn_digit() - 25) / 205, atol=1 / 255)


def test_a_16_bit_image_is_read_in_colour_too(tmp_path):
    digit = drawn_digit()
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "scan.tif")
    assert np.array_equal(to_rgb(decode(tmp_path / "scan.tif")), np.repeat(digit[..., None], 3, -1) / np.float32(255))


def test_an_image_of_more_pixels_than_are_decoded_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr("cnnlab.data.images.MAX_DECODED_PIXELS", 5_000_000)
    side = 2_300  # 5.29 megapixels, a few kB as a PNG: small files, large memory
    png = saved(Image.new("L", (side, side), 255))
    with pytest.raises(ImageTooLargeError) as info:
        decode(png)
    message = str(info.value)
    assert message == ("the image: is 2300x2300 pixels (5.3 megapixels), more than the 5 megapixels cnnlab decodes; "
                       "shrink it to at most 5 megapixels (e.g. 4608x3456), or save it as a baseline (not "
                       "progressive) JPEG, which is read reduced")


@pytest.mark.parametrize("side, scale", [(120, 2), (220, 4), (400, 8)])
def test_a_jpeg_over_the_bound_is_decoded_reduced_by_its_own_decoder(monkeypatch, side, scale):
    monkeypatch.setattr("cnnlab.data.images.MAX_DECODED_PIXELS", 4_000)
    jpeg = saved(Image.fromarray(np.repeat(drawn_digit(side)[..., None], 3, -1)), "JPEG")
    image = decode(jpeg)
    assert image.size == (-(-side // scale), -(-side // scale)) and image.width * image.height <= 4_000
    with pytest.raises(ImageTooLargeError, match="more than the 0 megapixels"):
        monkeypatch.setattr("cnnlab.data.images.MAX_DECODED_PIXELS", side * side // 65)  # past 1/8 of the size
        decode(jpeg)


def test_a_large_image_is_reduced_while_8_bit_before_it_is_resized():
    photo = Image.fromarray(np.repeat(drawn_digit(900)[..., None], 3, -1))
    assert reduced_for(photo, 28).size == (900 // 10, 900 // 10)  # 10 = 900 // (3 x 28): still 3x the size wanted
    assert reduced_for(photo, 300) is photo  # nothing to gain
    assert reduced_for(photo.convert("P"), 28).mode == "RGB" and reduced_for(photo.convert("1"), 28).mode == "L"
    full = fit_square(to_grey(photo), 28).astype(int)
    assert np.abs(fit_square(to_grey(reduced_for(photo, 28)), 28).astype(int) - full).max() <= 2


def test_an_unreadable_upload_is_named_without_object_reprs(tmp_path):
    with pytest.raises(UnreadableImageError) as info:
        decode(b"not an image at all")
    assert str(info.value) == "the image: not a readable image; use PNG, JPEG, BMP, GIF, TIFF or WebP"
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    truncated = saved(Image.fromarray(noise))[:5_000]
    with pytest.raises(UnreadableImageError) as info:
        decode(truncated, "the upload")
    assert str(info.value).startswith("the upload: not a readable image (") and " at 0x" not in str(info.value)
    (tmp_path / "notes.png").write_text("a text file named .png")
    with pytest.raises(UnreadableImageError, match=r"^.*notes\.png: not a readable image; use PNG"):
        decode(tmp_path / "notes.png")


def streamed_png(width: int, height: int, row: Callable[[int], bytes], colour_type: int = 0) -> bytes:
    """A PNG of 8-bit grey (``colour_type`` 0) or RGBA (6) pixels, compressed a row at a time, so
    a large image costs the test its file's size, not its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(b"\0" + row(y)) for y in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_75_kb_7999x7999_png_is_refused_before_it_is_decoded():
    white = bytes([255]) * 7999
    png = streamed_png(7999, 7999, lambda y: white)  # 64 megapixels, 62 kB: decoded, 64 MB grey, 256 MB as floats
    assert len(png) < 100_000
    tracemalloc.start()
    with pytest.raises(ImageTooLargeError, match=r"^the upload: is 7999x7999 pixels \(64\.0 megapixels\), more than "
                       r"the 16 megapixels cnnlab decodes; shrink it to at most 16 megapixels"):
        decode(png, "the upload")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000


PEAK_OF_ONE_IMAGE = """
import sys
from cnnlab.data.images import read_grey
from cnnlab.handwriting.digit import digit_to_mnist

def peak_kb():
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))

open("/proc/self/clear_refs", "w").write("5")  # the peak so far set back to what is held now
before = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS")))
digit_to_mnist(read_grey(sys.argv[1]))
print((peak_kb() - before) * 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc")
def test_preparing_the_largest_image_decoded_stays_under_the_stated_memory(tmp_path):
    from cnnlab.data.images import MAX_DECODED_PIXELS, MAX_IMAGE_MEMORY

    side = int(MAX_DECODED_PIXELS**0.5)  # 4000x4000 RGBA: the worst case, transparency flattened in floats
    clear, ink = bytes(4 * side), bytes([0, 0, 0, 255]) * (side // 50)
    stroke = bytes(4 * (side // 2)) + ink + bytes(4 * (side - side // 2 - side // 50))
    (tmp_path / "large.png").write_bytes(streamed_png(side, side, lambda y: stroke if side // 4 < y < side * 3 // 4
                                                       else clear, colour_type=6))
    used = int(subprocess.run([sys.executable, "-c", PEAK_OF_ONE_IMAGE, tmp_path / "large.png"], check=True,
                              capture_output=True, text=True).stdout)
    assert MAX_IMAGE_MEMORY / 2 < used < MAX_IMAGE_MEMORY


def test_formats_cnnlab_does_not_read_are_refused_before_pillow_decodes_or_hands_them_on():
    """ICO decodes the whole image inside it while opening; EPS is handed to Ghostscript: neither is
    opened, however the bytes are named."""
    import io

    from PIL import Image

    from cnnlab.data.images import UnreadableImageError, decode

    icon = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(icon, "ICO")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    for data in (icon.getvalue(), eps):
        with pytest.raises(UnreadableImageError, match="not a readable image; use PNG, JPEG, BMP, GIF, TIFF or WebP"):
            decode(data)


def test_a_progressive_jpeg_over_the_bound_is_refused_as_its_decoder_would_hold_it_whole(tmp_path):
    """A baseline JPEG over the bound is decoded reduced; a progressive one would keep every
    coefficient of the whole image, so it is refused, saying how to read it."""
    from PIL import Image

    from cnnlab.data.images import MAX_DECODED_PIXELS, ImageTooLargeError, decode

    side = int(MAX_DECODED_PIXELS**0.5) + 64
    image = Image.new("L", (side, side), 255)
    image.save(tmp_path / "baseline.jpg", quality=50)
    image.save(tmp_path / "progressive.jpg", quality=50, progressive=True)
    assert decode(tmp_path / "baseline.jpg").size == (-(-side // 2), -(-side // 2))
    with pytest.raises(ImageTooLargeError, match="baseline \\(not progressive\\) JPEG"):
        decode(tmp_path / "progressive.jpg")
