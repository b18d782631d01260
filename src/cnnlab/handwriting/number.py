"""A photo of a written number -> one MNIST-like 28x28 image per digit, left to right.

The ink is found as for one digit (cnnlab.handwriting.digit), cut into digits by
cnnlab.handwriting.segment, and each way of reading it scored by the segment judge
(cnnlab.handwriting.judge).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnlab.handwriting.digit import ink_of_photo, to_mnist
from cnnlab.handwriting.judge import one_digit_log_prob
from cnnlab.handwriting.segment import digit_masks


def number_to_mnist(grey: np.ndarray, confidence: Callable[[np.ndarray], np.ndarray] | None = None
                    ) -> list[np.ndarray]:
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

    def score(masks: list[np.ndarray]) -> np.ndarray:
        # Not cached: each piece is scored once, and keeping every mask scored would hold
        # hundreds of full-size masks per photo (over 100 MB under load in cnnlab serve).
        images = np.stack([to_mnist(ink, mask) for mask in masks])
        scores = one_digit_log_prob(images)
        if confidence is not None:
            scores = scores + np.log(np.maximum(confidence(images), 1e-9))
        return scores

    return [to_mnist(ink, mask) for mask in digit_masks(labels, count, score)]
