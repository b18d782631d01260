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

# Every name loads on first use (PEP 562), so `import cnnlab` and `cnnlab --help` pay for no PyTorch
# (1.5 s), scipy, Captum, matplotlib or FastAPI until a name that needs them is asked for.
_LAZY = {  # name -> (module, attribute)
    "DATASETS": ("cnnlab.data", "DATASETS"), "Dataset": ("cnnlab.data", "Dataset"),
    "describe": ("cnnlab.data", "describe"), "load_dataset": ("cnnlab.data", "load_dataset"),
    "CnnlabError": ("cnnlab.errors", "CnnlabError"),
    "MODELS": ("cnnlab.models", "MODELS"), "ModelInfo": ("cnnlab.models", "ModelInfo"),
    "build": ("cnnlab.models", "build"), "build_model": ("cnnlab.models", "build_model"),
    "count_parameters": ("cnnlab.models", "count_parameters"), "flops_per_image": ("cnnlab.models", "flops_per_image"),
    "load_model": ("cnnlab.models", "load_model"), "save_model": ("cnnlab.models", "save_model"),
    "evaluate": ("cnnlab.reporting.metrics", "evaluate"),
    "evaluate_model": ("cnnlab.reporting.metrics", "evaluate_model"),
    "confusion_text": ("cnnlab.reporting.metrics", "confusion_text"),
    "reproduce_article": ("cnnlab.reproduce", "reproduce_article"),
    "TrainConfig": ("cnnlab.training", "TrainConfig"), "TrainResult": ("cnnlab.training", "TrainResult"),
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
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # asked once: later lookups find it without coming here
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "confusion_text",
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
