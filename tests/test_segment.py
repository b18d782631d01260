import numpy as np
from scipy import ndimage

from cnnlab.segment import digit_masks


def labelled(marks: list[tuple[int, int, int, int]], shape=(60, 200)) -> tuple[np.ndarray, int]:
    """Blobs ``(top, bottom, left, right)`` numbered as preprocess.ink_mask numbers them."""
    ink = np.zeros(shape, bool)
    for top, bottom, left, right in marks:
        ink[top:bottom, left:right] = True
    return ndimage.label(ink, structure=np.ones((3, 3)))


def test_a_judge_picks_among_readings_of_a_wide_mark():
    labels, count = labelled([(10, 50, 20, 65)])  # 45 wide, 40 high: one wide digit or two touching
    seen = []

    def judge(readings):
        seen.append([len(r) for r in readings])
        return [len(r) for r in readings].index(2)

    masks = digit_masks(labels, count, judge)
    assert seen == [[1, 2]] and len(masks) == 2
    assert masks[0].any(0).nonzero()[0].max() < masks[1].any(0).nonzero()[0].min()  # left to right
    assert len(digit_masks(labels, count)) == 1  # without a judge, the width (1.1x) says one digit


def test_a_judge_decides_whether_close_marks_are_one_digit():
    labels, count = labelled([(10, 50, 20, 30), (15, 50, 32, 45), (10, 50, 100, 110)])
    asked = []

    def join(readings):
        asked.append([len(r) for r in readings])
        return len(readings) - 1  # always the last reading: for a pair, joined

    assert len(digit_masks(labels, count, join)) == 2  # the first two nearly touch: one digit
    assert [2, 1] in asked
    assert len(digit_masks(labels, count, lambda readings: 0)) == 3  # kept apart
