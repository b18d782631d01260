"""Models outside Python: export to ONNX (cnnlab.models.onnx runs an exported ``model.onnx``).

The ONNX graph takes exactly what the PyTorch model takes, normalised images ``(N, C, H, W)``
float32 (C: 1 for grey, 3 for RGB; pixels / 255, minus ``mean``, over ``std``, one per channel, both
in ``model.json``), with any batch size,
and returns the same ``(N, classes)`` logits (an ensemble's: log-probabilities). ``model.json``
goes beside ``model.onnx``, so cnnlab (``cnnlab predict model.onnx ...``) and other programs
know the classes and the normalisation.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install 'cnnlab[onnx]'``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes, write_json
from cnnlab.models.files import MODEL_META, load_model
from cnnlab.models.onnx import require_modules
from cnnlab.training.run_folder import LOCK_FILE, claim

ONNX_FILE = "model.onnx"
FORMATS = ("onnx",)


def export_onnx(model_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.onnx`` (dynamic batch size) and ``model.json`` into ``out`` (default: the
    model's own run directory); returns the ``.onnx`` path."""
    require_modules("onnx", "onnxscript")
    model, info = load_model(model_path)
    folder = Path(out) if out else Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    if folder.exists() and not folder.is_dir():
        raise CnnlabError(f"--out {folder}: exists and is not a folder; give a folder")
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, info.in_channels, info.image_size, info.image_size)
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
    # Into a run folder (it has a lock file) as one more of its writers: a training writing it meanwhile refuses this.
    with claim(folder, resuming=True) if (folder / LOCK_FILE).is_file() else contextlib.nullcontext():
        atomic_write_bytes(target, program.model_proto.SerializeToString())
        write_json(folder / MODEL_META, info.to_json())
    return target
