"""cnnlab: train and use convolutional networks for small images, fast, on a CPU.

The same API the ``cnnlab`` command uses, for notebooks and scripts::

    import cnnlab

    ds = cnnlab.load_dataset("mnist", val_split=0.1)
    run = cnnlab.train(model="cnn", epochs=2, dataset=ds, out="runs/mine")
    print(run.metrics["test_error"])
    for p in cnnlab.predict_files("runs/mine", ["my_digit.png"]):
        print(p.label, p.confidence)

Names are imported on first use, so ``import cnnlab`` is instant and the command line
starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "CnnlabError": "cnnlab.errors",
    "Dataset": "cnnlab.data",
    "describe": "cnnlab.data",
    "load_dataset": "cnnlab.data",
    "DATASETS": "cnnlab.data",
    "MODELS": "cnnlab.models",
    "build_model": "cnnlab.models",
    "count_parameters": "cnnlab.models",
    "flops_per_image": "cnnlab.models",
    "TrainConfig": "cnnlab.train",
    "TrainResult": "cnnlab.train",
    "train": "cnnlab.train",
    "evaluate": "cnnlab.evaluate",
    "evaluate_model": "cnnlab.evaluate",
    "load_model": "cnnlab.runs",
    "save_model": "cnnlab.runs",
    "ModelInfo": "cnnlab.runs",
    "predict_files": "cnnlab.predict",
    "predict_images": "cnnlab.predict",
    "reproduce_article": "cnnlab.reproduce",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
