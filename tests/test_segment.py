import numpy as np
from scipy import ndimage

from cnnlab.segment import digit_masks


def labelled(marks: list[tuple[int, int, int, int]], shape=(60, 200)) -> tuple[np.ndarray, int]:
    """Blobs ``(top, bottom, left, right)`` numbered as preprocess.ink_mask numbers them."""
    ink = np.zeros(shape, bool)
    for top, bottom, left, right in marks:
        ink[top:bottom, left:right] = True
    return ndimage.label(ink, structure=np.ones((3, 3)))


def widths(masks: list[np.ndarray]) -> list[int]:
    return [int(np.ptp(np.flatnonzero(m.any(0)))) + 1 for m in masks]


def liking_width(best: int):
    """A stand-in judge: a piece scores higher the closer its ink's width is to ``best``."""
    return lambda masks: -np.abs(np.array(widths(masks)) - best) / 5.0


# Three 16-wide blocks joined by thin bridges: one mark 52 wide, 40 high.
THREE_TOUCHING = [(10, 50, 20, 36), (30, 32, 36, 38), (10, 50, 38, 54), (30, 32, 54, 56), (10, 50, 56, 72)]


def test_a_judge_chooses_the_cuts_of_a_wide_mark():
    labels, count = labelled(THREE_TOUCHING)
    masks = digit_masks(labels, count, liking_width(16))
    assert len(masks) == 3 and all(15 <= w <= 19 for w in widths(masks))  # cut at the bridges
    lefts = [np.flatnonzero(m.any(0)).min() for m in masks]
    assert lefts == sorted(lefts)  # left to right
    assert len(digit_masks(labels, count, liking_width(52))) == 1  # a judge that likes it whole
    assert len(digit_masks(labels, count)) == 2  # without a judge, the width (1.3x) says two


def test_a_mark_too_narrow_for_two_digits_is_not_cut():
    labels, count = labelled([(10, 50, 20, 36)])
    assert len(digit_masks(labels, count, liking_width(4))) == 1


def test_a_judge_decides_whether_close_marks_are_one_digit():
    labels, count = labelled([(10, 50, 20, 30), (15, 50, 32, 45), (10, 50, 100, 110)])
    assert len(digit_masks(labels, count, liking_width(25))) == 2  # the first two nearly touch: one digit
    assert len(digit_masks(labels, count, liking_width(11))) == 3  # kept apart
