import numpy as np
from scipy import ndimage

from cnnlab.handwriting import segment
from cnnlab.handwriting.segment import digit_masks


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


def test_a_judge_chooses_the_cuts_of_a_wide_mark(monkeypatch):
    monkeypatch.setattr(segment, "CUT_STEP", 10.0)  # cuts at the thinnest columns only (and one more)
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


def rings(*lefts: int, width: int = 20, shape=(60, 120)) -> tuple[np.ndarray, int]:
    """Hollow 20x40 boxes (0s, more or less) at the given left columns: where two overlap, their
    side strokes make the ink thickest, and the thinnest columns are inside the boxes."""
    ink = np.zeros(shape, bool)
    for left in lefts:
        ink[10:50, left : left + width] = True
        ink[13:47, left + 3 : left + width - 3] = False
    return ndimage.label(ink, structure=np.ones((3, 3)))


def test_overlapping_digits_are_cut_where_they_cross():
    labels, count = rings(20, 36)  # one mark 36 wide: the boxes share columns 36-39
    masks = digit_masks(labels, count, liking_width(19))
    assert len(masks) == 2 and all(17 <= w <= 21 for w in widths(masks)), widths(masks)


def test_even_cuts_are_what_finds_the_crossing(monkeypatch):
    labels, count = rings(20, 36)
    group = segment.digit_groups(labels, count)[0]
    dips, steps = segment._candidate_cuts(labels > 0, group)
    cuts = dips + steps
    margin = round(segment.MIN_PIECE * group.height)  # none nearer an edge than a piece's least width
    assert min(cuts) >= group.left + margin
    assert max(cuts) <= group.right - margin
    monkeypatch.setattr(segment, "CUT_STEP", 10.0)  # thinnest columns only: the crossing is not cut right
    masks = digit_masks(labels, count, liking_width(19))
    assert not (len(masks) == 2 and all(17 <= w <= 21 for w in widths(masks))), widths(masks)


def test_a_doubtful_narrow_mark_is_tried_as_a_thin_1_and_its_neighbour():
    # A 5-wide bar (a straight 1) crossing a 16-wide ring: one mark 20 wide, 40 high, too narrow
    # for the usual cuts (under CUT_ASPECT) and its 1 narrower than MIN_PIECE.
    ink = rings(24, width=16)[0] > 0
    ink[10:50, 20:25] = True
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    one_or_ring = lambda masks: -np.abs(np.array(widths(masks))[:, None] - [5, 16]).min(1) / 2.0  # noqa: E731
    assert widths(digit_masks(labels, count, one_or_ring)) in ([5, 15], [5, 16], [6, 15], [4, 16])
    assert len(digit_masks(labels, count, liking_width(20))) == 1  # whole and liked: not tried again


def test_a_narrow_mark_the_classifier_reads_whole_more_surely_is_not_cut():
    # The same bar and ring, which a judge that likes thin 1s and rings would cut in two: a
    # classifier surer of the whole (an open 6) than of either piece keeps it whole.
    ink = rings(24, width=16)[0] > 0
    ink[10:50, 20:25] = True
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    one_or_ring = lambda masks: -np.abs(np.array(widths(masks))[:, None] - [5, 16]).min(1) / 2.0  # noqa: E731
    surest_whole = lambda masks: np.where(np.array(widths(masks)) >= 20, 0.9, 0.8)  # noqa: E731
    surest_pieces = lambda masks: np.where(np.array(widths(masks)) >= 20, 0.7, 0.8)  # noqa: E731
    assert len(digit_masks(labels, count, one_or_ring, surest_whole)) == 1
    assert len(digit_masks(labels, count, one_or_ring, surest_pieces)) == 2
    # A mark as wide as tall is cut as the judge likes, whatever the classifier says.
    wide, wide_count = labelled(THREE_TOUCHING)
    assert len(digit_masks(wide, wide_count, liking_width(16), lambda masks: np.where(
        np.array(widths(masks)) >= 50, 0.99, 0.5))) >= 2


def test_a_cut_whose_pieces_the_judge_finds_clearly_whole_stands_however_sure_the_classifier_is():
    # The bar and ring again, with a classifier surer of the whole: it keeps the mark whole only
    # while the judge doubts a piece; pieces the judge takes for whole digits (a 1 crossing its
    # neighbour) stay cut.
    ink = rings(24, width=16)[0] > 0
    ink[10:50, 20:25] = True
    labels, count = ndimage.label(ink, structure=np.ones((3, 3)))
    surest_whole = lambda masks: np.where(np.array(widths(masks)) >= 20, 0.9, 0.8)  # noqa: E731

    def judge(piece_score: float):  # the whole mark doubted (under DOUBT), each piece scored alike
        return lambda masks: np.where(np.array(widths(masks)) >= 20, -2.0, piece_score)

    assert len(digit_masks(labels, count, judge(segment.CLEAR_PIECES - 0.2), surest_whole)) == 1
    assert len(digit_masks(labels, count, judge(segment.CLEAR_PIECES + 0.2), surest_whole)) == 2
