"""``cnnlab.load(run)``: a trained model as one object that predicts, evaluates, explains, describes
itself and exports, as a Keras reader expects of ``keras.models.load_model``::

    model = cnnlab.load("runs/fast-mnist-seed0")
    model                                    # name, architecture, classes, parameters, test accuracy
    model.predict("seven.jpg")[0].label      # photos, folders, pixel CSVs, or uint8 arrays
    model.evaluate()["test_accuracy"]        # on the test set it was trained for, or another
    model.explain("seven.jpg", "saliency")   # the heatmap and every layer's activations
    print(model.summary())                   # layer by layer, as Keras' summary
    model.export("exported/")                # ONNX

Every method answers as the command of its name does: through the one
:class:`~cnnlab.using.predictor.Predictor` (the same preprocessing and shifts).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.models.attribution import check_methods
from cnnlab.models.files import MODEL_FILE, ModelInfo
from cnnlab.models.registry import count_parameters
from cnnlab.using.explanation import Explanation, class_index, explain_image, usable_methods
from cnnlab.using.predict import predict_files
from cnnlab.using.prediction import Prediction
from cnnlab.using.predictor import Predictor

if TYPE_CHECKING:
    from cnnlab.training.loop import TrainResult

Images = str | Path | list[str | Path] | np.ndarray


class Model:
    """A trained model loaded from its run directory (or ``model.safetensors``): see the module."""

    def __init__(self, path: str | Path | None, predictor: Predictor) -> None:
        self.path, self.predictor = (Path(path) if path is not None else None), predictor

    @property
    def info(self) -> ModelInfo:
        """What ``model.json`` says: classes, input size, normalisation, dataset."""
        return self.predictor.info

    @property
    def network(self):
        """The ``torch.nn.Module`` itself, in eval mode: logits ``(N, classes)`` for normalised ``(N, C, H, W)``."""
        return self.predictor.model

    @property
    def classes(self) -> list[str]:
        return self.info.class_names

    def __repr__(self) -> str:
        accuracy = f", test accuracy {self.info.test_accuracy:.2%}" if self.info.test_accuracy is not None else ""
        side = self.info.image_size
        colour = "RGB" if self.info.in_channels == 3 else "grey"
        return (f"<cnnlab model {self.path}: {self.info.architecture}, {len(self.classes)} classes of {side}x{side} "
                f"{colour}, {count_parameters(self.network):,} parameters{accuracy}>")

    def predict(self, images: Images, number: bool | None = False, top_k: int = 3) -> list[Prediction]:
        """One :class:`~cnnlab.using.prediction.Prediction` per image.

        ``images``: a path or a list of them (image files, folders, pixel CSVs), prepared as
        ``cnnlab predict`` prepares them; or uint8 arrays already at the model's size, one
        ``(H, W)`` / ``(H, W, 3)`` image or a batch ``(N, H, W)`` / ``(N, H, W, 3)``.
        ``number``: read each photo as a number of several digits (None: decide for each).
        """
        if isinstance(images, np.ndarray):
            batch = images[None] if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] == 3) else images
            prepared = [self.predictor.prepare(np.ascontiguousarray(image, dtype=np.uint8)) for image in batch]
            return self.predictor.answer(prepared, top_k)
        paths = images if isinstance(images, list) else [images]
        return predict_files(self.predictor, paths, top_k, number, progress=False)

    def evaluate(self, dataset: str | Path | None = None, data_dir: str | Path | None = None,
                 limit: int | None = None, tta: bool = False) -> dict[str, Any]:
        """The metrics of ``cnnlab evaluate`` on the test split of ``dataset`` (default: the model's own)."""
        from cnnlab.reporting.metrics import evaluate

        return evaluate(self.saved(), dataset, data_dir, limit, tta)

    def explain(self, image: str | Path | np.ndarray, method: str = "integrated-gradients",
                target: str | int | None = None) -> Explanation:
        """Why the model answers ``image`` (a photo's path, or a prepared uint8 array) as it does: the
        answer, one heatmap by ``method`` (saliency, integrated-gradients, occlusion, gradcam), and
        every layer's activations (``cnnlab explain``, without the picture)."""
        name = str(image) if isinstance(image, str | Path) else "the image"
        prepared = self.predictor.prepare(np.ascontiguousarray(image, dtype=np.uint8)
                                          if isinstance(image, np.ndarray) else image, name=name)
        methods = usable_methods(check_methods([method]), self.network, all_asked=False, name=self.info.architecture)
        return explain_image(self.network, self.info, name, prepared.images[0], methods,
                             class_index(target, self.classes))

    def summary(self, batch_size: int | None = None):
        """The table ``cnnlab summary`` prints for this run: ``print(model.summary())``."""
        from cnnlab.models.summary import summary

        return summary(self.saved(), batch_size=batch_size)

    def export(self, out: str | Path | None = None) -> Path:
        """Write ``model.onnx`` and ``model.json`` into ``out`` (default: the run directory); returns the
        ``.onnx`` path (``cnnlab export``; needs the ``onnx`` extra)."""
        from cnnlab.using.export import export_onnx

        return export_onnx(self.saved(), out)

    def saved(self) -> Path:
        """The run directory or model file, which evaluating, describing and exporting read."""
        if self.path is None:
            raise CnnlabError("this training saved no run (out=None); train with out='runs/NAME' to evaluate, "
                              "summarise or export it")
        return self.path


class TrainedModel(Model):
    """What ``cnnlab.train`` returns: the trained :class:`Model` (predict, evaluate, explain, summary,
    export), which also has the training's ``history``, ``metrics``, ``points``, ``warning``, ``out``
    and ``model`` (the network as trained), as :class:`~cnnlab.training.loop.TrainResult` has them."""

    def __init__(self, result: TrainResult) -> None:
        # The network as trained, which is what its run saved: not read back from the files (a network of
        # the user's own class could not be rebuilt from them). A copy on the CPU when it trained elsewhere.
        on_cpu = all(p.device.type == "cpu" for p in result.model.parameters())
        network = result.model if on_cpu else copy.deepcopy(result.model).cpu()
        saved = result.out is not None and (Path(result.out) / MODEL_FILE).is_file()  # not by another torchrun rank
        super().__init__(result.out if saved else None, Predictor(network, result.info))
        self.result = result

    def __getattr__(self, name: str) -> Any:
        if name == "result":  # not set yet (copying, pickling): no recursion
            raise AttributeError(name)
        return getattr(self.result, name)


def train(*args: Any, **kwargs: Any) -> TrainedModel:
    """:func:`cnnlab.training.loop.train`, with the same arguments, its result as a :class:`TrainedModel`."""
    from cnnlab.training import train as train_run

    return TrainedModel(train_run(*args, **kwargs))


def load(run: str | Path) -> Model:
    """A trained model that predicts, evaluates, explains, summarises and exports: ``cnnlab.load(run)``,
    from a run directory or its ``model.safetensors`` (loading runs no code)."""
    return Model(run, Predictor.load(run))
