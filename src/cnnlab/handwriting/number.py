"""A photo of a written number -> one MNIST-like 28x28 image per digit, left to right.

The ink is found as for one digit (cnnlab.handwriting.digit), cut into digits by
cnnlab.handwriting.segment, and each way of reading it scored by the segment judge
(cnnlab.handwriting.judge). The sequence reader (cnnlab.handwriting.sequence) reads the same ink
whole; its views go with the digits (``Digits.views``) to weigh what the digit network reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from cnnlab.handwriting.digit import ink_of_photo, to_mnist
from cnnlab.handwriting.judge import one_digit_log_prob
from cnnlab.handwriting.segment import MAX_DIGITS, cut_at_columns, digit_groups, digit_masks, keeps_whole
from cnnlab.handwriting.sequence import best_reading, read_strip, reading_cuts, to_strip

Confidence = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, 28, 28) -> each one's top probability (N,)
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


class Digits(list):
    """A photo's digits: uint8 ``(28, 28)`` images, left to right (a plain list of them), with the
    sequence reader's views of the photo's whole ink: ``views``, log-probabilities ``(T, 11)`` each
    (:func:`cnnlab.handwriting.sequence.read_strip`), which weigh what is read from them, and
    ``recut``, the ink cut where it reads its digits when it counts another number of them (else None)."""

    def __init__(self, images: Iterable[np.ndarray], views: list[torch.Tensor] | None = None,
                 recut: list[np.ndarray] | None = None) -> None:
        super().__init__(images)
        self.views, self.recut = views, recut


def _read_whole(images: list[np.ndarray], ink: np.ndarray, mask: np.ndarray) -> Digits:
    """``images`` with the sequence reader's views of the ``ink`` under ``mask`` (see :class:`Digits`)."""
    views = read_strip(to_strip(ink, mask))
    its, recut = best_reading(views[0]), None
    if its and len(its) != len(images) and len(its) <= MAX_DIGITS:
        pieces = cut_at_columns(mask, reading_cuts(views[0], mask))
        recut = [to_mnist(ink, piece) for piece in pieces] if len(pieces) == len(its) else None
    return Digits(images, views, recut)


def number_to_mnist(grey: np.ndarray, confidence: Confidence | None = None) -> Digits:
    """A photo of a number written as several digits -> one uint8 ``(28, 28)`` per digit, left to right.

    Where the ink can be read in several ways (one wide digit or two touching, one digit drawn
    in two strokes or two), the segment judge (:mod:`cnnlab.handwriting.judge`) scores how much each piece
    looks like one whole digit, and the reading with the highest total wins.

    Args:
        grey: the photo, grey 0-1 ``(H, W)``.
        confidence: optional classifier, uint8 images ``(N, 28, 28)`` -> top probability ``(N,)``;
            its log is added to the judge's score of each piece.
    """
    ink, labels, count = ink_of_photo(grey)
    return _read_whole(_number_from_ink(ink, labels, count, confidence), ink, labels > 0)


def digit_or_number_to_mnist(grey: np.ndarray, confidence: Confidence) -> Digits:
    """A photo of one digit or of a number -> one uint8 ``(28, 28)`` per digit: the reader decides.

    One mark (blobs stacked in the same columns, cnnlab.handwriting.segment.digit_groups) narrower
    than ``ONE_DIGIT_NARROW`` x its height is one digit, all its ink kept as
    :func:`~cnnlab.handwriting.digit.digit_to_mnist` keeps it, unless the segment judge finds it
    hopeless as one digit; so is one narrower than ``ONE_DIGIT_WIDE`` that the judge takes for one
    whole digit and ``confidence`` reads, each with at least ``ONE_DIGIT_SURE``. Any other such
    mark is one digit when ``confidence`` reads it whole at least as surely as the least sure of
    its pieces cut as a number. Anything else is cut as a number (:func:`number_to_mnist`), and a
    number of one piece is that digit; there, too, each mark narrower than tall stays one digit
    when ``confidence`` reads it whole at least as surely as its least sure piece. (Numbers of
    validation digits, read by the bundled reader: on a page 288 -> 292 of 300, photographed
    290 -> 293, made differently 289 -> 289. Read by the one-epoch ``fast`` model, the net gain
    was none: made differently lost 4, touching 1s read with their neighbour as one digit; so
    ``--number``, which cuts as the judge likes, does not do it.)
    """
    ink, labels, count = ink_of_photo(grey)
    return _read_whole(_digit_or_number(ink, labels, count, confidence), ink, labels > 0)


def _digit_or_number(ink: np.ndarray, labels: np.ndarray, count: int, confidence: Confidence) -> list[np.ndarray]:
    """:func:`digit_or_number_to_mnist`'s digits, from the photo's ink."""
    groups = digit_groups(labels, count)
    aspect = groups[0].width / groups[0].height
    if len(groups) > 1 or aspect >= ONE_DIGIT_WIDE:
        digits = _number_from_ink(ink, labels, count, confidence, whole_if_surer=True)
        return [to_mnist(ink, labels > 0)] if len(digits) == 1 else digits
    whole = to_mnist(ink, labels > 0)
    judged = float(one_digit_log_prob(whole[None])[0])
    if aspect < ONE_DIGIT_NARROW and judged >= HOPELESS:
        return [whole]
    as_one = confidence(whole[None])[0]
    if aspect >= ONE_DIGIT_NARROW and min(np.exp(judged), as_one) >= ONE_DIGIT_SURE:
        return [whole]
    digits = _number_from_ink(ink, labels, count, confidence, whole_if_surer=True)
    # Unlike a number's marks, an image of one mark keeps the rule even when the judge finds every
    # piece clearly whole (CLEAR_PIECES): with that exception here too, 2 more of 2,000 single
    # validation digits were cut in two, and the 2,700 validation numbers read the same.
    if len(digits) == 1 or keeps_whole(as_one, confidence(np.stack(digits))):
        return [whole]
    return digits


def _number_from_ink(ink: np.ndarray, labels: np.ndarray, count: int, confidence: Confidence | None,
                     whole_if_surer: bool = False) -> list[np.ndarray]:
    """The digits of the ink, each mark cut as the judge and ``confidence`` like best; with
    ``whole_if_surer``, a narrow mark ``confidence`` reads whole more surely than its least sure
    piece stays whole (:func:`cnnlab.handwriting.segment.digit_masks`' ``sureness``)."""
    def sureness(masks: list[np.ndarray]) -> np.ndarray:
        return confidence(np.stack([to_mnist(ink, mask) for mask in masks]))

    def score(masks: list[np.ndarray]) -> np.ndarray:
        # Not cached: each piece is scored once, and keeping every mask scored would hold
        # hundreds of full-size masks per photo (over 100 MB under load in cnnlab serve).
        images = np.stack([to_mnist(ink, mask) for mask in masks])
        scores = one_digit_log_prob(images)
        if confidence is not None:
            hopeful = scores >= HOPELESS
            sure = np.full(len(images), UNKNOWN)
            if hopeful.any():
                sure[hopeful] = confidence(images[hopeful])
            scores = scores + np.log(np.maximum(sure, 1e-9))
        return scores

    masks = digit_masks(labels, count, score, sureness if confidence is not None and whole_if_surer else None)
    return [to_mnist(ink, mask) for mask in masks]
