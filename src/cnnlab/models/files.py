"""Model files, written atomically and loaded without executing code.

A trained model is two files: ``model.safetensors`` (tensors only) and ``model.json``
(architecture name or layer spec, class names, input size, normalisation). Loading checks
``model.json`` (bounded in size and nesting, of a format this cnnlab reads) against the shapes in
the safetensors header before anything is allocated, so a tampered or mismatched pair gives a
clear error, never a huge allocation; then every weight is checked to be a finite number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from cnnlab.data.registry import dataset_kind
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes, read_json, write_json
from cnnlab.models.layers import build_spec, first_format, plan
from cnnlab.models.registry import MODELS
from cnnlab.models.timm_nets import is_timm, timm_network

MODEL_FILE = "model.safetensors"
MODEL_META = "model.json"
# model.json's layout; a file without one is of the first. The second reads a spec's last dense<classes> as
# the output layer, and takes softmax; a file is written as the first wherever the two read it alike.
FORMAT_VERSION = 2
# A training's checkpoint (written by cnnlab.training.checkpoint, a stage above); an interrupted one leaves no model
CHECKPOINT_FILE = "checkpoint.pt"
SPEC_ARCHITECTURE = "spec"  # model.json's architecture for a network given as a layer spec
PYTHON_ARCHITECTURE = "python:"  # ... and the prefix for a module of the user's own class
DIGIT_DATASETS = ("mnist",)  # models trained on these read photos by finding their ink (ModelInfo.finds_ink)
INK = "ink"  # ModelInfo.preprocessing of a model fine-tuned from one of them on photos
MAX_IMAGE_SIDE = 2048
MAX_CLASSES = 100_000
MAX_CHANNELS = 64


@dataclass
class ModelInfo:
    """What ``model.json`` says about a trained model.

    ``architecture``: a registry name, ``"spec"`` (then ``spec`` holds the layer spec), or
    ``"python:module.Class"`` for a network of the user's own class (loaded with ``model=``).
    ``mean`` and ``std`` normalise the pixels scaled to 0-1: one number for grey images, a list
    of one per channel for colour. ``kind``: what the training images were (cnnlab.data.registry's
    kinds): ``predict`` inverts a light photo only for the built-in light-on-dark kinds.
    """

    architecture: str
    class_names: list[str]
    image_size: int = 28
    mean: float | list[float] = 0.0
    std: float | list[float] = 1.0
    dataset: str = ""
    test_accuracy: float | None = None
    spec: str | None = None
    in_channels: int = 1
    kind: str = "digits"
    preprocessing: str = ""  # "ink": photos are read by finding their ink, as for MNIST (a run fine-tuned from one)

    def finds_ink(self) -> bool:
        """Whether photos are read as MNIST's digits are (their ink found, centred and sized,
        cnnlab.handwriting.digit): an MNIST digit model, or one fine-tuned from it on photos."""
        digits = self.dataset in DIGIT_DATASETS or self.preprocessing == INK
        return digits and self.image_size == 28 and self.in_channels == 1

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version(),
            "architecture": self.architecture,
            "spec": self.spec,
            "arguments": {"num_classes": len(self.class_names), "image_size": self.image_size},
            "class_names": self.class_names,
            "input": {"channels": self.in_channels, "height": self.image_size, "width": self.image_size},
            "normalization": {"mean": self.mean, "std": self.std, "scale": 1 / 255},
            "dataset": self.dataset,
            "kind": self.kind,
            "test_accuracy": self.test_accuracy,
            **({"preprocessing": self.preprocessing} if self.preprocessing else {}),
        }

    def format_version(self) -> int:
        """The oldest layout that reads this file as meant: 2 for a spec that ends the way only the
        second reads (its output layer written as ``dense<classes>``, or ``softmax``), else 1."""
        if self.spec is None:
            return 1
        classes = len(self.class_names)
        plain = first_format(self.spec, classes) == self.spec and "softmax" not in self.spec.lower().split()
        return 1 if plain else 2

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> ModelInfo:
        if not isinstance(data, dict):
            raise CnnlabError(f"{source}: not a cnnlab model.json (a JSON object was expected, found "
                              f"{type(data).__name__})")
        version = data.get("format_version", 1)
        check_format_version(version, source)
        try:
            spec = data.get("spec")
            if spec is not None and version < 2:  # the first layout: a last dense<classes> was hidden
                spec = first_format(str(spec), len(data["class_names"]))
            info = cls(
                architecture=str(data["architecture"]),
                class_names=[str(c) for c in data["class_names"]],
                image_size=int(data["arguments"]["image_size"]),
                mean=_stats(data["normalization"]["mean"]),
                std=_stats(data["normalization"]["std"]),
                dataset=str(data.get("dataset", "")),
                test_accuracy=_fraction(data.get("test_accuracy"), "test_accuracy", source),
                spec=None if spec is None else str(spec),
                in_channels=int(data.get("input", {}).get("channels", 1)),
                kind=str(data.get("kind") or dataset_kind(str(data.get("dataset", "")))),  # older files: by dataset
                preprocessing=str(data.get("preprocessing") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CnnlabError(f"{source}: not a cnnlab model.json (missing or bad {exc})") from None
        info.check(source)
        return info

    def check(self, source: str) -> None:
        """Refuse numbers no real model has, before anything is sized by them."""
        limits = [("image_size", self.image_size, MAX_IMAGE_SIDE), ("the class count", len(self.class_names),
                   MAX_CLASSES), ("input channels", self.in_channels, MAX_CHANNELS)]
        for name, value, most in limits:
            if not 1 <= value <= most:
                raise CnnlabError(f"{source}: {name} {value} is out of range (1 to {most}); "
                                  "this model.json was changed or is not cnnlab's")
        means, stds = (v if isinstance(v, list) else [v] for v in (self.mean, self.std))
        usable = all(math.isfinite(m) for m in means) and all(math.isfinite(s) and s > 0 for s in stds)
        if not usable or {len(means), len(stds)} - {1, self.in_channels}:
            raise CnnlabError(f"{source}: normalization mean {self.mean} / std {self.std} is not usable "
                              f"(one number, or one per channel of {self.in_channels}; std must be a positive number)")

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The architecture this describes, freshly initialised (on ``"meta"``: shapes only, nothing allocated)."""
        classes = len(self.class_names)
        if self.spec is not None:
            plan(self.spec, classes, self.in_channels, self.image_size)  # size checks before any allocation
            with torch.device(device):
                return build_spec(self.spec, classes, self.in_channels, self.image_size)
        if is_timm(self.architecture):  # timm's own code builds it from the name; the weights come from the file
            with torch.device(device):
                return timm_network(self.architecture, classes, self.in_channels)
        if self.architecture not in MODELS:
            raise CnnlabError(f"unknown model '{self.architecture}' in model.json: use one of {', '.join(MODELS)}")
        with torch.device(device):
            return MODELS[self.architecture].make(classes, self.image_size, self.in_channels)


def check_format_version(version: Any, source: str) -> None:
    """Refuse a ``model.json`` of a layout this cnnlab does not know: a newer one, or a version that is
    not a whole number from 1 (a file without one is read as version 1)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CnnlabError(f"{source}: format_version {json_text(version)} is not a version cnnlab wrote (a whole "
                          "number from 1); this model.json was changed or is not cnnlab's")
    if version > FORMAT_VERSION:
        raise CnnlabError(f"{source}: made by a newer cnnlab (format_version {version}; this cnnlab reads "
                          f"{FORMAT_VERSION}); upgrade cnnlab: pip install --upgrade cnnlab")


def json_text(value: Any) -> str:
    """``value`` as JSON writes it, cut to 40 characters: a bad field named in one short line."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fraction(value: Any, name: str, source: str) -> float | None:
    """A fraction from JSON (an accuracy): None, or a number from 0 to 1 as a float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CnnlabError(f"{source}: {name} {json_text(value)} is not a fraction from 0 to 1; "
                          "this model.json was changed or is not cnnlab's")
    return float(value)


def _stats(value: Any) -> float | list[float]:
    """A normalisation mean or std from JSON: one number, or a list of one per channel."""
    return [float(v) for v in value] if isinstance(value, list) else float(value)


def architecture_of(model: str) -> tuple[str, str | None]:
    """``(architecture, spec)`` for model.json: a registry name and its spec (None for a class),
    ``("spec", text)`` for a spec, or ``("python:...", None)`` for the user's own class."""
    if model in MODELS:
        return model, MODELS[model].spec
    if model.startswith(PYTHON_ARCHITECTURE) or is_timm(model):
        return model, None
    return SPEC_ARCHITECTURE, model


def save_model(folder: str | Path, model: torch.nn.Module, info: ModelInfo) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``folder``."""
    folder = Path(folder)
    save_weights(folder / MODEL_FILE, model.state_dict())
    write_json(folder / MODEL_META, info.to_json())


def save_weights(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """Write a network's ``state_dict`` to a ``.safetensors`` file atomically (on the CPU, contiguous)."""
    atomic_write_bytes(Path(path), save({k: v.detach().cpu().contiguous() for k, v in state.items()}))


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, meta)`` for a run directory or a ``model.safetensors`` path."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if path.suffix != ".safetensors":
        raise CnnlabError(f"{path}: give a run directory, a .safetensors or an .onnx model file")
    meta = path.with_name(MODEL_META)
    if not path.is_file() and (path.parent / CHECKPOINT_FILE).is_file():
        run = path.parent
        raise CnnlabError(f"{run}: the training was interrupted before it saved a model; continue it with "
                          f"'cnnlab train --resume {run}'")
    for needed in (path, meta):
        if not needed.is_file():
            raise CnnlabError(f"{needed}: not found; train a model first with 'cnnlab train --out DIR'")
    return path, meta


def read_model_info(meta: Path) -> ModelInfo:
    """The :class:`ModelInfo` in a ``model.json`` (read bounded in size and nesting: cnnlab.files.read_json),
    or a :class:`CnnlabError` saying what is wrong with it."""
    return ModelInfo.from_json(read_json(meta), str(meta))


def load_model(path: str | Path, device: str | torch.device = "cpu", model: torch.nn.Module | None = None
               ) -> tuple[torch.nn.Module, ModelInfo]:
    """Load a trained model in eval mode from a run directory or a ``.safetensors`` file (or an
    exported ``.onnx``, run by onnxruntime on the CPU).

    ``model``: for a run of a network of your own class (``model.json`` says ``python:...``), a
    fresh instance of that class, into which the weights are loaded. Nothing in the files is run
    as code: the network is built from its registry name or layer spec, and ``model.json`` is
    checked against the tensor shapes in the weights file's header before anything is allocated.
    """
    if Path(path).suffix == ".onnx":
        return load_onnx(path)
    weights, meta = model_paths(path)
    info = read_model_info(meta)
    if model is None and info.architecture.startswith(PYTHON_ARCHITECTURE):
        name = info.architecture.removeprefix(PYTHON_ARCHITECTURE)
        raise CnnlabError(f"{path} holds a network of your own class ({name}); load it in Python with "
                          f"cnnlab.load_model({str(path)!r}, model={name.rsplit('.', 1)[-1]}())")
    shell = model if model is not None else info.build("meta")
    expected = shell.state_dict()
    _check_shapes(_shapes(expected), tensor_shapes(weights), weights, meta)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnlabError(f"{weights}: not a readable safetensors file ({exc})") from None
    check_finite(state, weights)
    if model is None:
        # The loaded tensors become the network's own (in its dtypes: a float16 file loads as float32).
        # Not to_empty(): on a network built on "meta" it imports sympy through torch's reference ops, 0.7 s.
        shell.load_state_dict({name: tensor.to(expected[name].dtype) for name, tensor in state.items()}, assign=True)
        model = shell
    else:
        model.load_state_dict(state)
    return model.to(device).eval(), info


def check_finite(state: dict[str, torch.Tensor], weights: Path) -> None:
    """Refuse weights that are not all finite numbers: a network with a NaN or an infinity answers
    NaN for every image (a training that diverged, or a damaged file)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise CnnlabError(f"{weights}: the weights in {name} include {bad} values, so every answer would be NaN; "
                              "the training diverged or the file is damaged: train the model again "
                              "(a lower --lr if it diverged)")


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file declares, read from its header alone."""
    try:
        with safe_open(weights, "pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CnnlabError(f"{weights}: not a readable safetensors file ({exc})") from None


def _check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], weights: Path,
                  meta: Path) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}" if missing
            else f"unexpected {unexpected[:3]}" if unexpected
            else f"{wrong[0]} has shape {found[wrong[0]]}, expected {expected[wrong[0]]}"
        )
        raise CnnlabError(
            f"{weights} does not match the architecture in {meta} ({detail}); "
            "keep the two files from the same run together"
        )


def load_onnx(path: str | Path) -> tuple[torch.nn.Module, ModelInfo]:
    """An exported model and its ``model.json`` (which must sit beside it)."""
    path, meta = Path(path), Path(path).with_name(MODEL_META)
    for needed in (path, meta):
        if not needed.is_file():
            raise CnnlabError(f"{needed}: not found; make it with 'cnnlab export RUN --format onnx'")
    from cnnlab.models.onnx import OnnxClassifier  # onnxruntime is an optional extra

    info = read_model_info(meta)
    return OnnxClassifier(path).eval(), info
