import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from scipy import ndimage

from cnnlab.errors import CnnlabError
from cnnlab.handwriting import number
from cnnlab.handwriting.asking import answered
from cnnlab.handwriting.digit import (
    MNIST_STROKE_RANGE,
    NoInkError,
    digit_to_mnist,
    ink_image,
    read_grey,
    shrink,
    stroke_width,
)
from cnnlab.handwriting.number import number_to_mnist
from tests.helpers import png_claiming
from tests.photolike import number_on_a_page


def drawn_seven(size: int = 200, width: int = 14, ink: int = 20, paper: int = 235) -> np.ndarray:
    """A '7' drawn dark on light paper, grey 0-1, off-centre in a ``size`` x ``size`` picture."""
    image = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(image)
    s = size / 200
    draw.line([(30 * s, 40 * s), (110 * s, 40 * s), (70 * s, 150 * s)], fill=ink, width=max(1, round(width * s)))
    return np.asarray(image, dtype=np.float32) / 255


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG")
    return buffer.getvalue()


def test_output_is_mnist_shaped_boxed_and_centred_by_mass():
    digit = digit_to_mnist(drawn_seven())
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # the 20x20 box, plus soft edges
    assert np.allclose(ndimage.center_of_mass(digit.astype(float)), (14, 14), atol=1)
    assert digit[0].max() == digit[:, 0].max() == 0 and digit.max() == 255  # black paper, saturated ink


def test_dark_on_light_and_light_on_dark_give_the_same_digit():
    dark_ink = drawn_seven()
    assert np.abs(digit_to_mnist(dark_ink).astype(int) - digit_to_mnist(1 - dark_ink).astype(int)).max() <= 2


def test_uneven_light_is_removed():
    grey = drawn_seven()
    y, x = np.mgrid[0:200, 0:200] / 200
    shaded = grey * (1 - 0.45 * x * y)  # a shadow darkens one corner to about half the paper's light
    plain, lit = digit_to_mnist(grey), digit_to_mnist(shaded)
    assert (np.abs(plain.astype(int) - lit.astype(int)) > 64).mean() < 0.02  # no shadow blob kept as ink


def test_a_sharp_shadow_over_most_of_the_picture_and_half_the_digit_is_removed():
    y, x = np.mgrid[0:200, 0:200]
    shaded = drawn_seven() * np.where(x > 60 + 0.2 * y, 0.5, 1.0)  # a phone's shadow, its edge across the 7
    clean = digit_to_mnist(drawn_seven())
    assert (np.abs(digit_to_mnist(shaded).astype(int) - clean.astype(int)) > 64).mean() < 0.03


def test_a_shadows_edge_near_a_small_number_on_a_page_does_not_turn_the_ink_light(mnist):
    """In shadow, the lit paper beyond the edge is the lightest thing near the number: it must not
    win the vote for light ink (it did on 8 of 300 such photos of validation digits)."""
    rng = np.random.default_rng(11)
    digits = mnist.test_images.numpy()
    light = []
    for k in range(150):
        grey = shrink(read_grey(number_on_a_page(list(digits[rng.choice(len(digits), 4)]), rng)))
        ink = ink_image(grey) > 0.5
        around = ndimage.binary_dilation(ink, iterations=3) & ~ink
        if grey[ink].mean() > grey[around].mean():  # what was taken for ink is lighter than the paper by it
            light.append(k)
    assert not light


def test_thin_pen_on_a_large_photo_is_thickened_to_mnist_strokes():
    digit = digit_to_mnist(drawn_seven(size=900, width=3))  # a 1-pixel line after the shrink to 20x20
    assert MNIST_STROKE_RANGE[0] <= stroke_width(digit >= 128) <= MNIST_STROKE_RANGE[1]


def test_noise_and_specks_are_not_ink():
    rng = np.random.default_rng(0)
    grey = np.clip(drawn_seven() + rng.normal(0, 0.04, (200, 200)), 0, 1).astype(np.float32)
    grey[180:182, 10:12] = 0.1  # a speck of dirt far from the digit
    clean = digit_to_mnist(drawn_seven())
    assert (np.abs(digit_to_mnist(grey).astype(int) - clean.astype(int)) > 64).mean() < 0.03


def test_ruled_lines_of_notebook_paper_are_not_ink():
    lined = drawn_seven()
    for row in (15, 170, 192):  # clear of the digit, as dark as a pencil's line
        lined[row : row + 2] = 0.3
    clean = digit_to_mnist(drawn_seven())
    assert (np.abs(digit_to_mnist(lined).astype(int) - clean.astype(int)) > 64).mean() < 0.03


def test_a_small_digit_in_a_large_photo_is_found():
    photo = np.full((1200, 1600), 235 / 255, np.float32)  # a sheet photographed whole ...
    photo[700:900, 300:500] = drawn_seven(width=8)  # ... with one digit on it: 0.1% of the pixels are ink
    assert (drawn_seven(width=8) < 0.5).sum() < 0.002 * photo.size
    clean = digit_to_mnist(drawn_seven(width=8))
    assert (np.abs(digit_to_mnist(photo).astype(int) - clean.astype(int)) > 64).mean() < 0.01


@pytest.mark.parametrize("grey", [np.full((50, 80), 0.9, np.float32),
                                  np.random.default_rng(1).uniform(0.8, 0.84, (60, 60)).astype(np.float32)])
def test_blank_paper_has_no_ink(grey):
    with pytest.raises(NoInkError, match="no ink"):
        digit_to_mnist(grey)


def test_colour_transparency_and_exif_rotation_are_read():
    seven = (drawn_seven() * 255).astype(np.uint8)
    rgb = np.stack([seven, seven, np.minimum(seven + 10, 255)], axis=-1)
    assert np.allclose(read_grey(png_bytes(rgb, "RGB")), seven / 255, atol=0.03)
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[..., 3] = 235 - seven  # black ink on a transparent canvas, as a browser draws it
    flattened = read_grey(png_bytes(rgba, "RGBA"))
    assert flattened[0, 0] == 1.0 and flattened.min() < 0.2
    image = Image.fromarray(seven)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    upright = read_grey(buffer.getvalue())
    turned, unturned = (np.abs(upright - x / 255).mean() for x in (np.rot90(seven, -1), seven))
    assert turned < 0.01 < unturned  # JPEG blurs the edges a little; the rotation is what matters


def test_unreadable_bytes_and_decompression_bombs_are_refused():
    with pytest.raises(CnnlabError, match="not a readable image"):
        read_grey(b"GIF89a not really", "x.gif")
    huge = io.BytesIO()
    Image.new("1", (9000, 9000)).save(huge, "PNG")  # a few kB on disk, 81 million pixels claimed
    with pytest.raises(CnnlabError, match="too many pixels"):
        read_grey(huge.getvalue())


def written_number(parts: list[tuple[int, int, int, int]], size=(120, 400)) -> np.ndarray:
    """Ink rectangles and strokes ``(left, top, right, bottom)`` dark on light paper."""
    image = Image.new("L", size[::-1], 230)
    draw = ImageDraw.Draw(image)
    for left, top, right, bottom in parts:
        draw.ellipse((left, top, right, bottom), outline=20, width=8)
    return np.asarray(image, dtype=np.float32) / 255


def test_number_digits_come_left_to_right_and_broken_strokes_stay_one_digit():
    grey = written_number([(250, 20, 300, 100), (20, 20, 70, 100), (140, 20, 190, 100)])
    grey[8:14, 140:190] = 0.1  # a bar above the middle digit, not touching it (a 5's top)
    digits = number_to_mnist(grey)
    assert len(digits) == 3  # the bar is neither a digit of its own nor lost
    difference = [np.abs(digits[0].astype(int) - d.astype(int)).mean() for d in digits[1:]]
    assert difference[1] < 1 < difference[0]  # the outer two are the same ring; the middle one has the bar


def test_touching_digits_are_split_by_width():
    grey = written_number([(20, 30, 70, 90), (120, 30, 170, 90), (166, 30, 216, 90), (280, 30, 330, 90)])
    assert len(number_to_mnist(grey)) == 4


def test_reading_digit_or_number_lets_the_classifier_keep_narrow_marks_whole(monkeypatch):
    # cnnlab read (digit or number) asks the classifier whether a cut narrow mark is one digit
    # (segment.digit_masks' sureness); --number cuts as the judge likes (it cost the one-epoch
    # model touching 1s).
    asked = []
    real = number.masks_of_marks
    monkeypatch.setattr(number, "masks_of_marks", lambda *args: asked.append(args[3] is not None) or real(*args))
    grey = written_number([(20, 30, 70, 90), (120, 30, 170, 90), (280, 30, 330, 90)])
    sure = lambda images: np.full(len(images), 0.9)  # noqa: E731
    assert len(answered(number.read_digit_or_number(grey), sure).digits) == 3
    assert len(answered(number.read_number(grey), sure).digits) == 3
    assert asked == [True, False]


def test_a_reading_asks_its_questions_and_asks_nothing_without_a_classifier():
    grey = written_number([(20, 30, 70, 90), (120, 30, 170, 90), (166, 30, 216, 90)])
    question = next(number.read_number(grey))  # nothing is called: the pieces come to the caller
    assert question.dtype == np.uint8 and question.ndim == 3 and question.shape[1:] == (28, 28)
    questions = []

    def count(images):
        questions.append(len(images))
        return np.full(len(images), 0.9)

    reading = answered(number.read_number(grey), count)
    assert questions and all(n > 0 for n in questions) and len(reading.digits) >= 2
    assert len(reading.views) == 4  # the sequence reader's views go with the digits
    assert [d.tolist() for d in number.number_to_mnist(grey)] == [
        d.tolist() for d in answered(number.read_number(grey, ask=False), None).digits]
    with pytest.raises(ValueError, match="asks a classifier"):
        answered(number.read_number(grey), None)


def test_too_many_marks_is_not_a_number():
    grey = np.full((100, 800), 0.9, np.float32)
    for k in range(30):
        grey[40:60, 10 + 26 * k : 22 + 26 * k] = 0.1
    with pytest.raises(CnnlabError, match="too many"):
        number_to_mnist(grey)


@pytest.fixture(scope="module")
def encoded_digit() -> dict[str, bytes]:
    """One drawn digit as PNG and as JPEG bytes, to be cut short and damaged by the fuzz tests."""
    canvas = np.full((60, 50), 230, np.uint8)
    canvas[10:50, 22:28] = 20
    found = {}
    for kind in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, kind)
        found[kind] = buffer.getvalue()
    return found


def read_all_ways(data: bytes) -> None:
    """What cnnlab predict does with an image's bytes: any outcome but a clean error must be an answer."""
    try:
        grey = read_grey(data, "fuzz")
    except CnnlabError:
        return
    for make in (digit_to_mnist, number_to_mnist):
        try:
            made = make(grey)
        except CnnlabError:
            continue
        for image in made if isinstance(made, list) else [made]:
            assert image.shape == (28, 28) and image.dtype == np.uint8


@given(data=st.binary(max_size=300))
@settings(max_examples=150, deadline=None)
def test_random_bytes_as_an_image_give_clean_errors(data):
    read_all_ways(data)


@given(kind=st.sampled_from(["PNG", "JPEG"]), cut=st.floats(0, 1), flips=st.lists(st.integers(0, 10**6), max_size=4))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_truncated_or_damaged_images_give_clean_errors(encoded_digit, kind, cut, flips):
    data = bytearray(encoded_digit[kind][: int(len(encoded_digit[kind]) * cut)])
    for position in flips:
        if data:
            data[position % len(data)] ^= 0xFF
    read_all_ways(bytes(data))


@given(width=st.integers(8_001, 2**31 - 1), height=st.integers(8_001, 2**31 - 1))
@settings(max_examples=100, deadline=None)
def test_headers_claiming_gigapixels_are_refused_before_decoding(width, height):
    import tracemalloc

    tracemalloc.start()  # Python and numpy buffers; Pillow refuses from the header, before its own decode buffer
    with pytest.raises(CnnlabError, match="too many pixels"):
        read_grey(png_claiming(width, height), "claims")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, f"allocated {peak} bytes for a {len(png_claiming(width, height))}-byte file"


@given(width=st.integers(1_200, 8_000), height=st.integers(1_200, 8_000))
@settings(max_examples=60, deadline=None)
def test_headers_claiming_more_than_their_bytes_can_hold_are_refused_before_decoding(width, height):
    import tracemalloc

    data = png_claiming(width, height)  # under the 64-Mpixel cap, but ~70 bytes cannot hold a megapixel
    tracemalloc.start()
    with pytest.raises(CnnlabError, match=f"claims {width}x{height} pixels from only {len(data)} bytes"):
        read_grey(data, "claims")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
