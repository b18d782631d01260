"""An exported ``model.onnx`` run by onnxruntime, usable wherever cnnlab takes a model.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install 'cnnlab[onnx]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import CnnlabError, first_line

EXTRA_HINT = "install the optional extra: pip install 'cnnlab[onnx]' (onnx, onnxscript, onnxruntime)"


def require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise CnnlabError(f"ONNX needs {', '.join(missing)}: {EXTRA_HINT}")


def check_finite_weights(path: str | Path) -> None:
    """Refuse a model whose weights (the graph's initializers) are not all finite numbers, as
    cnnlab.models.files.check_finite does for safetensors: every answer would be NaN."""
    import onnx
    from onnx import numpy_helper

    for weight in onnx.load(str(path)).graph.initializer:
        values = numpy_helper.to_array(weight)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = "NaN" if np.isnan(values).any() else "infinite"
            raise CnnlabError(f"{path}: the weights in {weight.name} include {bad} values, so every answer would be "
                              "NaN; export the model again from a run that loads (cnnlab export RUN --format onnx)")


class OnnxClassifier(torch.nn.Module):
    """An exported ``model.onnx`` run by onnxruntime, usable wherever cnnlab takes a model:
    normalised images ``(N, C, H, W)`` in, logits ``(N, classes)`` out (CPU tensors)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        require_modules("onnxruntime", "onnx")
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a corrupt or foreign file
            raise CnnlabError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from None
        check_finite_weights(path)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])
