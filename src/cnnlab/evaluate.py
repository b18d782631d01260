"""Scoring a model: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.runs import ModelInfo, load_model

EVAL_BATCH = 1000


def to_input(images: torch.Tensor, mean: float, std: float, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images ``(N, H, W)`` -> normalised float ``(N, 1, H, W)`` in channels_last memory.

    channels_last lets oneDNN pick its fastest conv kernels on CPU (1.45-2.2x per training step here).
    """
    x = images.to(device).unsqueeze(1).float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits ``(N, classes)`` for normalised inputs ``(N, 1, H, W)``, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return out.float()


TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (down, right) in pixels


def shift_images(inputs: torch.Tensor, down: int, right: int, background: float) -> torch.Tensor:
    """Normalised images ``(N, C, H, W)`` moved by whole pixels; the uncovered edge is ``background``."""
    if down == right == 0:
        return inputs
    height, width = inputs.shape[-2:]
    pad = max(abs(down), abs(right))
    padded = F.pad(inputs, (pad, pad, pad, pad), value=background)
    top, left = pad - down, pad - right
    return padded[:, :, top : top + height, left : left + width].contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits_tta(model: nn.Module, inputs: torch.Tensor, background: float,
                       shifts: tuple[tuple[int, int], ...] = TTA_SHIFTS) -> torch.Tensor:
    """Test-time augmentation: log of the mean softmax over the image and its one-pixel shifts.

    Args:
        inputs: normalised images ``(N, 1, H, W)``.
        background: the normalised value of an empty pixel, ``-mean / std``.
        shifts: ``(down, right)`` offsets; the default is the image and 4 one-pixel moves (5x the work).
    Returns:
        ``(N, classes)`` log-probabilities, usable wherever logits are.
    """
    probabilities = sum(predict_logits(model, shift_images(inputs, *s, background)).softmax(1) for s in shifts)
    return (probabilities / len(shifts)).log()


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


def images_logits(model: nn.Module, info: ModelInfo, images: torch.Tensor, device: str | torch.device = "cpu",
                  tta: bool = False) -> torch.Tensor:
    """Logits ``(N, classes)`` for uint8 images ``(N, H, W)``, with test-time augmentation if ``tta``."""
    inputs = to_input(images, info.mean, info.std, device)
    model = model.to(device)
    return predict_logits_tta(model, inputs, -info.mean / info.std) if tta else predict_logits(model, inputs)


def evaluate(
    model_path: str | Path, dataset: str | Path | None = None, data_dir: str | Path | None = None,
    limit: int | None = None, tta: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on the test split of ``dataset`` (default: the one it was trained on),
    with test-time augmentation if ``tta``."""
    model, info = load_model(model_path)
    ds = load_dataset(dataset or info.dataset or "mnist", data_dir=data_dir, limit=limit, image_size=info.image_size)
    if ds.num_classes != len(info.class_names) or ds.image_size != info.image_size:
        raise CnnlabError(
            f"the model expects {len(info.class_names)} classes of {info.image_size}x{info.image_size} images "
            f"but '{ds.name}' has {ds.num_classes} classes of {ds.image_size}x{ds.image_size}"
        )
    return evaluate_model(model, info, ds.test_images, ds.test_labels, tta=tta)
