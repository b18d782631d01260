"""The one way a model is asked: :class:`Predictor`, used by ``cnnlab predict``, ``read`` and
``explain``, the server, the Python API and the benchmarks.

Answering an image has two parts, kept apart so that many images can share the second:

    prepare(source)      the CPU work for one image or number: decoding, finding the ink (a digit
                         model) or a plain resize (any other), cutting a number into digits
    answer([prepared])   one forward pass for any number of prepared inputs, the four one-pixel
                         shifts included; a number's digits checked by the sequence reader

For an MNIST digit model, photos and scans go through cnnlab.handwriting (the ink found, centred
and sized as MNIST's digits). Any other model gets a plain resize: padded to a square with its
border's colour (the aspect kept), then resized, in colour for a colour model; for a grey model
of a built-in light-on-dark dataset (Fashion-MNIST, KMNIST), a photo with a light ground is
inverted to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.images import decode, fit_square, reduced_for, to_grey, to_rgb
from cnnlab.errors import CnnlabError
from cnnlab.handwriting.asking import Ask, answered
from cnnlab.handwriting.digit import read_as_mnist, read_grey
from cnnlab.handwriting.number import Reading, read_digit_or_number, read_number
from cnnlab.models.files import ModelInfo, load_model
from cnnlab.models.inference import background_of, predict_logits, predict_logits_tta, to_input
from cnnlab.using.prediction import Asked, Prediction

LIGHT_ON_DARK = ("digits", "characters", "clothing")  # built-in kinds drawn light on a dark ground
DIGIT_NAMES = [str(digit) for digit in range(10)]  # the classes whose answers the sequence reader can weigh

Source = str | Path | bytes | np.ndarray  # an image file, its bytes, or an image already prepared (uint8)


def uses_digit_steps(info: ModelInfo) -> bool:
    """Whether ``info``'s model is an MNIST digit model, whose inputs are found as ink (cnnlab.handwriting)."""
    return info.finds_ink()


def preprocessing(info: ModelInfo) -> str:
    """One line saying how images are prepared for this model."""
    if uses_digit_steps(info):
        return "finding the ink, then cropping, centring and scaling it as MNIST's digits are (28x28)"
    colour = "RGB" if info.in_channels == 3 else "grey"
    return (f"a plain resize to {info.image_size}x{info.image_size} {colour}, padded to a square with the border's "
            "colour (no ink extraction)")


def plain_image(source: str | Path | bytes, info: ModelInfo, name: str | None = None) -> np.ndarray:
    """An image prepared as the training images were: uint8 ``(side, side)`` or ``(side, side, 3)``,
    padded to a square and resized as a folder's images are (cnnlab.data.images.fit_square). A large
    photo is reduced first, while it is 8-bit (cnnlab.data.images.reduced_for)."""
    image = reduced_for(decode(source, name), info.image_size)
    if info.in_channels == 3:
        return fit_square(to_rgb(image), info.image_size)
    grey = to_grey(image)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if info.kind in LIGHT_ON_DARK and border.mean() > 0.5:  # a photo of a garment on a light table
        grey = 1 - grey
    return fit_square(grey, info.image_size)


@dataclass(frozen=True)
class Prepared:
    """One image made ready for the network: ``reading.digits``, the uint8 inputs ``(H, W)`` or
    ``(H, W, 3)`` it will see (one, or one per digit of a number), and ``number``: True to answer
    it as a number, False as one image, None as the reading found (several digits: a number)."""

    name: str | None
    reading: Reading
    number: bool | None = False

    @property
    def images(self) -> list[np.ndarray]:
        return self.reading.digits


class Predictor:
    """A loaded model that answers images: ``Predictor.load("runs/mine").predict("seven.jpg")``.

    Args:
        model: the network, in eval mode from here on.
        info: its facts (cnnlab.models.files.ModelInfo): classes, input size, normalisation.
        tta: average each answer over the image and its four one-pixel shifts. A photo's digit is
            centred less surely than MNIST's; on numbers of validation digits (seeds 1-3) this read
            4 more of 900 made the second way and 4 more of 450 on a page, and MNIST's own
            validation images 99.22/99.15/99.28% against 99.17/98.98/99.20%.
    """

    def __init__(self, model: torch.nn.Module, info: ModelInfo, tta: bool = True) -> None:
        self.model, self.info, self.tta = model.eval(), info, tta
        self.background = background_of(info.mean, info.std)

    @classmethod
    def load(cls, source: str | Path | tuple[torch.nn.Module, ModelInfo], tta: bool = True) -> Predictor:
        """A run directory, a ``.safetensors`` or ``.onnx`` file, or a ``(model, info)`` already loaded."""
        model, info = source if isinstance(source, tuple) else load_model(source)
        return cls(model, info, tta)

    @property
    def digit_steps(self) -> bool:
        """Whether images are found as ink (an MNIST digit model) rather than resized."""
        return uses_digit_steps(self.info)

    def prepare(self, source: Source, number: bool | None = False, name: str | None = None,
                ask: Ask | None = None) -> Prepared:
        """The CPU work for one image: ``source`` decoded and prepared as the training images were.

        ``number``: True reads a number, False one digit (or one image), None decides which (a
        digit model only). A number's cuts are chosen with the network's confidence in each
        candidate piece, asked through ``ask`` (uint8 ``(N, 28, 28)`` -> top probability ``(N,)``;
        default: :meth:`top_probability`, a forward pass without shifts). An ``np.ndarray`` is taken
        as already prepared (a pixel CSV's row). Raises :class:`CnnlabError` for an image with
        nothing to read (no ink, too many marks) or that cannot be read.
        """
        if isinstance(source, np.ndarray):
            return Prepared(name, Reading([source]), False)
        if number is None and not self.digit_steps:
            raise CnnlabError("telling one digit from a number needs an MNIST digit model (28x28 grey)")
        if number and (self.info.image_size, self.info.in_channels) != (28, 1):
            side = self.info.image_size
            raise CnnlabError(f"--number needs a 28x28 grey digit model; this one takes {side}x{side} "
                              f"{'RGB' if self.info.in_channels == 3 else 'grey'}")
        if number is None:
            reading = answered(read_digit_or_number(read_grey(source, name)), ask or self.top_probability)
        elif number:
            reading = answered(read_number(read_grey(source, name)), ask or self.top_probability)
        elif self.digit_steps:
            reading = Reading([read_as_mnist(source, name)])
        else:
            reading = Reading([plain_image(source, self.info, name)])
        return Prepared(name, reading, number)

    def probabilities(self, images: np.ndarray | torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Every class's probability ``(N, classes)`` for uint8 images ``(N, H, W)`` or ``(N, H, W, 3)``:
        one forward pass, with the four one-pixel shifts if ``tta`` (default: the predictor's)."""
        images = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        inputs = to_input(images, self.info.mean, self.info.std)
        if self.tta if tta is None else tta:
            return predict_logits_tta(self.model, inputs, self.background).softmax(1)
        return predict_logits(self.model, inputs).softmax(1)

    def top_probability(self, images: np.ndarray) -> np.ndarray:
        """The network's top probability ``(N,)`` for uint8 images ``(N, H, W)``, without shifts: how a
        number's reading asks about its candidate pieces."""
        return self.probabilities(images, tta=False).max(1).values.numpy()

    def answer(self, prepared: list[Prepared], top_k: int = 3, min_confidence: float = 0.0,
               details: bool = False, images: bool = False) -> list[Prediction]:
        """One :class:`Prediction` per prepared input, from one forward pass over all their images.

        ``top_k``: candidates listed per answer (per digit); ``min_confidence``: answers below it
        are marked uncertain; ``details``: keep every class's probability and the images the
        network saw (what the web page shows); ``images``: keep the images only. A number's
        digits, for a model of the ten digits, are checked by the sequence reader
        (:meth:`cnnlab.handwriting.number.Reading.settled`).
        """
        seen = [image for one in prepared for image in one.images]
        if not seen:
            return []
        everything = self.probabilities(np.stack(seen)).numpy()
        answers, used = [], 0
        for one in prepared:
            count = len(one.images)
            digits, own = one.images, everything[used : used + count]
            used += count
            if self.info.class_names == DIGIT_NAMES:
                digits, own = one.reading.settled(own)
            as_number = one.number if one.number is not None else len(digits) > 1
            answers.append(Prediction.of(one.name, digits, own, self.info.class_names, as_number,
                                         Asked(top_k, min_confidence, details, images or details)))
        return answers

    def predict(self, source: Source, number: bool | None = False, top_k: int = 3, min_confidence: float = 0.0,
                details: bool = False) -> Prediction:
        """:meth:`prepare` and :meth:`answer` one image; an image with nothing to read is a
        :class:`Prediction` with ``error`` set."""
        name = str(source) if isinstance(source, str | Path) else None
        try:
            prepared = self.prepare(source, number, name)
        except CnnlabError as exc:
            return Prediction(name, error=str(exc).removeprefix(f"{name}: "))
        return self.answer([prepared], top_k, min_confidence, details)[0]
