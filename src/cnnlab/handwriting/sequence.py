"""The sequence reader: a small network that reads a written number's ink whole, left to right.

The cutter (:mod:`cnnlab.handwriting.segment`) must decide where one digit ends before the digit
network sees anything, and digits that overlap leave no place to cut: a 1 crossing its
neighbour, a 7 over a 6. This network is never told where the digits are. It reads the ink as
one strip, 32 pixels tall, and says for every 4 columns which digit it sees there, if any
(connectionist temporal classification, CTC: Graves et al., 2006). So it can count overlapping
digits, and say how likely any reading is, the cutter's included.

    strip      the ink of a number, cropped, 24 pixels tall inside a 32-pixel strip (``to_strip``)
    network    4 convolution blocks, then a bidirectional GRU over the columns (0.4 M weights)
    views      the strip as it is, 2 columns later, narrower and wider, each read (``read_strip``)
    reading    the likeliest label of each column, repeats and blanks dropped (``best_reading``)
    score      log P(a reading | the strip), every alignment summed, the views averaged
               (``log_likelihoods``)
    checks     its own reading where it counts other digits and is far surer (``recounts``,
               ``reading_probabilities``, ``reading_cuts``); else each digit the digit network
               read, weighed by the strip (``weighed_by_reading``): cnnlab.handwriting.number.Reading.settled

It is trained on numbers of 1-6 MNIST training digits (the reader's split, without its
validation digits) composed as people write them (:mod:`cnnlab.training.train_sequence`).
The weights ship with cnnlab (``sequence.safetensors``, float16).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from scipy import special
from torch import nn

WEIGHTS = Path(__file__).with_name("sequence.safetensors")
HEIGHT, CONTENT, MAX_WIDTH = 32, 24, 320  # the strip, the ink's height in it, the widest strip
MARGIN = 4  # blank pixels around the ink in a strip
STRIDE = 4  # strip columns per step the network reads
BLANK = 10  # the network's "no digit here" label, after the ten digits
POWER = 1.0  # how much a digit's probability is weighed by the sequence reader (weighed_by_reading)
RECOUNT = 4.0  # how much likelier its own reading must be to replace another count of digits (recounts)
WIDTHS = (0.88, 1.12)  # the strip's ink narrower and wider, two of its views (read_strip)
RECOUNT_ONE = 12.0  # the same where the cutter found one digit: a margin from 6 to 25 read the same (notes)
# Two networks' evidence multiplied is surer than it has earned: of validation digits weighed at
# 0.99-0.999, 96.3% were right. Divided by this (fitted on 12,280 of them), each band of
# confidence is as often right as it says (notes). The answers stay the same.
TEMPERATURE = 1.39


class SequenceNetwork(nn.Module):
    """Strips ``(N, 1, 32, W)`` in 0-1 -> log-probabilities ``(N, W // 4, 11)``: for each 4 columns,
    digits 0-9 and ``BLANK``."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()

        def block(channels_in: int, channels_out: int, pool: int | tuple[int, int]) -> list[nn.Module]:
            return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
                    nn.ReLU(), nn.MaxPool2d(pool)]

        # Height 32 -> 2 after four poolings; the width halves twice only, so each step is 4 columns.
        self.features = nn.Sequential(*block(1, 32, 2), *block(32, 64, 2), *block(64, 96, (2, 1)),
                                      *block(96, 96, (2, 1)))
        self.rnn = nn.GRU(96 * 2, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, BLANK + 1)

    def forward(self, strips: torch.Tensor) -> torch.Tensor:
        features = self.features(strips)
        count, channels, height, steps = features.shape
        columns, _ = self.rnn(features.permute(0, 3, 1, 2).reshape(count, steps, channels * height))
        return self.out(columns).log_softmax(-1)


@functools.cache
def load_sequence_reader() -> SequenceNetwork:
    """The shipped sequence reader, in eval mode (loaded once per process, no code executed)."""
    network = SequenceNetwork()
    stored = load_file(WEIGHTS)
    network.load_state_dict({name: value.float() if value.is_floating_point() else value
                             for name, value in stored.items()})
    return network.eval()


def to_strip(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A number's ``ink`` (0-1, bright, ``(H, W)``) where ``mask`` is set -> uint8 ``(32, W')``:
    cropped to the mask, scaled to 24 pixels tall (at most ``MAX_WIDTH`` wide), 4 blank pixels
    around, its brightest pixel 255."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = (ink * mask)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    scale = CONTENT / crop.shape[0]
    width = int(np.clip(round(crop.shape[1] * scale), 4, MAX_WIDTH - 2 * MARGIN))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(crop, mode="F").resize((width, CONTENT), resample))
    strip = np.zeros((HEIGHT, width + 2 * MARGIN), np.float32)
    strip[MARGIN : MARGIN + CONTENT, MARGIN : MARGIN + width] = small
    return np.round(np.clip(strip / max(float(strip.max()), 1e-6), 0, 1) * 255).astype(np.uint8)


def strip_log_probs(strip: np.ndarray, network: SequenceNetwork | None = None) -> torch.Tensor:
    """The network's log-probabilities ``(W // 4, 11)`` for one uint8 strip ``(32, W)``."""
    network = network or load_sequence_reader()
    with torch.inference_mode():
        return network(torch.from_numpy(strip[None, None].astype(np.float32) / 255))[0]


def read_strip(strip: np.ndarray, network: SequenceNetwork | None = None) -> list[torch.Tensor]:
    """The sequence reader's views of one strip, each its log-probabilities ``(T, 11)``
    (:func:`strip_log_probs`): the strip as it is, half a step (2 columns) later, and its ink 88%
    and 112% as wide (``WIDTHS``). Averaged, they read 2,653 of 2,700 validation numbers whole
    where the strip alone read 2,647 (see the notes)."""
    height, width = strip.shape
    ink = strip[:, MARGIN : width - MARGIN]
    strips = [strip, np.pad(strip, ((0, 0), (STRIDE // 2, 0)))]
    for factor in WIDTHS:
        resized = Image.fromarray(ink).resize((max(4, round(ink.shape[1] * factor)), height), Image.Resampling.BILINEAR)
        strips.append(np.pad(np.asarray(resized), ((0, 0), (MARGIN, MARGIN))))
    return [strip_log_probs(view, network) for view in strips]


def best_reading(log_probs: torch.Tensor) -> list[int]:
    """The digits read from ``log_probs`` ``(T, 11)``: each step's likeliest label, a label repeated
    in the next step counted once, blanks dropped (greedy CTC decoding)."""
    digits, previous = [], BLANK
    for label in log_probs.argmax(-1).tolist():
        if label not in (previous, BLANK):
            digits.append(label)
        previous = label
    return digits


def log_likelihoods(views: list[torch.Tensor], readings: list[list[int]]) -> np.ndarray:
    """log P(reading | strip) ``(len(readings),)`` for each non-empty reading (a list of digits),
    summed over every way of placing it along the strip, averaged over the ``views`` of the strip
    (each view's ``(T, 11)`` log-probabilities, :func:`read_strip`); ``-inf`` for a reading too
    long for a view."""
    if not readings:
        return np.zeros(0)
    count = len(readings)
    targets = torch.tensor([d for reading in readings for d in reading])
    lengths = torch.tensor([len(r) for r in readings])
    return np.mean([-nn.functional.ctc_loss(log_probs[:, None].expand(-1, count, -1), targets,
                                            torch.full((count,), log_probs.shape[0]), lengths, blank=BLANK,
                                            reduction="none").numpy() for log_probs in views], axis=0)


def substitutions(reading: list[int], views: list[torch.Tensor]) -> np.ndarray:
    """log P(``reading`` with digit ``d`` at place ``i`` | the strip) ``(len(reading), 10)``: each
    place's ten digits, the others as read (:func:`log_likelihoods` over the ``views``)."""
    return np.stack([log_likelihoods(views, [[*reading[:i], digit, *reading[i + 1 :]] for digit in range(BLANK)])
                     for i in range(len(reading))])


def weighed_by_reading(probabilities: np.ndarray, views: list[torch.Tensor], power: float = POWER,
                       temperature: float = TEMPERATURE) -> np.ndarray:
    """A number's digit probabilities ``(N, 10)`` (the digit network's, one row per cut-out digit,
    left to right), each row weighed by the sequence reader: digit ``d`` of row ``i`` times
    P(the likeliest reading with ``d`` at ``i`` | the strip's ``views``) to the ``power``, the row
    summed to 1.

    The two networks see the number differently (cut into 28x28 digits; the ink whole, with its
    neighbours), and go wrong on different numbers. The product's logarithm is divided by
    ``temperature`` so its confidence is earned. A row the strip cannot hold in any way (a reading
    longer than it allows) is left as it was.
    """
    weighed = probabilities.astype(np.float64)
    for i, scores in enumerate(substitutions(probabilities.argmax(1).tolist(), views)):
        if np.isfinite(scores).any():
            weighed[i] = special.softmax((np.log(np.maximum(weighed[i], 1e-9)) + power * scores) / temperature)
    return weighed.astype(probabilities.dtype)


def recounts(reading: list[int], views: list[torch.Tensor]) -> bool:
    """Whether the sequence reader's own reading (:func:`best_reading` of the strip as it is)
    counts other digits than ``reading`` and is more likely than it by over ``RECOUNT``
    (log-likelihood over the ``views``), or by over ``RECOUNT_ONE`` where ``reading`` is one digit
    (a digit alone is read far more surely cut out)."""
    its = best_reading(views[0])
    if not its or len(its) == len(reading):
        return False
    theirs, own = log_likelihoods(views, [reading, its])
    return bool(own - theirs > (RECOUNT if len(reading) >= 2 else RECOUNT_ONE))


def reading_probabilities(views: list[torch.Tensor]) -> np.ndarray:
    """The sequence reader's own reading as probabilities ``(N, 10)``: each place's ten digits,
    the others as read, in proportion to their likelihood."""
    return special.softmax(substitutions(best_reading(views[0]), views), axis=1).astype(np.float32)


def reading_cuts(log_probs: torch.Tensor, mask: np.ndarray) -> list[int]:
    """Where :func:`best_reading` puts the digits of the ink ``mask`` ``(H, W)`` whose strip gave
    ``log_probs``: the columns of ``mask`` between each digit and the next (halfway between the
    steps that read them), then the column after the ink's end. Each cut is at least one step's
    columns past the one before (or the ink's start): digits read in adjacent steps, such as a 1
    crossing a 7, would otherwise leave a piece with no ink, and the reading no image to show."""
    runs: list[list[int]] = []  # the first and last step of each digit read
    previous = BLANK
    for step, label in enumerate(log_probs.argmax(-1).tolist()):
        if label != BLANK and label == previous:
            runs[-1][1] = step
        elif label != BLANK:
            runs.append([step, step])
        previous = label
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    ink_width, ink_height = cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]
    scale = np.clip(round(ink_width * CONTENT / ink_height), 4, MAX_WIDTH - 2 * MARGIN) / ink_width  # as to_strip
    between = [(last + 1 + first) / 2 * STRIDE for (_, last), (first, _) in itertools.pairwise(runs)]
    cuts, step = [int(cols[0])], max(1, round(STRIDE / scale))
    for column in between:
        cuts.append(max(int(cols[0] + round((column - MARGIN) / scale)), cuts[-1] + step))
    return [*cuts[1:], int(cols[-1] + 1)]
