"""Does lr-find's suggestion land near the learning rate a validation sweep picks?

For each model: train one epoch (the fast preset's recipe: Adam, one-cycle, label smoothing,
light augmentation) at each peak learning rate of a grid, and pick the one with the best
validation accuracy; then run lr-find and print its suggestions, and the ratio to the pick.

    python benchmarks/lr_find_check.py [--models cnn-fast cnn mlp] [--threads 2]
"""

from __future__ import annotations

import argparse

from cnnlab.data import load_dataset
from cnnlab.training.loop import train
from cnnlab.training.lr_find import lr_find

GRID = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn-fast", "cnn", "mlp"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    ds = load_dataset("mnist", data_dir=args.data_dir, val_split=0.1, seed=0)
    for model in args.models:
        accuracies = {}
        for lr in GRID:
            result = train(model=model, lr=lr, dataset=ds, threads=args.threads, progress=False)
            accuracies[lr] = result.history[-1]["val_accuracy"]
        picked = max(accuracies, key=accuracies.get)
        found = lr_find(model=model, dataset=ds, threads=args.threads, progress=False)
        ratio = max(found.suggestion / picked, picked / found.suggestion)
        print(f"== {model}: validation accuracy after one epoch at each peak lr: "
              + ", ".join(f"{lr:g} {100 * acc:.2f}%" for lr, acc in accuracies.items()))
        print(f"   sweep picks {picked:g}; lr-find suggests {found.suggestion:.2g} "
              f"({'within' if ratio <= 3 else 'NOT within'} 3x: {ratio:.1f}x); {found.describe()}")
        valley_ratio = max(found.valley / picked, picked / found.valley)
        print(f"   fastai's valley rule would suggest {found.valley:.2g} ({valley_ratio:.1f}x)")


if __name__ == "__main__":
    main()
