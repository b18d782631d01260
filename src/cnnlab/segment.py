"""Cutting a written number into its digits, left to right.

    blobs      connected ink components (cnnlab.preprocess.ink_mask)
    -> groups  blobs stacked in the same columns are one digit (a 5's detached bar);
               small blobs beside a digit join the nearest one
    -> split   a group much wider than a digit holds touching digits: it is cut at the emptiest
               columns near equal steps, into as many digits as its width suggests; a group
               only somewhat wide is cut in two if a classifier is surer of the halves
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cnnlab.errors import CnnlabError

MAX_DIGITS = 12  # more pieces than this is not a number
OVERLAP = 0.5  # blobs overlapping by this fraction of the narrower one's width are one digit
SMALL = 0.4  # a blob shorter than this fraction of the tallest is a fragment, not a digit
CLOSE_SMALL, CLOSE_GAP = 0.65, 0.08  # ... and so is a shorter one this close (fractions of the tallest)
# MNIST test digits' ink width / height: median 0.8, 95th percentile 1.11, 99th 1.43.
DIGIT_ASPECT = 0.8
AMBIGUOUS_ASPECT = 1.0  # wider than 90% of MNIST digits: one digit or two touching, a classifier may judge
SPLIT_ASPECT = 1.3  # a mark wider than this (x its height) is taken for touching digits


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


Readings = list[list[np.ndarray]]  # ways to read some ink: each a list of digit masks, left to right


def digit_masks(labels: np.ndarray, count: int, choose: Callable[[Readings], int] | None = None
                ) -> list[np.ndarray]:
    """One boolean mask ``(H, W)`` per digit, left to right (arguments as :func:`digit_groups`).

    ``choose``: optional judge (a classifier) given competing readings of the same ink, returning
    the index of the one it believes. It decides whether two marks side by side are one broken
    digit, and into how many digits a mark wider than ``AMBIGUOUS_ASPECT`` is cut (the width's
    guess, one fewer or one more). Without it, the width alone decides.
    """
    groups = digit_groups(labels, count)
    if choose is not None:
        groups = _join_broken(labels, groups, choose)
    masks: list[np.ndarray] = []
    for group in groups:
        mask = np.isin(labels, group.labels)
        guess = likely_pieces(group)
        counts = [guess]
        if choose is not None and group.width >= AMBIGUOUS_ASPECT * group.height:
            counts = list(dict.fromkeys(n for n in (guess, guess - 1, guess + 1, 2) if n >= 1))
        readings = [[mask] if n == 1 else _cut(mask, group, n) for n in counts]
        masks += readings[choose(readings) if len(readings) > 1 else 0]
    if len(masks) > MAX_DIGITS:
        raise CnnlabError(f"found {len(masks)} digits: too many for a number (at most {MAX_DIGITS})")
    return masks


def _join_broken(labels: np.ndarray, groups: list[Group], choose: Callable[[Readings], int]) -> list[Group]:
    """Neighbouring marks that nearly touch and together are no wider than a digit: one digit
    drawn in two strokes (a 4), or two narrow digits (11)? ``choose`` decides."""
    joined = [groups[0]]
    for group in groups[1:]:
        last = joined[-1]
        tallest = max(last.height, group.height)
        span = max(last.right, group.right) - min(last.left, group.left)
        if _gap(last, group) <= CLOSE_GAP * tallest and span <= tallest:
            apart = [np.isin(labels, last.labels), np.isin(labels, group.labels)]
            if choose([apart, [apart[0] | apart[1]]]) == 1:
                last.absorb(group)
                continue
        joined.append(group)
    return joined


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
    parts = []
    for start, stop in itertools.pairwise(cuts):
        part = np.zeros_like(mask)
        part[:, start:stop] = mask[:, start:stop]
        if part.any():
            parts.append(part)
    return parts
