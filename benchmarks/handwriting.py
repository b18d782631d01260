"""How well a model reads photos of handwriting, as ``cnnlab read`` reads them, against the reader's targets.

    python benchmarks/handwriting.py [MODEL] [--split test|validation] [--digits 2000] [--numbers 300]

MODEL defaults to the reader bundled with cnnlab. Every photo is read as ``cnnlab read`` reads it:
the reader decides whether it holds one digit or a number, and each digit's answer is averaged
over five shifts. Photos are made from MNIST's *test* digits (``--split test``, the final figures)
or from the validation digits the model never learned from (``--split validation``, where its
settings were chosen), by the generators of tests/photolike.py:

    single digits       one digit a photo (render_photo)
    numbers x 3         3-6 digits, made three ways: composed and photographed, made differently
                        (tilted, resized, ruled paper, pencil), small on a photographed page
    UCI digits          scikit-learn's 8x8 digits of other writers as photos: the validation split
                        reads one half of them, the test split the other
    thick marker        50 numbers written with a marker

With ``--split test`` the private set (tests/private_photos.py, made differently again and never
looked at while choosing) is read too. Each figure is printed with its target and whether it is met.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.targets import Targets
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.using.predictor import Predictor
from cnnlab.using.reader import READER
from tests.photolike import (
    number_in_marker,
    number_on_a_page,
    number_written_differently,
    photographed_number,
    render_photo,
    uci_digits_as_photos,
)
from tests.private_photos import written_on_a_note

TARGETS = {"single": 0.995, "numbers": 0.96, "uci": 0.97, "marker": 45}
NUMBER_KINDS = {"photographed": photographed_number, "made differently": number_written_differently,
                "on a photographed page": number_on_a_page}


class Reader:
    """Reads photos as ``cnnlab read`` does, and counts what it got right."""

    def __init__(self, model_path: str | Path) -> None:
        self.predictor = Predictor.load(model_path)

    def digits(self, photo: bytes) -> list[str]:
        """The labels read from ``photo`` (one for a digit, several for a number); [] for no answer."""
        try:
            prepared = self.predictor.prepare(photo, number=None)
        except CnnlabError:
            return []
        answer = self.predictor.answer([prepared])[0]
        return [d["label"] for d in answer.digits] if answer.digits else [answer.label]

    def share_right(self, photos: list[bytes], truths: list[list[int]]) -> tuple[float, int]:
        """(share read whole, how many came out with the wrong count of digits)."""
        right = wrong_count = 0
        for photo, truth in zip(photos, truths, strict=True):
            read = self.digits(photo)
            wrong_count += len(read) != len(truth)
            right += read == [str(d) for d in truth]
        return right / len(photos), wrong_count


def numbers(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator, make,
            sizes: tuple[int, int] = (3, 6)) -> tuple[list[bytes], list[list[int]]]:
    """``count`` photos of numbers of ``sizes`` digits made by ``make``, and their digits."""
    photos, truths = [], []
    for _ in range(count):
        chosen = rng.choice(len(images), int(rng.integers(sizes[0], sizes[1] + 1)), replace=False)
        photos.append(make(list(images[chosen]), rng))
        truths.append(labels[chosen].tolist())
    return photos, truths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(READER))
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--digits", type=int, default=2000)
    parser.add_argument("--numbers", type=int, default=300)
    parser.add_argument("--marker", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=None, help="a JSON file to write the figures to, for the docs")
    args = parser.parse_args()
    reader = Reader(args.model)
    config = json.loads((Path(args.model) / "config.json").read_text()) if Path(args.model).is_dir() else {}
    data = load_dataset("mnist", data_dir=args.data_dir, val_split=config.get("val_split", 0.1),
                        seed=config.get("seed", 0))
    if args.split == "test":
        images, labels = data.test_images.numpy(), data.test_labels.numpy()
    else:
        images, labels = data.val_images.numpy(), data.val_labels.numpy()
    print(f"{args.model} on photos of MNIST {args.split} digits ({len(labels):,} to draw from), seed {args.seed}")
    rng = np.random.default_rng(args.seed)
    targets = Targets()
    picks = rng.choice(len(images), args.digits, replace=False)
    single, _ = reader.share_right([render_photo(images[i], rng) for i in picks], [[d] for d in labels[picks]])
    share_target = f">= {100 * TARGETS['single']:g}%"
    targets.check(f"single photographed digits ({args.digits})", f"{100 * single:.2f}%", share_target,
                  single >= TARGETS["single"])
    for k, (kind, make) in enumerate(NUMBER_KINDS.items(), 1):
        share, wrong_count = reader.share_right(*numbers(images, labels, args.numbers,
                                                         np.random.default_rng(args.seed + k), make))
        targets.check(f"numbers {kind} ({args.numbers}), read whole",
                      f"{100 * share:.1f}% ({wrong_count} with the wrong count of digits)",
                      f">= {100 * TARGETS['numbers']:g}%", share >= TARGETS["numbers"])
    photos, truth = uci_digits_as_photos(args.digits, np.random.default_rng(args.seed), half=args.split)
    uci, _ = reader.share_right(photos, [[d] for d in truth])
    targets.check(f"UCI digits as photos ({len(truth)}, other writers, 8x8)", f"{100 * uci:.2f}%",
                  f">= {100 * TARGETS['uci']:g}%", uci >= TARGETS["uci"])
    marker, _ = reader.share_right(*numbers(images, labels, args.marker, np.random.default_rng(args.seed + 4),
                                            number_in_marker))
    right, needed = round(marker * args.marker), TARGETS["marker"] * args.marker / 50
    targets.check("numbers in thick marker, read whole", f"{right} of {args.marker}", f">= {needed:g}",
                  right >= needed)
    if args.split == "test":
        note_rng = np.random.default_rng(args.seed + 5)
        share, _ = reader.share_right(*numbers(images, labels, args.digits // 2, note_rng, written_on_a_note, (1, 1)))
        targets.check(f"private set: single digits on a sticky note ({args.digits // 2})", f"{100 * share:.2f}%",
                      share_target, share >= TARGETS["single"])
        share, _ = reader.share_right(*numbers(images, labels, args.numbers, note_rng, written_on_a_note))
        targets.check(f"private set: numbers on a sticky note ({args.numbers}), read whole", f"{100 * share:.1f}%",
                      f">= {100 * TARGETS['numbers']:g}%", share >= TARGETS["numbers"])
    targets.finish(args.results)


if __name__ == "__main__":
    main()
