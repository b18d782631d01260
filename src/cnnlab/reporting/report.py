"""A run's pictures and its self-contained ``report.html`` (every PNG embedded, nothing fetched).

    samples.png      test images with their labels
    curves.png       loss and accuracy per epoch, train against validation
    confusion.png    true against predicted class on the test set
    per_class.png    test accuracy of each class
    mistakes.png     the most confidently wrong test images
    why_wrong.png    the same, each beside its saliency for the wrong class (Captum)
    filters.png      the first conv layer's kernels
    feature_maps.png one test image after each conv layer

``cnnlab train`` writes them all; ``cnnlab report RUN`` makes them again from the saved model.
"""

from __future__ import annotations

import base64
import copy
import html
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data import Dataset, load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, read_json, write_csv, write_json
from cnnlab.models.attribution import attribute, conv_activations, first_conv
from cnnlab.models.files import (
    MODEL_FILE,
    MODEL_META,
    SPEC_ARCHITECTURE,
    ModelInfo,
    load_model,
    save_model,
    save_weights,
)
from cnnlab.models.inference import background_of, images_logits, to_input
from cnnlab.models.summary import summarize

PICTURES = {
    "samples.png": "Test images",
    "curves.png": "Training curves",
    "confusion.png": "Confusion matrix",
    "per_class.png": "Accuracy per class",
    "mistakes.png": "Most confidently wrong",
    "why_wrong.png": "Why it was wrong: the pixels behind each wrong answer (saliency)",
    "filters.png": "First-layer filters",
    "feature_maps.png": "Feature maps",
}
OTHER_EPOCH_FILES = ("last.safetensors", "best.safetensors")  # the epoch not kept (cnnlab.training.early_stopping)
# Every file a training writes at its end (one of OTHER_EPOCH_FILES where it held out validation images);
# report.html is its last, so a run folder holding it is complete.
RUN_FILES = (MODEL_FILE, MODEL_META, *OTHER_EPOCH_FILES, "history.csv", "points.csv", "metrics.json", "config.json",
             "summary.txt",
             *PICTURES, "report.html")
MISTAKES = 24
WHY_WRONG = 12  # of those, the first shown with their saliency


@dataclass
class RunRecord:
    """What a finished training leaves beside its model: the per-epoch ``history``, the test
    ``metrics``, every option in ``config``, and a short run's ``points`` taken during its epochs."""

    history: list[dict[str, float]]
    metrics: dict[str, Any]
    config: dict[str, Any]
    points: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, run: Path) -> RunRecord:
        return cls(_read_csv(run / "history.csv"), _read_json(run / "metrics.json"), _read_json(run / "config.json"),
                   _read_csv(run / "points.csv"))


@dataclass
class TestSet:
    """uint8 test ``images`` ``(N, H, W)`` or ``(N, H, W, 3)``, their ``labels`` ``(N,)``, and the model's ``logits``
    ``(N, classes)`` as the metrics were computed (None: scored again when needed)."""

    images: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor | None = None


def write_run_files(out: Path, model: torch.nn.Module, info: ModelInfo, record: RunRecord,
                    device: torch.device, other: tuple[str, dict[str, torch.Tensor]] | None = None) -> nn.Module:
    """A trained run's files but its pictures and report: model files (and ``other``, the weights
    of the epoch not kept, as ``(file name, state_dict)``), history (and a short run's points),
    metrics, config (plus the device and versions used) and the summary. Returns the model on the
    CPU (a copy where it was elsewhere: the caller keeps its GPU model)."""
    save_model(out, model, info)
    if other is not None:
        save_weights(out / other[0], other[1])
    write_csv(out / "history.csv", record.history)
    if record.points:
        write_csv(out / "points.csv", record.points)
    write_json(out / "metrics.json", record.metrics)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    write_json(out / "config.json", {**record.config, "device_used": str(device), "versions": versions})
    on_cpu = model if device.type == "cpu" else copy.deepcopy(model).cpu()  # the caller keeps its GPU model
    write_summary(out, on_cpu, info, record.config.get("batch_size", 128))
    return on_cpu


def train_loss_label(config: dict[str, Any]) -> str:
    """What the plotted training loss is, from the run's options."""
    parts = (["label-smoothed"] if config.get("label_smoothing") else []) + (
        ["augmented batches"] if config.get("augment", "none") != "none" else [])
    return f"train loss ({', '.join(parts)})" if parts else "train loss"


def write_summary(run: Path, model: nn.Module, info: ModelInfo, batch_size: int) -> None:
    """``run/summary.txt``: the network's table, as ``cnnlab summary RUN`` prints it."""
    name = info.spec if info.architecture == SPEC_ARCHITECTURE else info.architecture
    table = summarize(model, name, info.in_channels, info.image_size, batch_size, info.spec)
    atomic_write_text(run / "summary.txt", f"{table}\n")


def write_pictures(run: Path, model: nn.Module, info: ModelInfo, record: RunRecord, test: TestSet) -> None:
    """Write every picture of :data:`PICTURES` into ``run``.

    Curves, confusion matrix and per-class accuracy come from the run's ``record`` (so they match
    ``metrics.json``, test-time augmentation included); the rest need the model and the test set.
    """
    from cnnlab.reporting import plots  # matplotlib loads only when pictures are drawn

    history, metrics = record.history, record.metrics
    test_images, test_labels, test_logits = test.images, test.labels, test.logits
    names = info.class_names
    if history:
        plots.training_curves(history, run / "curves.png", f"{info.architecture} on {info.dataset}",
                              record.points, train_loss_label(record.config))
    plots.confusion_matrix(metrics["confusion_matrix"], names, run / "confusion.png",
                           f"Confusion matrix, test error {100 * metrics['test_error']:.2f}%")
    plots.per_class_accuracy(metrics["per_class_accuracy"], run / "per_class.png")
    plots.sample_grid(test_images[:32], test_labels[:32], names, run / "samples.png", "First 32 test images")
    # Scored as the metrics were (test-time augmentation included), so the mistakes shown are the counted ones.
    if test_logits is None:
        test_logits = images_logits(model, info, test_images, tta=bool(metrics.get("tta")))
    probabilities = test_logits.softmax(1)
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != test_labels).flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][:MISTAKES]
    plots.labelled_mistakes(test_images[wrong], [names[int(k)] for k in test_labels[wrong]],
                            [names[int(k)] for k in predicted[wrong]], confidence[wrong].tolist(),
                            run / "mistakes.png")
    why_wrong(model, info, test_images[wrong[:WHY_WRONG]], test_labels[wrong[:WHY_WRONG]],
              predicted[wrong[:WHY_WRONG]], run / "why_wrong.png")
    maps = conv_activations(model, to_input(test_images[:1], info.mean, info.std))
    if maps:
        plots.conv_filters(first_conv(model).weight, run / "filters.png")
        plots.feature_maps(test_images[0], [(name, out[0]) for name, out in maps], run / "feature_maps.png")


def why_wrong(model: nn.Module, info: ModelInfo, images: torch.Tensor, labels: torch.Tensor,
              predicted: torch.Tensor, path: Path) -> None:
    """``why_wrong.png``: wrong answers, each beside the saliency of the class the model gave."""
    from cnnlab.reporting.inside import why_wrong as draw

    inputs = to_input(images, info.mean, info.std)
    heats = (attribute(model, inputs, predicted, "saliency", background_of(info.mean, info.std)) if len(images)
             else torch.zeros(0, info.image_size, info.image_size))
    names = info.class_names
    draw(images.numpy(), heats.numpy(), [names[int(k)] for k in labels], [names[int(k)] for k in predicted], path)


def write_html(run: Path) -> Path:
    """``run/report.html``: the run's figures, settings and every picture in the folder, embedded."""
    metrics = _read_json(run / "metrics.json")
    config = _read_json(run / "config.json")
    rows = [("test accuracy", f"{100 * metrics['test_accuracy']:.2f}%"),
            ("test error", f"{100 * metrics['test_error']:.2f}%")]
    rows += [(key, str(config[key])) for key in ("preset", "model", "dataset", "epochs", "batch_size", "augment",
                                                  "seed") if key in config]
    rows += epoch_kept(run, config)
    if start := config.get("started_from"):
        fresh = ", ".join(start.get("fresh", [])) or "none"
        rows.append(("started from", f"{start.get('run')} ({len(start.get('loaded', []))} layers loaded; fresh: "
                                     f"{fresh}){'; loaded layers frozen' if config.get('freeze') else ''}"))
    if "train_seconds" in metrics:
        rows.append(("training seconds", f"{metrics['train_seconds']:.1f}"))
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    figures = "\n".join(
        f'<figure><figcaption>{html.escape(caption)}</figcaption><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{base64.b64encode((run / name).read_bytes()).decode()}"></figure>'
        for name, caption in PICTURES.items() if (run / name).is_file())
    title = html.escape(f"cnnlab run: {config.get('model', '')} on {config.get('dataset', '')}")
    layers = (f"<h2>Layers</h2><pre>{html.escape((run / 'summary.txt').read_text())}</pre>"
              if (run / "summary.txt").is_file() else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}
th{{text-align:left;padding-right:1.5em}}figure{{margin:2em 0}}img{{max-width:100%}}
figcaption{{font-weight:bold;margin-bottom:.5em}}pre{{overflow-x:auto}}</style></head>
<body><h1>{title}</h1><table>{table}</table>
{layers}
{figures}
</body></html>
"""
    atomic_write_text(run / "report.html", page)
    return run / "report.html"


def epoch_kept(run: Path, config: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's row saying which epoch the model is and where the other is, for a run of
    several epochs that held out validation images (none otherwise)."""
    history = _read_csv(run / "history.csv") if (run / "history.csv").is_file() else []
    kept = [row for row in history if row.get("kept")]
    if len(history) < 2 or not kept or "val_loss" not in kept[0]:
        return []
    keep = config.get("keep", "best")
    other = next((name for name in OTHER_EPOCH_FILES if (run / name).is_file()), None)
    why = "the last (--keep last)" if keep == "last" else "the lowest val_loss"
    text = f"epoch {int(kept[0]['epoch'])} of {len(history)}, {why} ({kept[0]['val_loss']:.4f})"
    if other:
        text += f"; the {other.split('.')[0]} epoch's weights are in {other}"
    return [("kept epoch", text)]


def rebuild(run: str | Path, dataset: Dataset | None = None, data_dir: str | Path | None = None) -> Path:
    """Make a run's pictures and ``report.html`` again from its saved model and test data."""
    run = Path(run)
    if not (run / "metrics.json").is_file():
        raise CnnlabError(f"{run}: not a run directory (no metrics.json); give a folder made by 'cnnlab train'")
    model, info = load_model(run)
    from cnnlab.handwriting.digit import folder_reader  # scipy loads only where a folder is read

    data = dataset or load_dataset(info.dataset or "mnist", data_dir=data_dir, image_size=info.image_size,
                                   read_image=folder_reader(info),
                                   channels=info.in_channels)
    write_summary(run, model, info, _read_json(run / "config.json").get("batch_size", 128))
    write_pictures(run, model, info, RunRecord.read(run), TestSet(data.test_images, data.test_labels))
    return write_html(run)


def _read_json(path: Path) -> dict[str, Any]:
    """One of the run's JSON files, bounded (cnnlab.files.read_json): an object, or a CnnlabError."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise CnnlabError(f"{path}: not a JSON object, as cnnlab writes it; train the run again")
    return value


def _read_csv(path: Path) -> list[dict[str, float]]:
    import csv

    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]
