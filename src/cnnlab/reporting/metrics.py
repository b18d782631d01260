"""Scoring a model: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import DATASETS, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo, load_model
from cnnlab.models.inference import images_logits


def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy loss, accuracy)`` as Python floats."""
    labels = labels.to(logits.device)
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """Test metrics as saved in ``metrics.json``.

    Returns a dict with ``test_loss``, ``test_accuracy`` (a fraction), ``test_error`` (a
    fraction), ``per_class_accuracy`` (class name -> fraction) and ``confusion_matrix``
    (rows: true class, columns: predicted class, counts).
    """
    labels = labels.to(logits.device)
    loss, accuracy = score(logits, labels)
    n = len(class_names)
    confusion = torch.bincount(labels * n + logits.argmax(1), minlength=n * n).reshape(n, n).cpu()
    totals = confusion.sum(1).clamp(min=1)
    per_class = (confusion.diag().float() / totals).tolist()
    return {
        "test_loss": loss,
        "test_accuracy": accuracy,
        "test_error": 1 - accuracy,
        "per_class_accuracy": dict(zip(class_names, per_class, strict=True)),
        "confusion_matrix": confusion.tolist(),
    }


def chance_level_warning(accuracy: float, num_classes: int, lr: float | None) -> str | None:
    """A plain sentence when a test ``accuracy`` (a fraction) is near guessing, else None.

    Near means within a tenth of the way from chance (1 / ``num_classes``) to perfect: under
    19% for 10 classes. A run that ends there learned nothing, most often from a learning rate
    ``lr`` (None: the optimizer's default) too high for the network.
    """
    chance = 1 / num_classes
    if accuracy >= chance + 0.1 * (1 - chance):
        return None
    rate = f"the learning rate {lr:g} is likely too high" if lr else "the learning rate is likely wrong"
    return (f"accuracy {100 * accuracy:.1f}% is chance level for {num_classes} classes: {rate}; "
            "try a learning rate (--lr) a tenth of it")


def evaluate_model(
    model: nn.Module, info: ModelInfo, images: torch.Tensor, labels: torch.Tensor,
    device: str | torch.device = "cpu", tta: bool = False,
) -> dict[str, Any]:
    """Metrics of a trained model on uint8 images ``(N, H, W)`` and int labels ``(N,)``;
    ``tta``: average over shifted copies (:func:`predict_logits_tta`)."""
    return classification_metrics(images_logits(model, info, images, device, tta), labels, info.class_names)


def confusion_text(matrix: list[list[int]], class_names: list[str], most: int = 20) -> str:
    """The confusion matrix as a table: a row per true class, a column per predicted class (the
    diagonal is right). More than ``most`` classes are left to the picture and ``--json``."""
    if len(class_names) > most:
        return (f"Confusion matrix: {len(class_names)} classes, too many to print; see confusion.png in the run, "
                "or --json")
    names = [str(n)[:12] for n in class_names]
    width = max(max(len(n) for n in names), *(len(f"{v:,}") for row in matrix for v in row))
    left = max(len("true"), *(len(n) for n in names))
    lines = ["Confusion matrix (rows: true class, columns: predicted):",
             " " * left + "  " + " ".join(n.rjust(width) for n in names)]
    lines += [name.rjust(left) + "  " + " ".join(f"{v:,}".rjust(width) for v in row)
              for name, row in zip(names, matrix, strict=True)]
    return "\n".join(lines)


def shown(names: list) -> str:
    """Class names for a message: the first 6, then how many more."""
    names = [str(n) for n in names]
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def evaluate(
    model_path: str | Path, dataset: str | Path | None = None, data_dir: str | Path | None = None,
    limit: int | None = None, tta: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on the test split of ``dataset`` (default: the one it was trained on),
    with test-time augmentation if ``tta``."""
    model, info = load_model(model_path)
    name = str(dataset or info.dataset or "mnist")
    if name in DATASETS and DATASETS[name].class_names:  # a named dataset's classes are known before it loads
        check_same_classes(info, name, list(DATASETS[name].class_names))
    from cnnlab.handwriting.digit import folder_reader  # scipy loads only where a folder is read

    ds = load_dataset(name, data_dir=data_dir, limit=limit, image_size=info.image_size, channels=info.in_channels,
                      read_image=folder_reader(info))  # a folder's photos read as predict reads them
    check_same_classes(info, ds.name, ds.class_names)  # loaded at the model's size: only the classes can differ
    return evaluate_model(model, info, ds.test_images, ds.test_labels, tta=tta)


def check_same_classes(info: ModelInfo, name: str, class_names: list) -> None:
    """Refuse data whose classes are not the model's, naming both."""
    if [str(c) for c in class_names] != [str(c) for c in info.class_names]:
        raise CnnlabError(f"the model knows {len(info.class_names)} classes ({shown(info.class_names)}) but "
                          f"'{name}' has {len(class_names)} ({shown(class_names)}); evaluate it on data of its "
                          f"classes{f', such as {info.dataset}' if info.dataset else ''}")
