"""Transfer to handwriting no one here wrote: scikit-learn's bundled UCI digits (1,797 images by
43 writers, none of MNIST's), rendered as photos (tests/photolike.py) and read as ``predict``
reads photos (their ink found, cnnlab.handwriting.digit.read_as_mnist).

With 5, 10, 20 and 50 labelled photos a class, over 5 seeds, each tested on all the other photos:

    (a) random     cnn-fast trained from random weights on the labelled photos
    (b) mnist      the MNIST run that ``make run`` trains, as it is
    (c) fine-tuned the same labelled photos, starting from (b) (``cnnlab train --init``)

(a) and (c) train with the same recipe, cnnlab's for a small folder of digits
(cnnlab.training.config.fit_to_small_data): only the starting weights differ.

    python benchmarks/transfer_uci.py --results docs/results/transfer_uci.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cnnlab
from benchmarks.targets import Targets
from cnnlab.data import Dataset
from cnnlab.handwriting.digit import read_as_mnist
from cnnlab.reporting.metrics import evaluate_model
from tests.photolike import render_photo

SIZES = (5, 10, 20, 50)
TARGET_AT_20 = 0.975
NAMES = [str(d) for d in range(10)]


def uci_photos() -> tuple[np.ndarray, np.ndarray]:
    """Every UCI digit rendered as a photo (one fixed rendering) and read as MNIST: uint8 ``(1797, 28, 28)``, labels."""
    from sklearn.datasets import load_digits

    digits, rng = load_digits(), np.random.default_rng(0)
    ink = (digits.images * 255 / 16).astype(np.uint8)
    images = np.stack([read_as_mnist(render_photo(np.pad(image, 1), rng)) for image in ink])
    return images, digits.target.astype(np.int64)


def split(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` indices of each class for training, chosen by ``seed``; the rest for testing."""
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.choice(np.flatnonzero(labels == k), per_class, replace=False) for k in range(10)])
    return np.sort(train), np.setdiff1d(np.arange(len(labels)), train)


def accuracy(images, labels, train, test, seed, **options) -> float:
    t = torch.from_numpy
    data = Dataset("uci", NAMES, t(images[train]), t(labels[train]), t(images[test]), t(labels[test]), kind="digits")
    result = cnnlab.train(dataset=data, seed=seed, progress=False, threads=2, **options)
    return float(result.metrics["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--results", help="write the results file here (e.g. docs/results/transfer_uci.json)")
    parser.add_argument("--plot", metavar="RESULTS", help="only draw the plot of a results file again, beside it")
    args = parser.parse_args()
    if args.plot:
        draw(Path(args.plot), json.loads(Path(args.plot).read_text())["transfer"])
        return
    images, labels = uci_photos()
    with tempfile.TemporaryDirectory() as tmp:
        mnist = Path(tmp) / "mnist"
        cnnlab.train(out=str(mnist), progress=False, threads=2, pictures="none")  # make run's model
        model, info = cnnlab.load_model(mnist)
        rows = []
        for per_class in SIZES:
            row = {"per_class": per_class, "random": [], "mnist": [], "fine_tuned": []}
            for seed in range(1, args.seeds + 1):
                train, test = split(labels, per_class, seed)
                row["random"].append(accuracy(images, labels, train, test, seed, model="cnn-fast"))
                as_is = evaluate_model(model, info, torch.from_numpy(images[test]), torch.from_numpy(labels[test]))
                row["mnist"].append(float(as_is["test_accuracy"]))
                row["fine_tuned"].append(accuracy(images, labels, train, test, seed, init=str(mnist)))
            row.update({f"{k}_mean": statistics.mean(row[k]) for k in ("random", "mnist", "fine_tuned")})
            rows.append(row)
            print(f"{per_class:3} a class:  (a) random {100 * row['random_mean']:6.2f}%   (b) MNIST run "
                  f"{100 * row['mnist_mean']:6.2f}%   (c) fine-tuned {100 * row['fine_tuned_mean']:6.2f}%   "
                  f"(means over {args.seeds} seeds)", flush=True)
    targets = Targets()
    for row in rows:
        better = max(row["random_mean"], row["mnist_mean"])
        targets.check(f"(c) fine-tuned against the better of (a) and (b), {row['per_class']} a class",
                      f"{100 * row['fine_tuned_mean']:.2f}% against {100 * better:.2f}%", ">= the better",
                      row["fine_tuned_mean"] >= better)
    at_20 = next(row for row in rows if row["per_class"] == 20)
    targets.check("(c) fine-tuned, 20 a class", f"{100 * at_20['fine_tuned_mean']:.2f}%", f">= {100 * TARGET_AT_20}%",
                  at_20["fine_tuned_mean"] >= TARGET_AT_20)
    targets.finish(None)
    if args.results:
        write_results(Path(args.results), rows, targets)


def write_results(path: Path, rows: list[dict], targets: Targets) -> None:
    """The results file (every seed's figure, the targets) and its plot beside it (same name, .png)."""
    from cnnlab.bench import results_file
    from cnnlab.files import atomic_write_bytes

    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    data = results_file(command, targets.rows, dataset="uci-digits")
    data["transfer"] = rows
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    draw(path, rows)


def draw(path: Path, rows: list[dict]) -> None:
    """The plot of the results file at ``path``: mean and range over seeds of each start, by size."""
    from cnnlab.reporting.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [row["per_class"] for row in rows]
    for key, label in (("random", "(a) from random weights"), ("mnist", "(b) the MNIST run as it is"),
                       ("fine_tuned", "(c) fine-tuned from the MNIST run")):
        means = [100 * row[f"{key}_mean"] for row in rows]
        spread = [[100 * (row[f"{key}_mean"] - min(row[key])) for row in rows],
                  [100 * (max(row[key]) - row[f"{key}_mean"]) for row in rows]]
        ax.errorbar(sizes, means, yerr=spread, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labelled photos a class")
    ax.set_ylabel("test accuracy (%), mean and range of seeds")
    ax.set_title("UCI digits as photos: starting from the MNIST run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path.with_suffix(".png"))
    print(f"drew {path.with_suffix('.png')} from {path}")


if __name__ == "__main__":
    main()
