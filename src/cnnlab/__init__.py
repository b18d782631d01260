"""cnnlab: train and use convolutional networks for small images, fast, on a CPU.

The same API the ``cnnlab`` command uses, for notebooks and scripts::

    import cnnlab

    ds = cnnlab.load_dataset("mnist", val_split=0.1)
    run = cnnlab.train(model="cnn", epochs=2, dataset=ds, out="runs/mine")
    print(run.metrics["test_error"])
    for p in cnnlab.predict_files("runs/mine", ["my_digit.png"]):
        print(p.label, p.confidence)
"""

# Imported eagerly, not lazily: `train` and `evaluate` are also submodule names, and importing
# a submodule binds its name on the package; these imports bind the functions after that.
from cnnlab.data import DATASETS, Dataset, describe, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate, evaluate_model
from cnnlab.models import MODELS, build_model, count_parameters, flops_per_image
from cnnlab.predict import predict_files, predict_images
from cnnlab.reproduce import reproduce_article
from cnnlab.runs import ModelInfo, load_model, save_model
from cnnlab.train import TrainConfig, TrainResult, train

__version__ = "0.1.0"
__all__ = [
    "DATASETS", "MODELS", "CnnlabError", "Dataset", "ModelInfo", "TrainConfig", "TrainResult", "build_model",
    "count_parameters", "describe", "evaluate", "evaluate_model", "flops_per_image", "load_dataset", "load_model",
    "predict_files", "predict_images", "reproduce_article", "save_model", "train",
]
