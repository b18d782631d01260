"""Run directories and model files, written atomically and loaded without executing code.

A trained model is two files: ``model.safetensors`` (tensors only) and ``model.json``
(architecture name and arguments, class names, input size, normalisation). Loading checks
the weights against the architecture, so a mismatched pair gives a clear error.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model

MODEL_FILE = "model.safetensors"
MODEL_META = "model.json"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(folder) / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: plain
    data only, so a crafted file cannot run code (a pickle that asks for more is refused)."""
    path = Path(folder) / CHECKPOINT_FILE if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise CnnlabError(f"{path}: no checkpoint here; --resume takes the run directory of a 'cnnlab train "
                          "--out DIR' that finished at least one epoch")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error, a truncated zip, a foreign file
        raise CnnlabError(f"{path}: not a cnnlab checkpoint, or refused as unsafe "
                          f"({str(exc).splitlines()[0][:200]})") from None


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


@dataclass
class ModelInfo:
    """What ``model.json`` says about a trained model."""

    architecture: str
    class_names: list[str]
    image_size: int = 28
    mean: float = 0.0
    std: float = 1.0
    dataset: str = ""
    test_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "arguments": {"num_classes": len(self.class_names), "image_size": self.image_size},
            "class_names": self.class_names,
            "input": {"channels": 1, "height": self.image_size, "width": self.image_size},
            "normalization": {"mean": self.mean, "std": self.std, "scale": 1 / 255},
            "dataset": self.dataset,
            "test_accuracy": self.test_accuracy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> ModelInfo:
        try:
            return cls(
                architecture=str(data["architecture"]),
                class_names=[str(c) for c in data["class_names"]],
                image_size=int(data["arguments"]["image_size"]),
                mean=float(data["normalization"]["mean"]),
                std=float(data["normalization"]["std"]),
                dataset=str(data.get("dataset", "")),
                test_accuracy=data.get("test_accuracy"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CnnlabError(f"{source}: not a cnnlab model.json (missing or bad {exc})") from None


def save_model(folder: str | Path, model: torch.nn.Module, info: ModelInfo) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``folder``."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / MODEL_FILE, save(tensors))
    write_json(folder / MODEL_META, info.to_json())


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, meta)`` for a run directory or a ``model.safetensors`` path."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if path.suffix != ".safetensors":
        raise CnnlabError(f"{path}: give a run directory, a .safetensors or an .onnx model file")
    meta = path.with_name(MODEL_META)
    for needed in (path, meta):
        if not needed.is_file():
            raise CnnlabError(f"{needed}: not found; train a model first with 'cnnlab train --out DIR'")
    return path, meta


def read_model_info(meta: Path) -> ModelInfo:
    """The :class:`ModelInfo` in a ``model.json``, or a :class:`CnnlabError` saying what is wrong with it."""
    try:
        return ModelInfo.from_json(json.loads(meta.read_text()), str(meta))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{meta}: not valid JSON ({exc})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """Load a trained model in eval mode from a run directory or a ``.safetensors`` file (or an
    exported ``.onnx``, run by onnxruntime on the CPU: cnnlab.export)."""
    if Path(path).suffix == ".onnx":
        from cnnlab.export import load_onnx

        return load_onnx(path)
    weights, meta = model_paths(path)
    info = read_model_info(meta)
    model = build_model(info.architecture, len(info.class_names), info.image_size)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnlabError(f"{weights}: not a readable safetensors file ({exc})") from None
    _check_state(model, state, weights, meta)
    model.load_state_dict(state)
    return model.to(device).eval(), info


def _check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], weights: Path, meta: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}" if missing
            else f"unexpected {unexpected[:3]}" if unexpected
            else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}"
        )
        raise CnnlabError(
            f"{weights} does not match the architecture in {meta} ({detail}); "
            "keep the two files from the same run together"
        )


def write_run(out: Path, model: torch.nn.Module, info: ModelInfo, history: list[dict[str, float]],
              metrics: dict[str, Any], config: dict[str, Any], device: torch.device, test_images: torch.Tensor,
              test_labels: torch.Tensor, test_logits: torch.Tensor | None = None) -> None:
    """Write a trained run's directory: model files, history, metrics, ``config`` (every option,
    plus the threads and device used), pictures and report.html. ``test_logits``: the model's
    scores of ``test_images`` as the metrics were computed, if the caller has them."""
    from cnnlab import report  # matplotlib loads only when a run is saved

    save_model(out, model, info)
    write_csv(out / "history.csv", history)
    write_json(out / "metrics.json", metrics)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    write_json(out / "config.json", {**config, "device_used": str(device), "versions": versions})
    on_cpu = model if device.type == "cpu" else copy.deepcopy(model).cpu()  # the caller keeps its GPU model
    report.write_pictures(out, on_cpu, info, history, metrics, test_images, test_labels, test_logits)
    report.write_html(out)
