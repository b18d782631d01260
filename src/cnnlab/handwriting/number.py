"""A photo of a written number -> one MNIST-like 28x28 image per digit, left to right.

The ink is found as for one digit (cnnlab.handwriting.digit), cut into digits by
cnnlab.handwriting.segment, and each way of reading it scored by the segment judge
(cnnlab.handwriting.judge). The sequence reader (cnnlab.handwriting.sequence) reads the same ink
whole; its views go with the digits in the :class:`Reading`, which weighs what a digit network
reads from them (:meth:`Reading.settled`).

A classifier's confidence in a piece helps decide the cuts. Handwriting has no model to ask: the
readers here are generators that yield their questions to the caller (cnnlab.handwriting.asking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.handwriting.asking import Asking, answered
from cnnlab.handwriting.digit import ink_of_photo, to_mnist
from cnnlab.handwriting.judge import one_digit_log_prob
from cnnlab.handwriting.segment import MAX_DIGITS, cut_at_columns, digit_groups, keeps_whole, masks_of_marks
from cnnlab.handwriting.sequence import (
    best_reading,
    read_strip,
    reading_cuts,
    reading_probabilities,
    recounts,
    to_strip,
    weighed_by_reading,
)

# Reading an image as one digit or a number (``auto``): one mark (blobs in the same columns) up to
# NARROW x as wide as it is tall is one digit unless the segment judge finds it HOPELESS as one
# (three digits touching into one tall mark); one up to WIDE x is one digit when the judge and
# the network both give it at least SURE. Otherwise it is one digit when the network is surer of it
# whole than of its least sure piece cut as a number. On 2,000 photographed validation digits,
# the judge alone (trained on the pieces of numbers, it doubts wide whole digits) let 8 be cut in
# two, and the network's comparison 2; of two-digit numbers (600, two ways), it read 2-4 in 100
# as one digit.
ONE_DIGIT_NARROW, ONE_DIGIT_WIDE, ONE_DIGIT_SURE = 1.0, 1.6, 0.5
# A piece the judge gives under exp(HOPELESS) of being one whole digit is not shown to the network,
# which costs far more than the judge: its confidence is taken as UNKNOWN. Touching digits are cut
# every way there is (300 pieces for two digits), and most of those pieces are hopeless.
HOPELESS, UNKNOWN = -4.0, 0.5


@dataclass(frozen=True)
class Reading:
    """What was read in a photo: its digits, uint8 ``(28, 28)`` images left to right, and the
    sequence reader's views of the photo's whole ink (``views``: log-probabilities ``(T, 11)``
    each, :func:`cnnlab.handwriting.sequence.read_strip`; None for an image read as one digit
    alone), with ``recut``, the ink cut where the sequence reader reads its digits when it counts
    another number of them (else None)."""

    digits: list[np.ndarray]
    views: list[torch.Tensor] | None = None
    recut: list[np.ndarray] | None = None

    def settled(self, probabilities: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """A digit network's ``probabilities`` ``(N, 10)`` for :attr:`digits` (classes 0-9 in
        order), checked by the sequence reader's views: where it counts other digits than the
        network read and finds its own reading far likelier (``recounts``), its reading, with the
        ink cut where it reads them (``recut``); otherwise a number's digits weighed by it
        (``weighed_by_reading``). Returns ``(the digits answered, their probabilities)``."""
        if self.views is None:
            return self.digits, probabilities
        if self.recut is not None and recounts(probabilities.argmax(1).tolist(), self.views):
            return self.recut, reading_probabilities(self.views)
        if len(self.digits) < 2:  # one digit: weighing read 2 fewer of 2,000 validation photos (see notes)
            return self.digits, probabilities
        return self.digits, weighed_by_reading(probabilities, self.views)


def _read_whole(images: list[np.ndarray], ink: np.ndarray, mask: np.ndarray) -> Reading:
    """``images`` with the sequence reader's views of the ``ink`` under ``mask`` (see :class:`Reading`)."""
    views = read_strip(to_strip(ink, mask))
    its, recut = best_reading(views[0]), None
    if its and len(its) != len(images) and len(its) <= MAX_DIGITS:
        pieces = cut_at_columns(mask, reading_cuts(views[0], mask))
        recut = [to_mnist(ink, piece) for piece in pieces] if len(pieces) == len(its) else None
    return Reading(list(images), views, recut)


def number_to_mnist(grey: np.ndarray) -> list[np.ndarray]:
    """A photo of a number written as several digits -> one uint8 ``(28, 28)`` per digit, left to
    right, cut as the segment judge alone likes best (:func:`read_number` without a classifier).

    Args:
        grey: the photo, grey 0-1 ``(H, W)``.
    """
    return answered(read_number(grey, ask=False), None).digits


def read_number(grey: np.ndarray, ask: bool = True) -> Asking[Reading]:
    """A photo of a number written as several digits -> its :class:`Reading`, one digit per image.

    Where the ink can be read in several ways (one wide digit or two touching, one digit drawn
    in two strokes or two), the segment judge (:mod:`cnnlab.handwriting.judge`) scores how much each piece
    looks like one whole digit, and the reading with the highest total wins. With ``ask``, the log
    of a classifier's top probability for each piece the judge does not find hopeless is added to
    its score: a generator, asking those questions (:mod:`cnnlab.handwriting.asking`).

    Args:
        grey: the photo, grey 0-1 ``(H, W)``.
    """
    ink, labels, count = ink_of_photo(grey)
    digits = yield from _number_from_ink(ink, labels, count, ask)
    return _read_whole(digits, ink, labels > 0)


def read_digit_or_number(grey: np.ndarray) -> Asking[Reading]:
    """A photo of one digit or of a number -> its :class:`Reading`: the reader decides, asking a
    classifier's top probability where it must (a generator: :mod:`cnnlab.handwriting.asking`).

    One mark (blobs stacked in the same columns, cnnlab.handwriting.segment.digit_groups) narrower
    than ``ONE_DIGIT_NARROW`` x its height is one digit, all its ink kept as
    :func:`~cnnlab.handwriting.digit.digit_to_mnist` keeps it, unless the segment judge finds it
    hopeless as one digit; so is one narrower than ``ONE_DIGIT_WIDE`` that the judge takes for one
    whole digit and the classifier reads, each with at least ``ONE_DIGIT_SURE``. Any other such
    mark is one digit when the classifier reads it whole at least as surely as the least sure of
    its pieces cut as a number. Anything else is cut as a number (:func:`read_number`), and a
    number of one piece is that digit; there, too, each mark narrower than tall stays one digit
    when the classifier reads it whole at least as surely as its least sure piece. (Numbers of
    validation digits, read by the bundled reader: on a page 288 -> 292 of 300, photographed
    290 -> 293, made differently 289 -> 289. Read by the one-epoch ``fast`` model, the net gain
    was none: made differently lost 4, touching 1s read with their neighbour as one digit; so
    ``--number``, which cuts as the judge likes, does not do it.)
    """
    ink, labels, count = ink_of_photo(grey)
    digits = yield from _digit_or_number(ink, labels, count)
    return _read_whole(digits, ink, labels > 0)


def _digit_or_number(ink: np.ndarray, labels: np.ndarray, count: int) -> Asking[list[np.ndarray]]:
    """:func:`read_digit_or_number`'s digits, from the photo's ink."""
    groups = digit_groups(labels, count)
    aspect = groups[0].width / groups[0].height
    if len(groups) > 1 or aspect >= ONE_DIGIT_WIDE:
        digits = yield from _number_from_ink(ink, labels, count, True, whole_if_surer=True)
        return [to_mnist(ink, labels > 0)] if len(digits) == 1 else digits
    whole = to_mnist(ink, labels > 0)
    judged = float(one_digit_log_prob(whole[None])[0])
    if aspect < ONE_DIGIT_NARROW and judged >= HOPELESS:
        return [whole]
    as_one = (yield whole[None])[0]
    if aspect >= ONE_DIGIT_NARROW and min(np.exp(judged), as_one) >= ONE_DIGIT_SURE:
        return [whole]
    digits = yield from _number_from_ink(ink, labels, count, True, whole_if_surer=True)
    # Unlike a number's marks, an image of one mark keeps the rule even when the judge finds every
    # piece clearly whole (CLEAR_PIECES): with that exception here too, 2 more of 2,000 single
    # validation digits were cut in two, and the 2,700 validation numbers read the same.
    if len(digits) == 1 or keeps_whole(as_one, (yield np.stack(digits))):
        return [whole]
    return digits


def _number_from_ink(ink: np.ndarray, labels: np.ndarray, count: int, ask: bool,
                     whole_if_surer: bool = False) -> Asking[list[np.ndarray]]:
    """The digits of the ink, each mark cut as the judge (and, with ``ask``, the classifier's
    answers) like best; with ``whole_if_surer``, a narrow mark the classifier reads whole more
    surely than its least sure piece stays whole (:func:`cnnlab.handwriting.segment.masks_of_marks`'
    ``sureness``)."""
    def sureness(masks: list[np.ndarray]) -> Asking[np.ndarray]:
        return (yield np.stack([to_mnist(ink, mask) for mask in masks]))

    def score(masks: list[np.ndarray]) -> Asking[np.ndarray]:
        # Not cached: each piece is scored once, and keeping every mask scored would hold
        # hundreds of full-size masks per photo (over 100 MB under load in cnnlab serve).
        images = np.stack([to_mnist(ink, mask) for mask in masks])
        scores = one_digit_log_prob(images)
        if ask:
            hopeful = scores >= HOPELESS
            sure = np.full(len(images), UNKNOWN)
            if hopeful.any():
                sure[hopeful] = yield images[hopeful]
            scores = scores + np.log(np.maximum(sure, 1e-9))
        return scores

    masks = yield from masks_of_marks(labels, count, score, sureness if ask and whole_if_surer else None)
    return [to_mnist(ink, mask) for mask in masks]
