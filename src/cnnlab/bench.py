"""``cnnlab bench``: time-to-accuracy of our recipe against faithful ports of the peers' recipes,
all in one run on one machine, and inference speed of every model.

Each recipe trains on the 60,000 training images of MNIST or Fashion-MNIST (the Keras example
holds out 10% for validation, as it does) and is scored on the 10,000 test images after every
epoch. Our presets take their settings for the dataset's kind, as ``cnnlab train`` does; the
peers' recipes run as their authors wrote them, with the dataset swapped (as their users do).
Scoring is outside the timed training loop; the training seconds include whatever the recipe
itself does in its loop, e.g. the per-sample DataLoader of pytorch/examples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.data import Dataset
from cnnlab.models.inference import predict_logits, to_input
from cnnlab.models.registry import MODELS, build_model
from cnnlab.reporting.metrics import score
from cnnlab.reproduce import ARTICLE_SETTINGS  # the article's recipe, one definition for both
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import TrainResult, train
from cnnlab.training.presets import PRESETS, Preset
from cnnlab.training.system import machine_description, pick_threads

TARGET_ACCURACY = 0.99
TIME_TARGETS = {"digits": 0.99, "clothing": 0.90}  # the "seconds to X%" column's X, by the data's kind
BENCH_DATASETS = {"mnist": "digits", "fashion-mnist": "clothing"}  # what cnnlab bench runs on, and their kinds
BENCH_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# pytorch/examples' transforms.Normalize((0.1307,), (0.3081,))
EXAMPLE_MEAN, EXAMPLE_STD = 0.1307, 0.3081


@dataclass
class Curve:
    """Test accuracy after each epoch against cumulative training seconds, for one recipe."""

    recipe: str
    description: str
    planned_epochs: int
    seed: int = 0
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    def add(self, epoch_seconds: float, accuracy: float) -> None:
        self.seconds.append((self.seconds[-1] if self.seconds else 0.0) + epoch_seconds)
        self.accuracy.append(accuracy)

    @property
    def capped(self) -> bool:
        return len(self.seconds) < self.planned_epochs

    def seconds_to(self, target: float = TARGET_ACCURACY) -> float | None:  # the first epoch at or above
        """Training seconds until ``target`` was reached; None if never."""
        return next((s for s, a in zip(self.seconds, self.accuracy, strict=True) if a >= target), None)

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "seed": self.seed, "description": self.description,
                "planned_epochs": self.planned_epochs,
                "epochs_run": len(self.seconds), "capped": self.capped, "seconds": self.seconds,
                "test_accuracy": self.accuracy, "seconds_to_99": self.seconds_to()}

    @classmethod
    def from_json(cls, data: dict) -> Curve:
        """The curve :meth:`to_json` wrote."""
        return cls(data["recipe"], data["description"], data["planned_epochs"], data["seed"],
                   list(data["seconds"]), list(data["test_accuracy"]))


def results_file(command: str, results: list[dict], dataset: str = "mnist") -> dict:
    """A benchmark's results with what makes them readable later: when, on what, by which command.

    The docs' performance tables are rendered from such files (``docs/results/``), never retyped.
    """
    import datetime
    from importlib.metadata import version

    return {"date": datetime.date.today().isoformat(), "machine": machine_description(), "command": command,
            "cnnlab": version("cnnlab"), "dataset": dataset, "results": results}


def curves_from_results(data: dict) -> list[Curve]:
    """The curves of a ``bench.json`` that ``cnnlab bench`` wrote."""
    return [Curve.from_json(c) for c in data["results"]]


def _test_accuracy(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    return score(predict_logits(model, inputs), labels)[1]


def _train_recording(ds: Dataset, config: TrainConfig, curve: Curve) -> TrainResult:
    """Train ``config`` on ``ds``, adding each epoch's seconds and plain test accuracy to ``curve``."""

    def record(row, model, to_model_input) -> None:
        curve.add(row["seconds"], _test_accuracy(model, to_model_input(ds.test_images), ds.test_labels))

    return train(replace(config, fit_small_data=False), dataset=ds, progress=False, on_epoch=record)  # as it is


def _preset_runner(name: str) -> Callable[[Dataset, int, Curve, int, int], None]:
    """A preset exactly as ``cnnlab train --preset NAME`` runs it, validation split included.

    Each epoch's point is the plain test accuracy; the last is the run's own final score, as
    ``cnnlab train`` prints it (with test-time augmentation where the preset uses it).
    """

    def run(ds: Dataset, epochs: int, curve: Curve, seed: int, threads: int) -> None:
        config = TrainConfig.from_preset(name, ds.kind, epochs=epochs, seed=seed, threads=threads)
        curve.accuracy[-1] = _train_recording(ds, config, curve).metrics["test_accuracy"]

    return run


def _cnnlab_runner(**settings) -> Callable[[Dataset, int, Curve, int, int], None]:
    """A recipe that is a cnnlab training configuration (the article's, the Keras example):
    ``settings`` on top of plain training, not on top of our defaults (no augmentation)."""

    def run(ds: Dataset, epochs: int, curve: Curve, seed: int, threads: int) -> None:
        config = {"val_split": 0.0, "augment": "none", **settings, "epochs": epochs, "seed": seed, "threads": threads}
        _train_recording(ds, TrainConfig(**config), curve)

    return run


class PerSampleMNIST(torch.utils.data.Dataset):
    """What torchvision's MNIST + ToTensor + Normalize((0.1307,), (0.3081,)) do for each sample:
    a PIL image, converted to a float tensor and normalised, one at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).unsqueeze(0).float().div(255)
        return (tensor - EXAMPLE_MEAN) / EXAMPLE_STD, int(self.labels[index])


def _pytorch_examples(ds: Dataset, epochs: int, curve: Curve, seed: int, threads: int) -> None:
    """pytorch/examples mnist/main.py at its defaults: Adadelta lr 1.0, StepLR gamma 0.7, batch 64."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    loader = torch.utils.data.DataLoader(PerSampleMNIST(ds.train_images, ds.train_labels), batch_size=64,
                                         shuffle=True)
    test_inputs = to_input(ds.test_images, EXAMPLE_MEAN, EXAMPLE_STD)
    model = build_model("pytorch-example", ds.num_classes, ds.image_size)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)  # = the example's log_softmax + nll_loss
            loss.backward()
            optimizer.step()
        scheduler.step()
        curve.add(time.perf_counter() - started, _test_accuracy(model, test_inputs, ds.test_labels))
        print(f"pytorch-examples epoch {epoch}/{epochs}: test accuracy {curve.accuracy[-1]:.4f}, "
              f"{curve.seconds[-1]:.1f}s so far", flush=True)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    epochs: int
    run: Callable[[Dataset, int, Curve, int, int], None]  # (dataset, epochs, curve, seed, threads)
    preset: Preset | None = None  # ours: run over the preset's seeds and checked against its target

    @property
    def seeds(self) -> int:
        return self.preset.seeds if self.preset else 1

    def description_for(self, kind: str) -> str:
        """A preset's description for data of this kind; a peer's own."""
        return self.preset.description_for(kind) if self.preset else self.description

    def epochs_for(self, kind: str) -> int:
        """A preset's epochs for data of this kind; a peer's own."""
        return self.preset.settings_for(kind)["epochs"] if self.preset else self.epochs


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        *(Recipe(p.name, p.description, p.settings["epochs"], _preset_runner(p.name), preset=p)
          for p in PRESETS.values() if p.benched),
        Recipe("pytorch-examples", "pytorch/examples mnist main.py: Adadelta, StepLR, batch 64, per-sample DataLoader",
               14, _pytorch_examples),
        Recipe("keras-convnet", "keras-io mnist_convnet: Adam 1e-3, batch 128, 10% validation split", 15,
               _cnnlab_runner(model="keras-convnet", batch_size=128, optimizer="adam", lr=1e-3, schedule="constant",
                              normalize=False, val_split=0.1, label_smoothing=0.0)),
        Recipe("article-mlp", "the article's MLP: Adam 1e-3, batch 200, pixels 0-1", ARTICLE_SETTINGS["epochs"],
               _cnnlab_runner(model="mlp", **ARTICLE_SETTINGS)),
        Recipe("article-cnn", "the article's CNN as described: Adam 1e-3, batch 200, pixels 0-1",
               ARTICLE_SETTINGS["epochs"], _cnnlab_runner(model="seed-cnn", **ARTICLE_SETTINGS)),
    )
}


def run_bench(ds: Dataset, recipes: list[str] | None = None, peer_epochs: int | None = None,
              seed: int = 1, threads: int | None = None, seeds: int | None = None) -> list[Curve]:
    """Train each recipe on ``ds`` and return its accuracy-against-seconds curves.

    Args:
        ds: the dataset, MNIST or Fashion-MNIST, with no validation split (presets split theirs
            off, as the CLI does).
        recipes: names from :data:`RECIPES` (default: all).
        peer_epochs: cap the peers' epochs (ours always run in full); a capped curve says so.
        seed: the first seed; a preset runs seeds ``seed, seed+1, ...`` (its ``seeds`` of them),
            a peer runs ``seed`` once.
        threads: CPU threads for every recipe alike (default: every core no other cnnlab training uses, chosen once).
        seeds: run each preset this many times instead of its own count (a quick look).
    """
    threads = pick_threads(threads)
    print(f"Every recipe runs with {threads} thread(s)", flush=True)
    curves = []
    for name in recipes or list(RECIPES):
        recipe = RECIPES[name]
        planned = recipe.epochs_for(ds.kind)
        epochs = planned if recipe.preset or peer_epochs is None else min(planned, peer_epochs)
        runs = recipe.seeds if seeds is None or not recipe.preset else seeds
        for run_seed in range(seed, seed + runs):
            description = recipe.description_for(ds.kind)
            curve = Curve(name, description, planned, run_seed)
            print(f"== {name} (seed {run_seed}): {description}, {epochs} of {planned} epochs", flush=True)
            recipe.run(ds, epochs, curve, run_seed, threads)
            curves.append(curve)
    return curves


@dataclass
class Row:
    """One recipe's line of the table: its runs (one per seed) summarised."""

    recipe: str
    runs: list[Curve]
    kind: str = "digits"  # of the dataset: which targets apply

    @property
    def accuracies(self) -> list[float]:
        return [c.accuracy[-1] for c in self.runs]

    @property
    def train_seconds(self) -> float:
        return statistics.median(c.seconds[-1] for c in self.runs)

    @property
    def seconds_to_target(self) -> float | None:
        """Median over seeds of the seconds to :data:`TIME_TARGETS`' accuracy; None if any seed never got there."""
        times = [c.seconds_to(TIME_TARGETS[self.kind]) for c in self.runs]
        return None if None in times else statistics.median(times)

    def verdict(self) -> str:
        """For a preset: whether its target holds (every seed, or the mean, and the median time)."""
        preset = RECIPES[self.recipe].preset
        if preset is None:
            return ""
        target_accuracy, target_seconds = preset.target_for(self.kind)
        accuracy = statistics.mean(self.accuracies) if preset.mean_target else min(self.accuracies)
        met = accuracy >= target_accuracy and self.train_seconds <= target_seconds
        which = "mean" if preset.mean_target else "every seed"
        return f"{'met' if met else 'MISSED'}: {which} >= {100 * target_accuracy:.2f}%, median <= {target_seconds:g} s"


def group_rows(curves: list[Curve], kind: str = "digits") -> list[Row]:
    """The curves grouped by recipe, in the order they ran."""
    rows: dict[str, Row] = {}
    for c in curves:
        rows.setdefault(c.recipe, Row(c.recipe, [], kind)).runs.append(c)
    return list(rows.values())


def bench_columns(kind: str = "digits") -> list[str]:
    """The table's header: its time-to-accuracy columns name the accuracy (99% for digits)."""
    to = f"{100 * TIME_TARGETS[kind]:g}%"
    return ["recipe", "seeds", "epochs", "test acc", "train s", f"s to {to}", "x fast", f"x fast to {to}", "target"]


BENCH_COLUMNS = bench_columns()


def bench_table(curves: list[Curve], kind: str = "digits") -> tuple[list[list[str]], list[str]]:
    """The table's cells, one row per recipe under :func:`bench_columns`, and its footnotes:
    test accuracy (min-max over seeds), median training seconds and seconds to the kind's
    :data:`TIME_TARGETS` accuracy, each time's ratio to the ``fast`` preset, and whether each
    preset's target holds."""
    rows = group_rows(curves, kind)
    fast = next((r for r in rows if r.recipe == "fast"), None)
    cells = []
    for r in rows:
        c = r.runs[0]
        epochs = f"{len(c.seconds)}/{c.planned_epochs}" + ("*" if c.capped else "")
        low, high = min(r.accuracies), max(r.accuracies)
        accuracy = f"{100 * low:.2f}%" if len(r.runs) == 1 else f"{100 * low:.2f}-{100 * high:.2f}%"
        to99, fast_to99 = r.seconds_to_target, fast.seconds_to_target if fast else None
        ratio = f"{r.train_seconds / fast.train_seconds:.1f}x" if fast else "-"
        ratio_99 = "never" if to99 is None else f"{to99 / fast_to99:.1f}x" if fast_to99 else "-"
        cells.append([r.recipe, str(len(r.runs)), epochs, accuracy, f"{r.train_seconds:.1f}",
                      f"{to99:.1f}" if to99 is not None else "never", ratio, ratio_99, r.verdict()])
    notes = [f"train s and s to {100 * TIME_TARGETS[kind]:g}%: medians over the seeds; test acc: lowest-highest seed"]
    if any(c.capped for c in curves):
        notes.append("* capped by --peer-epochs: accuracy and seconds are for the epochs run, not extrapolated")
    return cells, notes


def format_bench(curves: list[Curve], kind: str = "digits") -> str:
    """The table as ``cnnlab bench`` prints it (see :func:`bench_table`)."""
    cells, notes = bench_table(curves, kind)
    widths = [18, 6, 8, 16, 9, 10, 8, 15]  # the recipe left-aligned, the figures right; the target last, free

    def line(row: list[str]) -> str:
        return f"{row[0]:<{widths[0]}}" + "".join(f"{cell:>{w}}" for cell, w in zip(row[1:-1], widths[1:],
                                                                                    strict=True)) + f"  {row[-1]}"

    return "\n".join([line(bench_columns(kind)), *(line(row) for row in cells), *notes])


def inference_speed(names: list[str] | None = None, repeats: int = 5) -> list[dict]:
    """Images per second at batch 1000 and median milliseconds at batch 1, per model, in eval mode."""
    torch.set_num_threads(pick_threads())
    rows = []
    for name in names or list(MODELS):
        model = build_model(name).eval().to(memory_format=torch.channels_last)
        big = torch.randn(1000, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        one = big[:1].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(big)  # warm-up: oneDNN builds its kernels on first use
            big_times = [_timed(model, big) for _ in range(repeats)]
            one_times = [_timed(model, one) for _ in range(20 * repeats)]
        rows.append({"model": name, "images_per_second_batch_1000": 1000 / statistics.median(big_times),
                     "ms_per_image_batch_1": 1000 * statistics.median(one_times)})
    return rows


def _timed(model: torch.nn.Module, x: torch.Tensor) -> float:
    started = time.perf_counter()
    model(x)
    return time.perf_counter() - started


def format_inference(rows: list[dict]) -> str:
    lines = [f"{'model':<21}{'images/s @1000':>15}{'ms @1 (median)':>16}"]
    lines += [f"{r['model']:<21}{r['images_per_second_batch_1000']:>15,.0f}{r['ms_per_image_batch_1']:>16.3f}"
              for r in rows]
    return "\n".join(lines)


def plot_curves(curves: list[Curve], path: str | Path, dataset: str = "mnist") -> Path:
    """Test accuracy against training seconds, one line per recipe (its first seed), log-scaled time."""
    from cnnlab.reporting.plots import accuracy_vs_seconds

    first = {r.recipe: (r.runs[0].seconds, r.runs[0].accuracy) for r in group_rows(curves)}
    return accuracy_vs_seconds(first, path, TIME_TARGETS[BENCH_DATASETS[dataset]], BENCH_TITLES[dataset])
