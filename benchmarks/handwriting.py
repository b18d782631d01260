"""A model on MNIST test digits rendered as photos (tests/photolike.py): single digits and numbers.

    python benchmarks/handwriting.py runs/fast-mnist-seed0 [--digits 500] [--numbers 100] [--seed 0]

Prints the single-digit accuracy, the whole-number accuracy (3-6 digits each), how many numbers
came out with the wrong count of digits, the whole-number accuracy on numbers made another way
(tests.photolike.number_written_differently) and a third (number_on_a_page), the accuracy on the
same digits without any rendering (raw MNIST, for reference), and the seconds per image of the
preprocessing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnlab.data import load_dataset
from cnnlab.handwriting.digit import digit_to_mnist, read_grey
from cnnlab.models.files import load_model
from cnnlab.predict import class_probabilities, preprocess_source
from tests.photolike import (
    number_on_a_page,
    number_written_differently,
    read_numbers,
    render_photo,
    uci_digits_as_photos,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--digits", type=int, default=500)
    parser.add_argument("--numbers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--picture", default=None, help="PNG of the first 8 photos and what the network saw")
    args = parser.parse_args()
    model, info = load_model(args.model)
    test = load_dataset("mnist", data_dir=args.data_dir, val_split=0.0)
    images, labels = test.test_images.numpy(), test.test_labels.numpy()

    def classify(batch: list[np.ndarray]) -> np.ndarray:  # as cnnlab predict does, test-time augmentation included
        return class_probabilities(model, info, torch.from_numpy(np.stack(batch)), tta=True).argmax(1).numpy()

    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(images), args.digits, replace=False)
    started = time.perf_counter()
    seen = [digit_to_mnist(read_grey(render_photo(images[i], rng))) for i in picks]
    per_image = (time.perf_counter() - started) / len(picks)
    if args.picture:
        draw_examples(args.picture, np.random.default_rng(args.seed), images[picks[:8]])
    single = (classify(seen) == labels[picks]).mean()
    raw = (classify(list(images[picks])) == labels[picks]).mean()
    def read(photo: bytes) -> list[np.ndarray]:
        return preprocess_source(photo, info, number=True, model=model)  # as cnnlab predict --number

    right, wrong_count = read_numbers(read, classify, images, labels, args.numbers, rng)
    print(f"single digits: {100 * single:.1f}% of {len(picks)} (the same digits unrendered: {100 * raw:.1f}%), "
          f"{1000 * per_image:.0f} ms per photo to render and preprocess")
    print(f"numbers: {100 * right / args.numbers:.1f}% of {args.numbers} read whole; "
          f"{wrong_count} with the wrong count of digits")
    other, _ = read_numbers(read, classify, images, labels, args.numbers, np.random.default_rng(args.seed + 1),
                            number_written_differently)
    print(f"numbers made differently: {100 * other / args.numbers:.1f}% of {args.numbers} read whole")
    page, _ = read_numbers(read, classify, images, labels, args.numbers, np.random.default_rng(args.seed + 2),
                           number_on_a_page)
    print(f"numbers on a photographed page (slanted, often under a shadow): {100 * page / args.numbers:.1f}% "
          f"of {args.numbers} read whole")
    photos, truth = uci_digits_as_photos(args.digits, np.random.default_rng(args.seed))
    uci = (classify([digit_to_mnist(read_grey(photo)) for photo in photos]) == truth).mean()
    print(f"UCI digits (scikit-learn, 8x8, other writers) as photos: {100 * uci:.1f}% of {len(truth)}")


def draw_examples(path: str, rng: np.random.Generator, digits: np.ndarray) -> None:
    """Photos of ``digits`` (top) and the 28x28 the network sees of each (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(2, len(digits), figsize=(1.6 * len(digits), 3.6))
    for column, digit in enumerate(digits):
        photo = render_photo(digit, rng)
        axes[0, column].imshow(Image.open(__import__("io").BytesIO(photo)).convert("RGB"))
        axes[1, column].imshow(digit_to_mnist(read_grey(photo)), cmap="gray", vmin=0, vmax=255)
        for ax in axes[:, column]:
            ax.axis("off")
    axes[0, 0].set_title("photo", loc="left", fontsize=9)
    axes[1, 0].set_title("what the network sees", loc="left", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")


if __name__ == "__main__":
    main()
