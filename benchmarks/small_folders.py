"""The small-folder recipe (cnnlab.training.config.fit_to_small_data), chosen on validation images.

A synthetic colour task: 64x64 RGB photos of noise, each with a bright square of one of three
colours, of about equal brightness, so only the colour tells the classes apart. 360 training
images (120 a class), as a user's small folder. Each augmentation the recipe could pick is trained
over seeds, early stopping on and off, and scored on a *validation* folder made with another seed;
the recipe's own choice is then scored once on a test folder made with a third.

    python benchmarks/small_folders.py            # prints the table, writes docs/results/small_folders.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cnnlab

COLOURS = {"red": (255, 60, 130), "green": (60, 175, 60), "blue": (90, 110, 255)}  # about equally bright in grey
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "small_folders.json"
TARGET = 0.99  # the recipe's test accuracy on the colour task


def colour_squares(folder: Path, per_class: int, seed: int, size: int = 64) -> Path:
    """``folder/<colour>/<i>.png``: noise with a bright square of the class's colour, 16-32 px, anywhere."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.uniform(0, 255, (size, size, 3)) * rng.uniform(0.3, 0.8)
            side = int(rng.integers(16, 33))
            top, left = rng.integers(0, size - side, 2)
            image[top : top + side, left : left + side] = np.array(colour) * rng.uniform(0.7, 1.0)
            image += rng.normal(0, 12, image.shape)
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / name / f"{i}.png")
    return folder


def run(root: Path, seed: int, **options) -> float:
    """Train on ``root/task`` (its ``test/`` is the validation folder) and return that accuracy."""
    result = cnnlab.train(dataset=root / "task", seed=seed, progress=False, threads=2, **options)
    return float(result.metrics["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        colour_squares(root / "task" / "train", 120, seed=1)
        colour_squares(root / "task" / "test", 100, seed=2)  # validation: chooses the recipe
        colour_squares(root / "held-out", 100, seed=3)  # test: scored once, with the recipe chosen
        rows = []
        never = 10_000  # a patience no run reaches: early stopping off
        choices = [("no recipe: the last epoch, no augmentation", {"augment": "none", "patience": never,
                                                                   "keep": "last"}),
                   ("best epoch, no augmentation", {"augment": "none"}),
                   ("best epoch, crop-flip", {"augment": "crop-flip"}),
                   ("best epoch, crop-flip and colour jitter", {"augment": "colour"}),
                   ("best epoch, crop-flip, no early stopping", {"augment": "crop-flip", "patience": never})]
        for label, options in choices:
            scores = [run(root, seed, **options) for seed in range(1, args.seeds + 1)]
            rows.append({"recipe": label, "validation": scores, "median": statistics.median(scores)})
            print(f"{label:45} validation accuracy {', '.join(f'{100 * s:.2f}%' for s in scores)}  "
                  f"(median {100 * rows[-1]['median']:.2f}%)", flush=True)
        out = root / "recipe"
        recipe = cnnlab.train(dataset=root / "task", seed=1, progress=False, threads=2, out=str(out), pictures="none")
        test = cnnlab.evaluate(out, root / "held-out")["test_accuracy"]
        config = json.loads((out / "config.json").read_text())
        print(f"the recipe (augment {config['augment']}, {config['epochs']} epochs of batch {config['batch_size']}, "
              f"patience {config['patience']}): held-out test accuracy {100 * test:.2f}% "
              f"({'meets' if test >= TARGET else 'misses'} the {100 * TARGET:.0f}% target); kept epoch "
              f"{[int(r['epoch']) for r in recipe.history if r.get('kept')]}")
    RESULTS.write_text(json.dumps({"choices": rows, "recipe": {k: config[k] for k in (
        "augment", "epochs", "batch_size", "patience")}, "test_accuracy": test, "target": TARGET}, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[2])}")


if __name__ == "__main__":
    main()
