"""Reading photos of handwritten digits and numbers with the reader that ships with cnnlab: no
training first.

The reader is a digit network trained for photos of handwriting rather than for MNIST's test set
(the ``reader`` preset: slanted, squeezed, thickened, broken and blurred digits; its weights and
``model.json`` are in ``cnnlab/handwriting/reader/``). It reads each image as one digit or as a
number, as it judges best, unless told which. Train it again with::

    cnnlab train --preset reader --seed 1 --out runs/reader
"""

from __future__ import annotations

import functools
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.using.predict import Prediction, predict_files
from cnnlab.using.predictor import Predictor

READER = Path(__file__).resolve().parents[1] / "handwriting" / "reader"
MODES = {"auto": None, "digit": False, "number": True}  # what cnnlab.using.predict's ``number`` is for each


def read(paths: str | Path | list[str | Path], mode: str = "auto", top_k: int = 3, min_confidence: float = 0.0,
         save_preprocessed: str | Path | None = None, progress: bool | None = None) -> list[Prediction]:
    """Read every image in ``paths`` (files, folders, pixel CSVs) with the bundled reader.

    Args:
        paths: one path or a list of them.
        mode: ``auto`` (each image: one digit or a number, as the reader judges), ``digit`` or ``number``.
        top_k: how many candidate labels each answer (each digit of a number) lists.
        min_confidence: answers below this probability (a number: any digit's) are marked uncertain.
        save_preprocessed: a folder to write each 28x28 the network saw, as PNG.
        progress: show a progress bar (None: when the output is a terminal).
    Returns:
        One :class:`~cnnlab.using.prediction.Prediction` per image (per row of a pixel CSV): ``label`` for
        a digit, ``number`` and ``digits`` for a number, ``error`` when it could not be read.
    """
    if mode not in MODES:
        raise CnnlabError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    return predict_files(load_reader(), given, top_k, MODES[mode], min_confidence, save_preprocessed, progress)


@functools.cache
def load_reader() -> Predictor:
    """The bundled reader's :class:`~cnnlab.using.predictor.Predictor`, loaded once per process (20 ms
    a time; its files never change)."""
    return Predictor.load(READER)
