"""cnnlab: train and use convolutional networks for small images, fast, on a CPU.

The same API the ``cnnlab`` command uses, for notebooks and scripts::

    import cnnlab

    ds = cnnlab.load_dataset("mnist", val_split=0.1)
    run = cnnlab.train(model="cnn", epochs=2, dataset=ds, out="runs/mine")
    print(run.metrics["test_error"])
    print(cnnlab.read(["my_number.jpg"])[0].number)      # the reader that ships with cnnlab: no training
    for p in cnnlab.predict_files("runs/mine", ["my_digit.jpg"]):   # photos are preprocessed as MNIST
        print(p.label, p.confidence)
    print(cnnlab.predict_files("runs/mine", ["year.jpg"], number=True)[0].number)
    why = cnnlab.explain("runs/mine", ["my_digit.jpg"])[0]    # heatmaps, layers, and a PNG
    model = cnnlab.load("runs/mine")             # predicts, evaluates, explains, summarises, exports
    print(model.predict("my_digit.jpg")[0].label, model.evaluate()["test_accuracy"])
"""

from cnnlab.data import DATASETS, Dataset, describe, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import (
    MODELS,
    ModelInfo,
    build,
    build_model,
    count_parameters,
    flops_per_image,
    load_model,
    save_model,
)
from cnnlab.reporting.metrics import evaluate, evaluate_model
from cnnlab.reproduce import reproduce_article
from cnnlab.training import TrainConfig, TrainResult

_LAZY = {  # name -> (module, attribute), loaded on first use: photo preprocessing needs scipy, 0.3 s
    "predict_files": ("cnnlab.using.predict", "predict_files"),
    "predict_images": ("cnnlab.using.predict", "predict_images"),
    "Predictor": ("cnnlab.using.predictor", "Predictor"), "Prediction": ("cnnlab.using.prediction", "Prediction"),
    "digit_to_mnist": ("cnnlab.handwriting.digit", "digit_to_mnist"),
    "number_to_mnist": ("cnnlab.handwriting.number", "number_to_mnist"),
    "summary": ("cnnlab.models.summary", "summary"), "lr_find": ("cnnlab.training.lr_find", "lr_find"),
    "compare": ("cnnlab.reporting.compare", "compare_runs"),
    "format_comparison": ("cnnlab.reporting.compare", "format_table"),
    "read_grey": ("cnnlab.data.images", "read_grey"), "rebuild_report": ("cnnlab.reporting.report", "rebuild"),
    "explain": ("cnnlab.using.explanation", "explain"), "read": ("cnnlab.using.reader", "read"),
    "load": ("cnnlab.using.model", "load"), "Model": ("cnnlab.using.model", "Model"),
    "train": ("cnnlab.using.model", "train"),  # a TrainedModel: the training's result, and a Model
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")


__version__ = "0.1.0"
__all__ = [
    "DATASETS",
    "MODELS",
    "CnnlabError",
    "Dataset",
    "Model",
    "ModelInfo",
    "Prediction",
    "Predictor",
    "TrainConfig",
    "TrainResult",
    "build",
    "build_model",
    "compare",
    "count_parameters",
    "describe",
    "digit_to_mnist",
    "evaluate",
    "evaluate_model",
    "explain",
    "flops_per_image",
    "format_comparison",
    "load",
    "load_dataset",
    "load_model",
    "lr_find",
    "number_to_mnist",
    "predict_files",
    "predict_images",
    "read",
    "read_grey",
    "rebuild_report",
    "reproduce_article",
    "save_model",
    "summary",
    "train",
]
