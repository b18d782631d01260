"""Predicting labels for the user's images (files, folders, or a pixel CSV), one digit or a number each.

Each image is prepared as the model's training images were. For an MNIST digit model, photos and
scans go through cnnlab.handwriting (the ink found, centred and sized as MNIST's digits). Any other
model gets a plain resize: padded to a square with its border's colour (the aspect kept), then
resized, in colour for a colour model; for a grey model of a built-in light-on-dark dataset
(Fashion-MNIST, KMNIST), a photo with a light ground is inverted to match.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cnnlab.data.images import IMAGE_SUFFIXES, decode, fit_square, reduced_for, to_grey, to_rgb
from cnnlab.data.user import read_pixel_csv
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes
from cnnlab.handwriting.digit import digit_to_mnist, read_grey
from cnnlab.handwriting.number import Confidence, digit_or_number_to_mnist, number_to_mnist
from cnnlab.handwriting.sequence import reading_probabilities, recounts, weighed_by_reading
from cnnlab.models.files import ModelInfo, load_model
from cnnlab.models.inference import images_logits

BATCH = 256  # images per forward pass
DIGIT_DATASETS = ("mnist",)  # models trained on these get the MNIST digit preprocessing
LIGHT_ON_DARK = ("digits", "characters", "clothing")  # built-in kinds drawn light on a dark ground
DIGIT_NAMES = [str(digit) for digit in range(10)]  # the classes whose answers the sequence reader can weigh


@dataclass
class Prediction:
    """One image's answer.

    ``label``/``confidence``/``top``: the class, its probability, and the ``top`` (label,
    probability) list; for a number (``--number``), ``number`` is the digits' labels joined,
    ``confidence`` their product, and ``digits`` one ``{label, confidence, top}`` per digit.
    ``uncertain`` is set when a confidence is below the asked minimum; ``error`` says why an
    image got no answer (no ink, too many marks, unreadable), and then the rest is empty.
    """

    path: str
    label: str = ""
    confidence: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    number: str | None = None
    digits: list[dict] | None = None
    uncertain: bool = False
    error: str | None = None

    def to_json(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        if self.number is not None:
            return {"path": self.path, "number": self.number, "confidence": self.confidence,
                    "digits": self.digits, "uncertain": self.uncertain}
        return {"path": self.path, "label": self.label, "confidence": self.confidence,
                "top": [[label, p] for label, p in self.top], "uncertain": self.uncertain}

    def to_text(self) -> str:
        if self.error:
            return f"{self.path}: no answer: {self.error}"
        doubt = "  (uncertain)" if self.uncertain else ""
        if self.number is not None:
            digits = ", ".join(f"{d['label']} {100 * d['confidence']:.1f}%" for d in self.digits or [])
            return f"{self.path}: {self.number}  [{digits}]{doubt}"
        others = ", ".join(f"{label} {100 * p:.1f}%" for label, p in self.top[1:])
        then = f"  [then {others}]" if others else ""
        return f"{self.path}: {self.label} ({100 * self.confidence:.1f}%){then}{doubt}"


@dataclass
class Inputs:
    """What to answer: the ``files`` in order; those of them found by walking a folder
    (``walked``: a CSV there that is not a pixel CSV is skipped, not an error); and the files in
    folders that are not images (``skipped``)."""

    files: list[Path]
    walked: set[Path] = field(default_factory=set)
    skipped: list[Path] = field(default_factory=list)

    def report_skipped(self) -> None:
        """One line on stderr naming what was passed over, if anything was."""
        if self.skipped:
            skipped = sorted(self.skipped)
            names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            many = len(skipped) > 1
            print(f"note: skipped {len(skipped)} file{'s' if many else ''} that {'are' if many else 'is'} not "
                  f"images: {names}", file=sys.stderr)


def expand_inputs(paths: list[str | Path]) -> Inputs:
    """Files as given; folders as the images (and pixel CSVs) inside them, recursively and sorted,
    other files skipped and counted."""
    inputs = Inputs([])
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            wanted = [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES | {".csv"}]
            if not wanted:
                raise CnnlabError(f"{path}: no images in this folder")
            inputs.files += wanted
            inputs.walked.update(wanted)
            inputs.skipped += [p for p in inside if p not in inputs.walked]
        elif path.is_file():
            inputs.files.append(path)
        else:
            raise CnnlabError(f"{path}: no such file or folder")
    return inputs


def uses_digit_steps(info: ModelInfo) -> bool:
    """Whether ``info``'s model is an MNIST digit model, whose inputs are found as ink (cnnlab.handwriting)."""
    return info.dataset in DIGIT_DATASETS and info.image_size == 28 and info.in_channels == 1


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


def preprocess_source(source: str | Path | bytes, info: ModelInfo, number: bool | None = False,
                      name: str | None = None, model: torch.nn.Module | None = None) -> list[np.ndarray]:
    """An image file or its bytes -> the uint8 ``(H, W)`` (or ``(H, W, 3)``) inputs the model will see:
    one, or one per digit.

    ``number``: True reads a number, False one digit, None decides which (a digit model and
    ``model`` needed: cnnlab.handwriting.number.digit_or_number_to_mnist). For a number, ``model``
    (if given) judges marks that may be two touching digits.
    """
    if number is None:
        if not uses_digit_steps(info) or model is None:
            raise CnnlabError("telling one digit from a number needs an MNIST digit model (28x28 grey)")
        return digit_or_number_to_mnist(read_grey(source, name), _top_probability(model, info))
    if number:
        if (info.image_size, info.in_channels) != (28, 1):
            raise CnnlabError(f"--number needs a 28x28 grey digit model; this one takes {info.image_size}x"
                              f"{info.image_size} {'RGB' if info.in_channels == 3 else 'grey'}")

        confidence = _top_probability(model, info) if model is not None else None
        return number_to_mnist(read_grey(source, name), confidence)
    if uses_digit_steps(info):
        return [digit_to_mnist(read_grey(source, name))]
    return [plain_image(source, info, name)]


def _top_probability(model: torch.nn.Module, info: ModelInfo) -> Confidence:
    def confidence(images: np.ndarray) -> np.ndarray:
        return predict_images(model, info, torch.from_numpy(images), 1)[0][:, 0].numpy()

    return confidence


def prepared_inputs(inputs: Inputs, info: ModelInfo, number: bool | None, model: torch.nn.Module
            ) -> Iterator[tuple[str, list[np.ndarray] | str, bool]]:
    """``(name, images or an error message, whether this ends its file)`` per image; a CSV gives one
    per row. A CSV found in a folder that is not a pixel CSV (a labels file) joins ``inputs.skipped``."""
    for path in inputs.files:
        if path.suffix.lower() == ".csv":
            try:
                images, _ = read_pixel_csv(path)
            except CnnlabError:
                if path not in inputs.walked:
                    raise
                inputs.skipped.append(path)
                yield str(path), [], True  # answers nothing, ends its file for the progress bar
                continue
            if images.shape[1:] != (info.image_size, info.image_size) or info.in_channels != 1:
                colour = " RGB" if info.in_channels == 3 else ""
                raise CnnlabError(f"{path}: holds {images.shape[1]}x{images.shape[2]} grey images, "
                                  f"the model expects {info.image_size}x{info.image_size}{colour}")
            for row, image in enumerate(images):
                yield f"{path}:{row + 1}", [image], row == len(images) - 1
            continue
        try:
            yield str(path), preprocess_source(path, info, number, model=model), True
        except CnnlabError as exc:
            yield str(path), str(exc).removeprefix(f"{path}: "), True


def class_probabilities(model: torch.nn.Module, info: ModelInfo, images: torch.Tensor, tta: bool = False
                        ) -> torch.Tensor:
    """Every class's probability ``(N, classes)`` for uint8 images ``(N, H, W)``; ``tta``: the mean over
    the image and its four one-pixel shifts (:func:`cnnlab.models.inference.predict_logits_tta`, 5x the work)."""
    return images_logits(model, info, images, tta=tta).softmax(1)


def photo_probabilities(model: torch.nn.Module, info: ModelInfo, images: list[np.ndarray], tta: bool = True
                        ) -> tuple[list[np.ndarray], torch.Tensor]:
    """The images :func:`preprocess_source` made of one photo -> ``(images, probabilities)``: the
    images it is answered with and every class's probability ``(N, classes)``, for a model of the
    ten digits checked by the sequence reader (:func:`settled`)."""
    return settled(class_probabilities(model, info, torch.from_numpy(np.stack(images)), tta), images, info)


def settled(probabilities: torch.Tensor, images: list[np.ndarray], info: ModelInfo
            ) -> tuple[list[np.ndarray], torch.Tensor]:
    """A photo's ``images`` and the model's ``probabilities`` ``(N, classes)`` for them, checked by
    the sequence reader's views of the photo (``images.views``, cnnlab.handwriting.number.Digits)
    when the model reads the ten digits: where it counts other digits than the model read and finds
    its reading far likelier (``recounts``), its reading, with the ink cut where it reads them
    (``images.recut``); otherwise a number's digits weighed by it (``weighed_by_reading``)."""
    views = getattr(images, "views", None)
    if views is None or info.class_names != DIGIT_NAMES:
        return images, probabilities
    recut = images.recut
    if recut is not None and recounts(probabilities.argmax(1).tolist(), views):
        return recut, torch.from_numpy(reading_probabilities(views))
    if len(images) < 2:  # one digit: weighing read 2 fewer of 2,000 validation photos (see notes)
        return images, probabilities
    return images, torch.from_numpy(weighed_by_reading(probabilities.numpy(), views))


def predict_images(model: torch.nn.Module, info: ModelInfo, images: torch.Tensor, top_k: int = 3,
                   tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities for uint8 images ``(N, H, W)``: returns ``(top probabilities, top indices)``."""
    probs = class_probabilities(model, info, images, tta)
    return probs.topk(min(top_k, probs.shape[1]), dim=1)


def predict_files(model_path: str | Path | tuple[torch.nn.Module, ModelInfo], paths: list[str | Path],
                  top_k: int = 3, number: bool | None = False, min_confidence: float = 0.0,
                  save_preprocessed: str | Path | None = None,
                  progress: bool | None = None, tta: bool = True) -> list[Prediction]:
    """Predict every image in ``paths`` (files, folders, pixel CSVs) with a saved model.

    Args:
        model_path: a run directory, a ``.safetensors`` or ``.onnx`` file, or a model already
            loaded: the ``(model, info)`` that :func:`~cnnlab.models.files.load_model` returns.
        number: read each image as a number of several digits (MNIST models only); None: decide
            for each image whether it holds one digit or a number (as ``cnnlab read`` does).
        min_confidence: answers below this probability (a number: any digit's) are marked uncertain.
        save_preprocessed: a folder to write each input the network saw (its size and colour), as PNG.
        tta: average each answer over the image and its four one-pixel shifts. A photo's digit is
            centred less surely than MNIST's; on numbers of validation digits (seeds 1-3) this read
            4 more of 900 made the second way and 4 more of 450 on a page, and MNIST's own
            validation images 99.22/99.15/99.28% against 99.17/98.98/99.20%.
    Images that cannot be answered (no ink, too many marks, unreadable) get ``error`` set;
    the others are still predicted.
    """
    model, info = model_path if isinstance(model_path, tuple) else load_model(model_path)
    inputs = expand_inputs(paths)
    pending: list[tuple[str, list[np.ndarray] | str]] = []
    results: list[Prediction] = []
    saver = _PngSaver(Path(save_preprocessed)) if save_preprocessed else None
    bar = tqdm(total=len(inputs.files), desc="predicting", unit="file", leave=False,
               disable=not progress if progress is not None else None)
    waiting = 0  # images in ``pending``: a number brings several, an error none
    for name, images, ends_file in prepared_inputs(inputs, info, number, model):
        if images == []:  # a skipped file
            bar.update(1)
            continue
        pending.append((name, images))
        waiting += len(images) if isinstance(images, list) else 0
        if waiting >= BATCH:
            results += _answer(model, info, pending, top_k, number, min_confidence, saver, tta)
            pending.clear()
            waiting = 0
        bar.update(int(ends_file))
    results += _answer(model, info, pending, top_k, number, min_confidence, saver, tta)
    bar.close()
    if not uses_digit_steps(info) and not number and any(not p.error for p in results):
        print(f"note: each image was prepared by {preprocessing(info)}", file=sys.stderr)
    inputs.report_skipped()
    return results


def _answer(model, info: ModelInfo, pending: list[tuple[str, list[np.ndarray] | str]], top_k: int, number: bool | None,
            min_confidence: float, saver: _PngSaver | None, tta: bool) -> list[Prediction]:
    """Predictions for a batch of preprocessed images, in one forward pass."""
    images = [image for _, found in pending if isinstance(found, list) for image in found]
    if images:
        probabilities = class_probabilities(model, info, torch.from_numpy(np.stack(images)), tta)
    answers, used = [], 0
    for name, found in pending:
        if isinstance(found, str):
            answers.append(Prediction(name, error=found))
            continue
        count = len(found)
        found, own = settled(probabilities[used : used + count], found, info)  # the sequence reader's check
        used += count
        values, indices = own.topk(min(top_k, own.shape[1]), dim=1)
        tops = [[(info.class_names[i], round(v, 6)) for v, i in zip(vs, ix, strict=True)]
                for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)]
        if saver:
            saver.save(name, found)
        as_number = number if number is not None else len(found) > 1
        answers.append(_prediction(name, tops, as_number, min_confidence))
    return answers


def _prediction(name: str, tops: list[list[tuple[str, float]]], number: bool, min_confidence: float) -> Prediction:
    uncertain = any(top[0][1] < min_confidence for top in tops)
    if not number:
        label, confidence = tops[0][0]
        return Prediction(name, label, confidence, tops[0], uncertain=uncertain)
    digits = [{"label": t[0][0], "confidence": t[0][1], "top": [[lab, p] for lab, p in t]} for t in tops]
    confidence = float(np.prod([t[0][1] for t in tops]))
    return Prediction(name, confidence=round(confidence, 6), number="".join(d["label"] for d in digits),
                      digits=digits, uncertain=uncertain)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 image ``(H, W)`` encoded as a PNG file's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


class _PngSaver:
    """Writes the network's inputs as PNGs named after their source images (``7.png``, ``4096-1.png``)."""

    def __init__(self, folder: Path) -> None:
        if folder.exists() and not folder.is_dir():
            raise CnnlabError(f"--save-preprocessed {folder}: exists and is not a folder; give a folder")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.used = folder, set()

    def save(self, name: str, images: list[np.ndarray]) -> None:
        stem = Path(name.replace(":", "-row")).stem if ":" in Path(name).name else Path(name).stem
        for k, image in enumerate(images, 1):
            base = f"{stem}-{k}" if len(images) > 1 else stem
            candidate, n = base, 1
            while candidate in self.used:
                n += 1
                candidate = f"{base}-{n}"
            self.used.add(candidate)
            atomic_write_bytes(self.folder / f"{candidate}.png", png_bytes(image))
