"""An exported ``model.onnx`` run by onnxruntime, usable wherever cnnlab takes a model.

onnx, onnxscript and onnxruntime are an optional extra: ``pip install 'cnnlab[onnx]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import CnnlabError

EXTRA_HINT = "install the optional extra: pip install 'cnnlab[onnx]' (onnx, onnxscript, onnxruntime)"


def require_modules(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise CnnlabError(f"ONNX needs {', '.join(missing)}: {EXTRA_HINT}")



class OnnxClassifier(torch.nn.Module):
    """An exported ``model.onnx`` run by onnxruntime, usable wherever cnnlab takes a model:
    normalised images ``(N, C, H, W)`` in, logits ``(N, classes)`` out (CPU tensors)."""

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
