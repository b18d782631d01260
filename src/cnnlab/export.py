"""Models outside Python: export to ONNX, and run an exported ``model.onnx`` with onnxruntime.

The ONNX graph takes exactly what the PyTorch model takes, normalised images ``(N, 1, H, W)``
float32 (pixels / 255, minus ``mean``, over ``std``, both in ``model.json``), with any batch size,
and returns the same ``(N, classes)`` logits (an ensemble's: log-probabilities). ``model.json``
goes beside ``model.onnx``, so cnnlab (``cnnlab predict model.onnx ...``) and other programs
know the classes and the normalisation.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install 'cnnlab[onnx]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.runs import MODEL_META, ModelInfo, atomic_write_bytes, load_model, read_model_info, write_json

ONNX_FILE = "model.onnx"
FORMATS = ("onnx",)
EXTRA_HINT = "install the optional extra: pip install 'cnnlab[onnx]' (onnx, onnxscript, onnxruntime)"


def require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise CnnlabError(f"ONNX needs {', '.join(missing)}: {EXTRA_HINT}")


def export_onnx(model_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.onnx`` (dynamic batch size) and ``model.json`` into ``out`` (default: the
    model's own run directory); returns the ``.onnx`` path."""
    require_modules("onnx", "onnxscript")
    model, info = load_model(model_path)
    folder = Path(out) if out else Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    if folder.exists() and not folder.is_dir():
        raise CnnlabError(f"--out {folder}: exists and is not a folder; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, info.image_size, info.image_size)
    batch = torch.export.Dim("batch", min=1)
    # The exporter's notes on its own internals ("torchvision is not installed. Skipping ...") are
    # not the user's business: warnings and its registry's log lines are silenced while it runs.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    finally:
        registry_log.setLevel(level)
    target = folder / ONNX_FILE
    atomic_write_bytes(target, program.model_proto.SerializeToString())
    write_json(folder / MODEL_META, info.to_json())
    return target


class OnnxClassifier(torch.nn.Module):
    """An exported ``model.onnx`` run by onnxruntime, usable wherever cnnlab takes a model:
    normalised images ``(N, 1, H, W)`` in, logits ``(N, classes)`` out (CPU tensors)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        require_modules("onnxruntime")
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a corrupt or foreign file
            raise CnnlabError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def load_onnx(path: str | Path) -> tuple[OnnxClassifier, ModelInfo]:
    """An exported model and its ``model.json`` (which must sit beside it)."""
    path, meta = Path(path), Path(path).with_name(MODEL_META)
    for needed in (path, meta):
        if not needed.is_file():
            raise CnnlabError(f"{needed}: not found; make it with 'cnnlab export RUN --format onnx'")
    info = read_model_info(meta)
    return OnnxClassifier(path).eval(), info
