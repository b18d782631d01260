"""Predicting labels for the user's images (files, folders, or a pixel CSV)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from cnnlab.data.user import IMAGE_SUFFIXES, read_pixel_csv
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import predict_logits, to_input
from cnnlab.preprocess import load_for_model
from cnnlab.runs import ModelInfo, load_model

BATCH = 256


@dataclass
class Prediction:
    """One image's answer: the label, its probability, and the ``top`` (label, probability) list."""

    path: str
    label: str
    confidence: float
    top: list[tuple[str, float]]

    def to_json(self) -> dict:
        return {"path": self.path, "label": self.label, "confidence": self.confidence,
                "top": [[label, p] for label, p in self.top]}


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders as the images (and CSVs) inside them, recursively and sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {".csv"})
            if not inside:
                raise CnnlabError(f"{path}: no images in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise CnnlabError(f"{path}: no such file or folder")
    return found


def _images(files: list[Path], image_size: int) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, uint8 image)`` for every image, a CSV contributing one per row."""
    for path in files:
        if path.suffix.lower() == ".csv":
            images, _ = read_pixel_csv(path)
            if images.shape[1:] != (image_size, image_size):
                raise CnnlabError(f"{path}: holds {images.shape[1]}x{images.shape[2]} images, "
                                  f"the model expects {image_size}x{image_size}")
            for row, image in enumerate(images):
                yield f"{path}:{row + 1}", torch.from_numpy(image)
        else:
            yield str(path), load_for_model(path, image_size)


def predict_images(model: torch.nn.Module, info: ModelInfo, images: torch.Tensor, top_k: int = 3) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Probabilities for uint8 images ``(N, H, W)``: returns ``(top probabilities, top indices)``."""
    probs = predict_logits(model, to_input(images, info.mean, info.std)).softmax(1)
    return probs.topk(min(top_k, probs.shape[1]), dim=1)


def predict_files(model_path: str | Path, paths: list[str | Path], top_k: int = 3,
                  progress: bool | None = None) -> list[Prediction]:
    """Predict every image in ``paths`` (files, folders, pixel CSVs) with a saved model."""
    model, info = load_model(model_path)
    files = expand_inputs(paths)
    results: list[Prediction] = []
    names: list[str] = []
    batch: list[torch.Tensor] = []
    bar = tqdm(desc="predicting", unit="image", leave=False,
               disable=not progress if progress is not None else None)

    def flush() -> None:
        values, indices = predict_images(model, info, torch.stack(batch), top_k)
        for name, vals, idxs in zip(names, values.tolist(), indices.tolist(), strict=True):
            top = [(info.class_names[i], round(v, 6)) for v, i in zip(vals, idxs, strict=True)]
            results.append(Prediction(name, top[0][0], top[0][1], top))
        names.clear()
        batch.clear()

    for name, image in _images(files, info.image_size):
        names.append(name)
        batch.append(image)
        if len(batch) == BATCH:
            flush()
        bar.update(1)
    if batch:
        flush()
    bar.close()
    return results
