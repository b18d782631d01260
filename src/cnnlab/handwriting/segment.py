"""Cutting a written number into its digits, left to right.

    blobs      connected ink components (cnnlab.handwriting.digit.ink_mask)
    -> groups  blobs stacked in the same columns are one digit (a 5's detached bar);
               small blobs beside a digit join the nearest one
    -> split   a group may hold touching digits: with a judge (cnnlab.handwriting.judge), every way of
               cutting it at its thinnest columns, or at evenly spaced ones (digits that cross
               leave no thin column where they meet), is scored and the best reading kept; without
               one, a group much wider than a digit is cut near equal steps, as many times as
               its width suggests
    -> keep    a mark narrower than tall that was cut stays whole when the classifier reads it
               whole at least as surely as the least sure of its pieces (an open 6 is not 1 + 0)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cnnlab.errors import CnnlabError
from cnnlab.handwriting.asking import Asking, answered, asking_nothing

MAX_DIGITS = 12  # more pieces than this is not a number
OVERLAP = 0.5  # blobs overlapping by this fraction of the narrower one's width are one digit
SMALL = 0.4  # a blob shorter than this fraction of the tallest is a fragment, not a digit
CLOSE_SMALL, CLOSE_GAP = 0.65, 0.08  # ... and so is a shorter one this close (fractions of the tallest)
# MNIST test digits' ink width / height: median 0.8, 95th percentile 1.11, 99th 1.43.
DIGIT_ASPECT = 0.8
CUT_ASPECT = 0.6  # with a judge, marks at least this wide (x their height) are tried as several digits
MIN_PIECE, MAX_PIECE = 0.15, 1.4  # ... as pieces this narrow to this wide (x the height)
# A mark DOUBT_ASPECT to CUT_ASPECT wide whose score as one digit is under DOUBT (log-likelihood) is
# tried with pieces as narrow as THIN_PIECE: a straight 1 crossing its neighbour makes such a mark
# and is narrower than MIN_PIECE, but allowing such pieces everywhere cut the stems off 7s and 1s.
# (DOUBT was -1.2 on the score less PIECE_COST, below, when both were measured: the same test.)
DOUBT, DOUBT_ASPECT, THIN_PIECE = -0.9, 0.45, 0.1
# A mark CUT_ASPECT to SURE_ASPECT wide that scores at least SURE as one digit is that digit, its cuts
# untried: most digits of a number are such marks, and trying every cut of each made a 4-digit number
# cost 380 pieces to judge (0.7 s).
SURE, SURE_ASPECT = -0.9, 1.0
# A cut whose pieces the judge all scores at least CLEAR_PIECES (each 0.70 likely to be one whole digit)
# stands, however sure the classifier is of the mark whole: on 2,700 validation numbers, the keep-whole
# rule (``sureness``) rejoined 9 such cuts that were right (a 1 crossing its neighbour) and rightly
# undid one; the 18 other cuts it rightly undid each left a piece scoring -0.41 or less.
CLEAR_PIECES = -0.35
MAX_CUTS = 14  # candidate cuts per mark at its thinnest columns: their pairs are the pieces the judge scores
CUT_STEP = 0.05  # ... and more, evenly spaced this far apart (x the height)
SCORE_BATCH = 64  # pieces scored at once
SLIVER = 0.15  # a blob at a cut with less than this fraction of a piece's ink is a neighbour's, dropped
SPLIT_ASPECT = 1.3  # a mark wider than this (x its height) is taken for touching digits
# Each digit a reading claims costs this much of its score (log-likelihood), as a word does in speech
# recognition: without it, two pieces each fairly sure to be a digit outscored one whole digit
# (slanted 7s read as 1 + 7). Validation numbers (seeds 1-3) read whole: on a page 399 -> 404 of
# 450, made differently 808 -> 811 of 900, photographed 827 -> 827 of 900; 0.6 lost 5 on the second.
PIECE_COST = 0.3


@dataclass
class Group:
    """Ink blobs taken for one digit: their labels and the column range ``[left, right)`` they span."""

    labels: list[int]
    left: int
    right: int
    top: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def absorb(self, other: Group) -> None:
        self.labels += other.labels
        self.left, self.right = min(self.left, other.left), max(self.right, other.right)
        self.top, self.bottom = min(self.top, other.top), max(self.bottom, other.bottom)


def digit_groups(labels: np.ndarray, count: int) -> list[Group]:
    """The ink blobs grouped into marks, left to right: pieces of one digit joined.

    Args:
        labels: ``(H, W)`` ints, each ink blob numbered 1..count (0 is paper).
        count: number of blobs.
    Raises:
        CnnlabError: when the marks are too many to be a number.
    """
    groups = _merge_fragments(_group_by_columns(labels, count))
    if len(groups) > MAX_DIGITS:
        raise CnnlabError(f"found {len(groups)} separate marks: too many for a number (at most {MAX_DIGITS}); "
                          "crop the image to the number")
    return groups


Scorer = Callable[[list[np.ndarray]], np.ndarray]  # digit masks -> (N,) log-likelihood that each is one digit
Sureness = Callable[[list[np.ndarray]], np.ndarray]  # digit masks -> (N,) the classifier's top probability
# The same as generator functions, which may ask the caller questions on the way (cnnlab.handwriting.asking).
AskingScorer = Callable[[list[np.ndarray]], Generator[np.ndarray, np.ndarray, np.ndarray]]


def digit_masks(labels: np.ndarray, count: int, score: Scorer | None = None,
                sureness: Sureness | None = None) -> list[np.ndarray]:
    """:func:`masks_of_marks` with plain functions for ``score`` and ``sureness``."""
    return answered(masks_of_marks(labels, count, asking_nothing(score), asking_nothing(sureness)), None)


def masks_of_marks(labels: np.ndarray, count: int, score: AskingScorer | None = None,
                   sureness: AskingScorer | None = None) -> Asking[list[np.ndarray]]:
    """One boolean mask ``(H, W)`` per digit, left to right (arguments as :func:`digit_groups`);
    a generator, passing on the questions ``score`` and ``sureness`` ask (cnnlab.handwriting.asking).

    ``score``: optional judge of how much a piece of ink looks like one whole digit (the segment
    judge, :mod:`cnnlab.handwriting.judge`). With it, every mark at least ``CUT_ASPECT`` as wide as it is
    tall is read the way whose pieces score highest in sum, less ``PIECE_COST`` each, over all
    cuts at its thinnest columns (:func:`best_cuts`), and two marks that nearly touch are joined
    when they score higher as one, by the same measure. Without it, the width alone decides.

    ``sureness``: optional classifier's confidence in each mask's digit. With it, a mark narrower
    than ``SURE_ASPECT`` x its height that the judge would cut stays whole when the classifier
    reads it whole at least as surely as the least sure of its pieces: the judge, which sees
    each piece alone and enlarged, takes an open 6 for 1 + 0 and a 4 in two strokes for 1 + 1.
    """
    groups = digit_groups(labels, count)
    if score is not None:
        groups = yield from _join_broken(labels, groups, score)
    masks: list[np.ndarray] = []
    for group in groups:
        mask = np.isin(labels, group.labels)
        if score is not None and group.width >= DOUBT_ASPECT * group.height:
            masks += yield from _read_mark(mask, group, score, sureness)
        else:
            pieces = likely_pieces(group)
            masks += [mask] if pieces == 1 else _cut(mask, group, pieces)
    if len(masks) > MAX_DIGITS:
        raise CnnlabError(f"found {len(masks)} digits: too many for a number (at most {MAX_DIGITS})")
    return masks


def _read_mark(mask: np.ndarray, group: Group, score: AskingScorer, sureness: AskingScorer | None = None
               ) -> Asking[list[np.ndarray]]:
    """A mark wide enough to hold several digits, cut as ``score`` likes best; one under
    ``CUT_ASPECT`` wide only when ``score`` doubts it is one digit (see ``DOUBT``). A wide mark
    whose best reading leaves a piece ``score`` doubts is read again with pieces as thin as
    ``THIN_PIECE``, for a 1 squeezed between two digits (numbers of validation digits made the
    second way: 287 -> 289 of 300 read whole, on a page 288 -> 288, photographed 291 -> 290).
    A mark narrower than ``SURE_ASPECT`` stays whole if ``sureness`` is as sure of it as of its
    least sure piece, unless ``score`` finds every piece clearly a whole digit (``CLEAR_PIECES``;
    see :func:`cnnlab.handwriting.number.digit_or_number_to_mnist`; allowed up to 1.3 x the
    height, validation numbers made differently lost 2 more)."""
    if group.width >= SURE_ASPECT * group.height:
        return (yield from best_cuts(mask, group, score, thinner_if_doubtful=True))
    if group.width >= CUT_ASPECT * group.height:
        whole = (yield from score([mask]))[0]
        pieces = [mask] if whole >= SURE else (yield from best_cuts(mask, group, score))
    elif (yield from score([mask]))[0] < DOUBT:
        pieces = yield from best_cuts(mask, group, score, min_piece=THIN_PIECE)
    else:
        return [mask]
    if len(pieces) > 1 and sureness is not None and (yield from score(pieces)).min() < CLEAR_PIECES:
        sure = yield from sureness([mask, *pieces])
        if keeps_whole(sure[0], sure[1:]):
            return [mask]
    return pieces


def keeps_whole(sure_of_whole: float, sure_of_pieces: np.ndarray) -> bool:
    """The keep-whole rule: a mark the cutter cut into pieces stays one digit when the classifier
    reads it whole (its top probability ``sure_of_whole``) at least as surely as the least sure
    of its pieces ``(N,)``. Used for a number's marks, where the judge has doubted a piece
    (``CLEAR_PIECES``), and for an image that is one mark
    (:func:`cnnlab.handwriting.number.digit_or_number_to_mnist`)."""
    return bool(sure_of_whole >= sure_of_pieces.min())


def _join_broken(labels: np.ndarray, groups: list[Group], score: AskingScorer) -> Asking[list[Group]]:
    """Neighbouring marks that nearly touch and together are no wider than a digit: one digit
    drawn in two strokes (a 4), or two narrow digits (11)? ``score`` decides."""
    joined = [groups[0]]
    for group in groups[1:]:
        last = joined[-1]
        tallest = max(last.height, group.height)
        span = max(last.right, group.right) - min(last.left, group.left)
        if _gap(last, group) <= CLOSE_GAP * tallest and span <= tallest:
            apart = [np.isin(labels, last.labels), np.isin(labels, group.labels)]
            scores = yield from score([*apart, apart[0] | apart[1]])
            if scores[2] > scores[0] + scores[1] - PIECE_COST:  # one digit claimed instead of two
                last.absorb(group)
                continue
        joined.append(group)
    return joined


def best_cuts(mask: np.ndarray, group: Group, score: AskingScorer, min_piece: float = MIN_PIECE,
              thinner_if_doubtful: bool = False) -> Asking[list[np.ndarray]]:
    """``mask`` cut into the digits that ``score`` likes best, by dynamic programming.

    Candidate cuts are the columns where the ink is thinnest (local minima of the column sums)
    and columns every ``CUT_STEP`` of the height between them; a reading is a choice of some of
    them, and its value is the sum of its pieces' scores, less ``PIECE_COST`` each.
    Pieces narrower than ``min_piece`` or wider than ``MAX_PIECE`` of the height are not tried,
    except the whole mark. The even steps are tried coarse to fine: first twice as far apart,
    then at every step within one step of the best reading's cuts; a 4-digit number with two
    digits touching took 300 pieces to judge tried all at once, and 0.35 s. With
    ``thinner_if_doubtful``, a best reading with a piece scoring under ``DOUBT`` is sought again
    with pieces as narrow as ``THIN_PIECE``, the pieces already scored not scored again.
    """
    box = (slice(group.top, group.bottom), slice(group.left, group.right))
    local = mask[box]
    values: dict[tuple[int, int], float] = {}
    pieces: dict[tuple[int, int], np.ndarray] = {}

    def full_size(piece: np.ndarray) -> np.ndarray:
        placed = np.zeros_like(mask)
        placed[box] = piece
        return placed

    def best_reading(points: list[int], min_piece: float) -> Asking[list[tuple[int, int]]]:
        """The best choice of ``points`` (columns, the mark's edges first and last) as spans; the
        whole mark, always a choice, at worst."""
        last = len(points) - 1
        spans = [(points[i], points[j]) for i in range(last) for j in range(i + 1, last + 1)
                 if (i, j) == (0, last)
                 or min_piece * group.height <= points[j] - points[i] <= MAX_PIECE * group.height]
        new = [span for span in spans if span not in pieces]
        for left, right in new:  # [left > group.left]: a cut, not the mark's edge
            pieces[(left, right)] = _trim_slivers(
                _columns(local, left - group.left, right - group.left),
                [left - group.left] * (left > group.left) + [right - 1 - group.left] * (right < group.right))
        new = [span for span in new if pieces[span].any()]
        # Pieces are kept as the mark's box only, and made full-size a batch at a time to be scored:
        # a few hundred full-size masks of a large photo would hold over 100 MB at once.
        for start in range(0, len(new), SCORE_BATCH):
            chunk = new[start : start + SCORE_BATCH]
            scores = yield from score([full_size(pieces[span]) for span in chunk])
            values.update(zip(chunk, scores - PIECE_COST, strict=True))
        best: dict[int, tuple[float, list[tuple[int, int]]]] = {points[0]: (0.0, [])}
        for j in points[1:]:
            options = [(best[i][0] + values[(i, j)], best[i][1] + [(i, j)]) for i in points
                       if i < j and i in best and (i, j) in values]
            if options:
                best[j] = max(options, key=lambda option: option[0])
        return best[points[-1]][1]

    def coarse_to_fine(min_piece: float) -> Asking[list[tuple[int, int]]]:
        dips, steps = _candidate_cuts(mask, group, min_piece)
        coarse = yield from best_reading([group.left, *sorted(dips + steps[::2]), group.right], min_piece)
        step = max(1, round(CUT_STEP * group.height))
        near = [c for c in steps if any(abs(c - right) <= step for _, right in coarse[:-1])]
        return (yield from best_reading([group.left, *sorted(set(dips + steps[::2] + near)), group.right], min_piece))

    reading = yield from coarse_to_fine(min_piece)
    if thinner_if_doubtful and min(values[span] for span in reading) + PIECE_COST < DOUBT:
        reading = yield from coarse_to_fine(THIN_PIECE)
    return [full_size(pieces[span]) for span in reading]


def _candidate_cuts(mask: np.ndarray, group: Group, min_piece: float = MIN_PIECE) -> tuple[list[int], list[int]]:
    """Columns inside ``group`` where a cut may go, none closer than ``min_piece`` of the height
    to an edge: ``(dips, even steps)``.

    First where its ink is locally thinnest (a dip, not a flat stretch), at most ``MAX_CUTS``, none
    closer to a thinner one than that margin: touching digits meet at such a dip. Then columns
    every ``CUT_STEP`` of the height that are not next to one of those: where two digits overlap
    the ink is thickest at their boundary, so no dip marks it. On numbers of validation digits
    made the second way (``tests/photolike.py``), the even steps took whole-number reading from
    85.1% to 89.6% (seeds 1-3, 300 each), at about 5x the time (55 to 300 ms a number).
    """
    columns = mask[:, group.left : group.right].sum(0).astype(np.float32)
    smooth = np.convolve(np.pad(columns, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    margin = max(1, round(min_piece * group.height))
    minima = [c for c in range(margin, group.width - margin)
              if smooth[c] <= min(smooth[c - 1], smooth[c + 1]) and smooth[c] < smooth[c - margin : c + margin].max()]
    chosen: list[int] = []
    for c in sorted(minima, key=lambda c: (smooth[c], c)):
        if all(abs(c - other) >= margin for other in chosen):
            chosen.append(c)
    chosen = chosen[:MAX_CUTS]
    step = max(1, round(CUT_STEP * group.height))
    steps = [c for c in range(margin, group.width - margin + 1, step)
             if all(abs(c - other) >= max(1, step // 2) for other in chosen)]
    return sorted(group.left + c for c in chosen), [group.left + c for c in steps]


def _trim_slivers(piece: np.ndarray, cut_columns: list[int]) -> np.ndarray:
    """``piece`` without the bits of a neighbour that a vertical cut leaves in it: blobs that
    touch a cut column and hold under ``SLIVER`` of the piece's ink."""
    if not cut_columns or not piece.any():
        return piece
    rows, columns = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))  # label only the piece's box
    blobs, count = ndimage.label(piece[box], structure=np.ones((3, 3)))
    if count < 2:
        return piece
    areas = np.bincount(blobs.ravel())[1:]
    inside = [c - columns[0] for c in cut_columns if columns[0] <= c <= columns[-1]]  # others hold no ink
    at_cut = np.unique(blobs[:, inside])
    small = np.flatnonzero(areas < SLIVER * areas.sum()) + 1
    trimmed = piece.copy()
    trimmed[box] &= ~np.isin(blobs, np.intersect1d(small, at_cut))
    return trimmed


def _columns(mask: np.ndarray, left: int, right: int) -> np.ndarray:
    piece = np.zeros_like(mask)
    piece[:, left:right] = mask[:, left:right]
    return piece


def likely_pieces(group: Group) -> int:
    """How many digits a mark holds, from its width: one unless it is wider than ``SPLIT_ASPECT``
    of its height (1-2% of MNIST digits are), then one per ``DIGIT_ASPECT`` of height."""
    if group.width < SPLIT_ASPECT * group.height:
        return 1
    return max(2, round(group.width / (DIGIT_ASPECT * group.height)))


def _group_by_columns(labels: np.ndarray, count: int) -> list[Group]:
    """Blobs in left-to-right order, those sharing enough columns merged into one group."""
    boxes = ndimage.find_objects(labels, max_label=count)
    blobs = sorted((Group([i + 1], b[1].start, b[1].stop, b[0].start, b[0].stop) for i, b in enumerate(boxes)
                    if b is not None), key=lambda g: (g.left + g.right) / 2)
    groups: list[Group] = []
    for blob in blobs:
        last = groups[-1] if groups else None
        if last and _same_digit(last, blob):
            last.absorb(blob)
        else:
            groups.append(blob)
    return groups


def _same_digit(a: Group, b: Group) -> bool:
    """Pieces of one digit share columns and are stacked (a 5's bar over its body) or one is a
    fragment; two full-height marks side by side are two digits even when a slant makes them overlap."""
    shared_columns = min(a.right, b.right) - max(a.left, b.left)
    shared_rows = min(a.bottom, b.bottom) - max(a.top, b.top)
    shorter = min(a.height, b.height)
    stacked = shared_rows < 0.5 * shorter or shorter < SMALL * max(a.height, b.height)
    return shared_columns >= OVERLAP * min(a.width, b.width) and stacked


def _merge_fragments(groups: list[Group]) -> list[Group]:
    """Pieces of a broken digit join their nearest neighbour: marks much shorter than the tallest
    (under ``SMALL`` of its height) wherever they are, and shorter ones (under ``CLOSE_SMALL``)
    when they nearly touch it (a 4 or 6 drawn in two strokes)."""
    tallest = max(g.height for g in groups)
    merged = list(groups)
    for fragment in sorted((g for g in groups if g.height < CLOSE_SMALL * tallest), key=lambda g: g.height):
        others = [g for g in merged if g is not fragment]
        if not others:
            break
        nearest = min(others, key=lambda g: _gap(g, fragment))
        if fragment.height < SMALL * tallest or _gap(nearest, fragment) <= CLOSE_GAP * tallest:
            nearest.absorb(fragment)
            merged.remove(fragment)
    return merged


def _gap(a: Group, b: Group) -> int:
    """Blank columns between two marks (0 when they overlap)."""
    return max(a.left - b.right, b.left - a.right, 0)


def _cut(mask: np.ndarray, group: Group, pieces: int) -> list[np.ndarray]:
    """``mask`` cut into ``pieces`` side by side, at the columns with the least ink near equal steps."""
    columns = mask[:, group.left : group.right].sum(0)
    cuts, step = [group.left], group.width / pieces
    for k in range(1, pieces):
        centre, reach = round(k * step), max(1, round(step * 0.3))
        low = max(centre - reach, 1)
        window = columns[low : centre + reach]
        cuts.append(group.left + (low + int(np.argmin(window)) if len(window) else centre))
    cuts.append(group.right)
    parts = [_columns(mask, start, stop) for start, stop in itertools.pairwise(cuts)]
    return [part for part in parts if part.any()]


def cut_at_columns(mask: np.ndarray, cuts: list[int], left: int = 0) -> list[np.ndarray]:
    """``mask`` ``(H, W)`` cut along the columns ``cuts`` (increasing; the last is where the ink
    ends), from ``left``: the pieces that hold ink, left to right, without the slivers of a
    neighbour each cut leaves (``SLIVER``)."""
    bounds = [left, *cuts]
    parts = [_trim_slivers(_columns(mask, start, stop), [start] * (start > left) + [stop - 1] * (stop < bounds[-1]))
             for start, stop in itertools.pairwise(bounds)]
    return [part for part in parts if part.any()]
