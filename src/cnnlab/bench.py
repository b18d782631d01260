"""``cnnlab bench``: time-to-accuracy of our recipe against faithful ports of the peers' recipes,
all in one run on one machine, and inference speed of every model.

Each recipe trains on the 60,000 MNIST training images (the Keras example holds out 10% for
validation, as it does) and is scored on the 10,000 test images after every epoch. Scoring is
outside the timed training loop; the training seconds include whatever the recipe itself does
in its loop, e.g. the per-sample DataLoader of pytorch/examples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.data import Dataset
from cnnlab.evaluate import predict_logits, score, to_input
from cnnlab.models import MODELS, build_model
from cnnlab.system import pick_threads
from cnnlab.train import TrainConfig, train

TARGET_ACCURACY = 0.99
# pytorch/examples' transforms.Normalize((0.1307,), (0.3081,))
EXAMPLE_MEAN, EXAMPLE_STD = 0.1307, 0.3081


@dataclass
class Curve:
    """Test accuracy after each epoch against cumulative training seconds, for one recipe."""

    recipe: str
    description: str
    planned_epochs: int
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)

    def add(self, epoch_seconds: float, accuracy: float) -> None:
        self.seconds.append((self.seconds[-1] if self.seconds else 0.0) + epoch_seconds)
        self.accuracy.append(accuracy)

    @property
    def capped(self) -> bool:
        return len(self.seconds) < self.planned_epochs

    def seconds_to(self, target: float = TARGET_ACCURACY) -> float | None:
        """Training seconds until the first epoch at or above ``target``; None if never."""
        return next((s for s, a in zip(self.seconds, self.accuracy, strict=True) if a >= target), None)

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "description": self.description, "planned_epochs": self.planned_epochs,
                "epochs_run": len(self.seconds), "capped": self.capped, "seconds": self.seconds,
                "test_accuracy": self.accuracy, "seconds_to_99": self.seconds_to()}


def _test_accuracy(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    return score(predict_logits(model, inputs), labels)[1]


def _cnnlab_runner(**settings) -> Callable[[Dataset, int, Curve, int, int], None]:
    """A recipe that is a cnnlab training configuration (ours, the article's, the Keras example)."""

    def run(ds: Dataset, epochs: int, curve: Curve, seed: int, threads: int) -> None:
        def record(row, model, to_model_input) -> None:
            curve.add(row["seconds"], _test_accuracy(model, to_model_input(ds.test_images), ds.test_labels))

        config = {"val_split": 0.0, **settings, "epochs": epochs, "seed": seed, "threads": threads}
        train(TrainConfig(**config), dataset=ds, progress=False, on_epoch=record)

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


ARTICLE = dict(batch_size=200, optimizer="adam", lr=1e-3, schedule="constant", normalize=False)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    epochs: int
    run: Callable[[Dataset, int, Curve, int, int], None]  # (dataset, epochs, curve, seed, threads)
    ours: bool = False


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("cnnlab", "cnnlab train defaults: cnn, Adam one-cycle 5e-3, batch 256", 3,
               _cnnlab_runner(model="cnn"), ours=True),
        Recipe("pytorch-examples", "pytorch/examples mnist main.py: Adadelta, StepLR, batch 64, per-sample DataLoader",
               14, _pytorch_examples),
        Recipe("keras-convnet", "keras-io mnist_convnet: Adam 1e-3, batch 128, 10% validation split", 15,
               _cnnlab_runner(model="keras-convnet", batch_size=128, optimizer="adam", lr=1e-3, schedule="constant",
                              normalize=False, val_split=0.1)),
        Recipe("article-mlp", "the article's MLP: Adam 1e-3, batch 200, pixels 0-1", 10,
               _cnnlab_runner(model="mlp", **ARTICLE)),
        Recipe("article-cnn", "the article's CNN as described: Adam 1e-3, batch 200, pixels 0-1", 10,
               _cnnlab_runner(model="seed-cnn", **ARTICLE)),
    )
}


def run_bench(ds: Dataset, recipes: list[str] | None = None, peer_epochs: int | None = None,
              seed: int = 0, threads: int | None = None) -> list[Curve]:
    """Train each recipe on ``ds`` and return its accuracy-against-seconds curve.

    Args:
        ds: the dataset (MNIST with no validation split).
        recipes: names from :data:`RECIPES` (default: all).
        peer_epochs: cap the peers' epochs (ours always run in full); a capped curve says so.
        seed: the seed of every run.
        threads: CPU threads for every recipe alike (default: one per free core, chosen once).
    """
    threads = pick_threads(threads)
    print(f"Every recipe runs with {threads} thread(s)", flush=True)
    curves = []
    for name in recipes or list(RECIPES):
        recipe = RECIPES[name]
        epochs = recipe.epochs if recipe.ours or peer_epochs is None else min(recipe.epochs, peer_epochs)
        curve = Curve(name, recipe.description, recipe.epochs)
        print(f"== {name}: {recipe.description}, {epochs} of {recipe.epochs} epochs", flush=True)
        recipe.run(ds, epochs, curve, seed, threads)
        curves.append(curve)
    return curves


def format_bench(curves: list[Curve]) -> str:
    """The table: final accuracy, training seconds, seconds to 99%, and ratios to ours."""
    ours = next((c for c in curves if RECIPES[c.recipe].ours), None)
    lines = [f"{'recipe':<18}{'epochs':>8}{'test acc':>10}{'train s':>10}{'s to 99%':>10}"
             f"{'x ours (train)':>16}{'x ours (to 99%)':>17}"]
    for c in curves:
        epochs = f"{len(c.seconds)}/{c.planned_epochs}" + ("*" if c.capped else "")
        to99 = c.seconds_to()
        ratio_train = f"{c.seconds[-1] / ours.seconds[-1]:.1f}x" if ours else "-"
        ours_to99 = ours.seconds_to() if ours else None
        ratio_99 = f"{to99 / ours_to99:.1f}x" if to99 and ours_to99 else "never" if to99 is None else "-"
        lines.append(f"{c.recipe:<18}{epochs:>8}{100 * c.accuracy[-1]:>9.2f}%{c.seconds[-1]:>10.1f}"
                     f"{(f'{to99:.1f}' if to99 else 'never'):>10}{ratio_train:>16}{ratio_99:>17}")
    if any(c.capped for c in curves):
        lines.append("* capped by --peer-epochs: accuracy and seconds are for the epochs run, not extrapolated")
    return "\n".join(lines)


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


def plot_curves(curves: list[Curve], path: str | Path) -> Path:
    """Test accuracy against training seconds, one line per recipe, log-scaled time."""
    from cnnlab.plots import accuracy_vs_seconds

    return accuracy_vs_seconds({c.recipe: (c.seconds, c.accuracy) for c in curves}, path, TARGET_ACCURACY)
