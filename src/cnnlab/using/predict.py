"""Predicting labels for the user's images (files, folders, or a pixel CSV), one digit or a number each.

Each image is prepared and answered by one :class:`~cnnlab.using.predictor.Predictor`, a batch
of images at a time; how it is prepared for each kind of model is said there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data.images import IMAGE_SUFFIXES
from cnnlab.data.user import read_pixel_csv
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes
from cnnlab.models.files import ModelInfo
from cnnlab.using.prediction import Prediction, png_bytes
from cnnlab.using.predictor import Predictor, Prepared, preprocessing

BATCH = 256  # images per forward pass


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


def prepared_files(predictor: Predictor, inputs: Inputs, number: bool | None
                   ) -> Iterator[tuple[Prepared | Prediction | None, bool]]:
    """``(what was made of an image, whether this ends its file)`` per image: a :class:`Prepared`,
    or a :class:`Prediction` with ``error`` set for one that cannot be read; a CSV gives one per
    row. A CSV found in a folder that is not a pixel CSV (a labels file) joins ``inputs.skipped``
    and gives None."""
    info = predictor.info
    for path in inputs.files:
        if path.suffix.lower() == ".csv":
            try:
                images, _ = read_pixel_csv(path)
            except CnnlabError:
                if path not in inputs.walked:
                    raise
                inputs.skipped.append(path)
                yield None, True  # answers nothing, ends its file for the progress bar
                continue
            if images.shape[1:] != (info.image_size, info.image_size) or info.in_channels != 1:
                colour = " RGB" if info.in_channels == 3 else ""
                raise CnnlabError(f"{path}: holds {images.shape[1]}x{images.shape[2]} grey images, "
                                  f"the model expects {info.image_size}x{info.image_size}{colour}")
            for row, image in enumerate(images):
                yield predictor.prepare(image, name=f"{path}:{row + 1}"), row == len(images) - 1
            continue
        try:
            yield predictor.prepare(path, number, str(path)), True
        except CnnlabError as exc:
            yield Prediction(str(path), error=str(exc).removeprefix(f"{path}: ")), True


def predict_images(model: torch.nn.Module, info: ModelInfo, images: torch.Tensor, top_k: int = 3,
                   tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities for uint8 images ``(N, H, W)``: returns ``(top probabilities, top indices)``."""
    probabilities = Predictor(model, info, tta).probabilities(images)
    return probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)


def predict_files(model_path: str | Path | tuple[torch.nn.Module, ModelInfo] | Predictor, paths: list[str | Path],
                  top_k: int = 3, number: bool | None = False, min_confidence: float = 0.0,
                  save_preprocessed: str | Path | None = None,
                  progress: bool | None = None, tta: bool = True) -> list[Prediction]:
    """Predict every image in ``paths`` (files, folders, pixel CSVs) with a saved model.

    Args:
        model_path: a run directory, a ``.safetensors`` or ``.onnx`` file, a model already
            loaded (the ``(model, info)`` that :func:`~cnnlab.models.files.load_model` returns),
            or a :class:`~cnnlab.using.predictor.Predictor`.
        number: read each image as a number of several digits (MNIST models only); None: decide
            for each image whether it holds one digit or a number (as ``cnnlab read`` does).
        min_confidence: answers below this probability (a number: any digit's) are marked uncertain.
        save_preprocessed: a folder to write each input the network saw (its size and colour), as PNG.
        tta: average each answer over the image and its four one-pixel shifts (see
            :class:`~cnnlab.using.predictor.Predictor`).
    Images that cannot be answered (no ink, too many marks, unreadable) get ``error`` set;
    the others are still predicted.
    """
    predictor = model_path if isinstance(model_path, Predictor) else Predictor.load(model_path, tta)
    inputs = expand_inputs(paths)
    pending: list[Prepared | Prediction] = []
    results: list[Prediction] = []
    saver = _PngSaver(Path(save_preprocessed)) if save_preprocessed else None
    bar = tqdm(total=len(inputs.files), desc="predicting", unit="file", leave=False,
               disable=not progress if progress is not None else None)
    waiting = 0  # images in ``pending``: a number brings several, an error none
    for made, ends_file in prepared_files(predictor, inputs, number):
        if made is not None:
            pending.append(made)
            waiting += len(made.images) if isinstance(made, Prepared) else 0
        if waiting >= BATCH:
            results += _answer(predictor, pending, top_k, min_confidence, saver)
            pending.clear()
            waiting = 0
        bar.update(int(ends_file))
    results += _answer(predictor, pending, top_k, min_confidence, saver)
    bar.close()
    if not predictor.digit_steps and not number and any(not p.error for p in results):
        print(f"note: each image was prepared by {preprocessing(predictor.info)}", file=sys.stderr)
    inputs.report_skipped()
    return results


def _answer(predictor: Predictor, pending: list[Prepared | Prediction], top_k: int, min_confidence: float,
            saver: _PngSaver | None) -> list[Prediction]:
    """Predictions for a batch (errors kept in their place), in one forward pass."""
    prepared = [one for one in pending if isinstance(one, Prepared)]
    answers = iter(predictor.answer(prepared, top_k, min_confidence, images=saver is not None))
    results = [one if isinstance(one, Prediction) else next(answers) for one in pending]
    if saver:
        for result in results:
            if result.images:
                saver.save(result.path, result.images)
                result.images = None
    return results


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
