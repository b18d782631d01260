"""``cnnlab explain``: why a model gave its answer, for each of the user's images.

Each image is prepared as ``cnnlab predict`` prepares it, answered, and explained: which pixels
decided the answer, by each method asked for (cnnlab.models.attribution, computed by Captum), and
what every layer made of the image. One PNG per image holds it all (cnnlab.reporting.inside);
:func:`explain` also returns the arrays.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data.images import decode, to_rgb
from cnnlab.errors import CnnlabError
from cnnlab.files import free_folder
from cnnlab.models.attribution import Activation, activations, attribute, check_methods, has_conv
from cnnlab.models.files import ModelInfo
from cnnlab.models.inference import background_of, to_input
from cnnlab.using.predict import expand_inputs, prepared_files
from cnnlab.using.prediction import Prediction
from cnnlab.using.predictor import Predictor

PHOTO_SIDE = 256  # the "your image" panel: photos are shrunk to this many pixels on their longer side


@dataclass
class Explanation:
    """One image's answer and why: the arrays, and the picture's path.

    ``image`` is the uint8 input the network saw, ``(H, W)`` or ``(H, W, 3)``; ``maps`` holds, for
    each method, one value per pixel of it ``(H, W)``; ``layers`` every conv and dense layer's
    output. An image that could not be read has ``error`` set and nothing else.
    """

    path: str
    label: str = ""
    confidence: float = 0.0
    target: str = ""  # the class the maps explain: the answer, or --target
    probabilities: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = None
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    layers: list[Activation] = field(default_factory=list)
    picture: Path | None = None
    error: str | None = None

    def to_json(self) -> dict:
        """What ``--json`` prints: the answer and the picture's path (the arrays stay in Python)."""
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "label": self.label, "confidence": self.confidence, "target": self.target,
                "probabilities": self.probabilities, "methods": list(self.maps),
                "picture": str(self.picture) if self.picture else None}

    def to_text(self) -> str:
        if self.error:
            return f"{self.path}: no answer: {self.error}"
        why = "" if self.target == self.label else f", explaining '{self.target}'"
        return f"{self.path}: {self.label} ({100 * self.confidence:.1f}%{why}) -> {self.picture}"


def class_index(target: str | int | None, classes: list[str]) -> int | None:
    """``--target`` as a class index: a class name, or an index into the classes; None stays None."""
    if target is None:
        return None
    if str(target) in classes:
        return classes.index(str(target))
    if str(target).isdigit() and int(target) < len(classes):
        return int(target)
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise CnnlabError(f"--target '{target}' is not one of the model's classes ({shown}); give a class name "
                      f"or an index from 0 to {len(classes) - 1}")


def explain(model_path: str | Path, paths: list[str | Path], methods: list[str] | tuple[str, ...] = ("all",),
            target: str | int | None = None, out: str | Path | None = "explanations",
            progress: bool | None = None) -> list[Explanation]:
    """Explain a saved model's answer for every image in ``paths`` (files, folders, pixel CSVs).

    Args:
        methods: any of saliency, integrated-gradients, occlusion, gradcam, or "all".
        target: the class to explain (a name or an index); default: each image's answer.
        out: the folder for one PNG per image, named after it (an existing file is never replaced:
            ``7-2.png`` then); None writes no pictures.
    Returns:
        One :class:`Explanation` per image, in order; images that could not be read have ``error`` set.
    """
    asked = check_methods(methods)
    predictor = Predictor.load(model_path)
    model, info = predictor.model, predictor.info
    all_asked = any(m.strip().lower() == "all" for m in methods)
    methods = usable_methods(asked, model, all_asked=all_asked, name=info.architecture)
    wanted = class_index(target, info.class_names)
    inputs = expand_inputs(paths)
    folder = Path(out) if out is not None else None
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise CnnlabError(f"--out {folder}: exists and is not a folder; give a folder")
        folder.mkdir(parents=True, exist_ok=True)
    results = []
    bar = tqdm(total=len(inputs.files), desc="explaining", unit="file", leave=False,
               disable=not progress if progress is not None else None)
    for prepared, ends_file in prepared_files(predictor, inputs, False):
        if isinstance(prepared, Prediction):
            results.append(Explanation(prepared.path, error=prepared.error))
        elif prepared is not None:
            results.append(explain_image(model, info, prepared.name, prepared.images[0], methods, wanted, folder))
        bar.update(int(ends_file))
    bar.close()
    inputs.report_skipped()
    return results


def usable_methods(methods: tuple[str, ...], model: torch.nn.Module, all_asked: bool, name: str) -> tuple[str, ...]:
    """``methods`` this model can be explained by: Grad-CAM needs a conv layer. Asked for by name
    for a network without one, it is an error; as part of "all", it is left out with a note."""
    if "gradcam" not in methods or has_conv(model):
        return methods
    if not all_asked:
        raise CnnlabError(f"gradcam needs a conv layer, and {name} has none; use saliency, integrated-gradients "
                          "or occlusion")
    print(f"note: {name} has no conv layer, so no Grad-CAM", file=sys.stderr)
    return tuple(m for m in methods if m != "gradcam")


def explain_image(model: torch.nn.Module, info: ModelInfo, name: str, image: np.ndarray,
                  methods: tuple[str, ...], target: int | None = None, folder: Path | None = None) -> Explanation:
    """:func:`explain` for one prepared uint8 image ``(H, W)`` or ``(H, W, 3)`` named ``name``. Its
    answer is the one ``cnnlab predict`` gives (the Predictor's, shifts included); the maps explain
    that class, or ``target``."""
    inputs = to_input(torch.tensor(image)[None], info.mean, info.std)  # a copy: the image may be read-only
    probabilities = Predictor(model, info).probabilities(np.array(image)[None])[0]
    answer = int(probabilities.argmax())
    explained = answer if target is None else target
    background = background_of(info.mean, info.std)
    maps = {method: attribute(model, inputs, explained, method, background)[0].numpy() for method in methods}
    result = Explanation(name, info.class_names[answer], round(float(probabilities[answer]), 6),
                         info.class_names[explained],
                         {c: round(float(p), 6) for c, p in zip(info.class_names, probabilities, strict=True)},
                         image, maps, activations(model, inputs))
    if folder is not None:
        from cnnlab.reporting.inside import explanation

        title = f"{Path(name.split(':')[0]).name} by {info.architecture}"
        result.picture = explanation(photo_of(name, image), image, maps, result.layers, info.class_names, answer,
                                     explained, title, free_name(folder, name))
    return result


def photo_of(name: str, image: np.ndarray) -> np.ndarray:
    """The user's image as they see it, RGB floats in 0-1, at most :data:`PHOTO_SIDE` pixels a side;
    for a pixel CSV's row, the row's image itself."""
    if ":" in Path(name).name and not Path(name).is_file():
        return image
    photo = decode(name)
    photo.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
    return to_rgb(photo)


def free_name(folder: Path, name: str) -> Path:
    """``folder/<stem>.png``, or ``<stem>-2.png``... : the first name not taken (nothing is replaced)."""
    file, _, row = name.rpartition(":") if ":" in Path(name).name else (name, "", "")
    stem = f"{Path(file).stem}-row{row}" if row else Path(name).stem
    return free_folder(folder / stem, ".png")
