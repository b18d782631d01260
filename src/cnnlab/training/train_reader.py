"""Train the handwriting reader that ships with cnnlab again, and put it in the package.

    python -m cnnlab.training.train_reader [--seed 1] [--data-dir DIR] [--out runs/reader] [--into FOLDER]
                                              [--threads 2]

Trains the ``reader`` preset (cnnlab.training.presets: ``best``'s ensemble of three ``cnn-wide``,
10 epochs of the ``handwriting`` augmentation) on MNIST's training images, its validation split
held out, and writes its weights as float16 (half the size, the same answers to within 1e-3 of a
probability), ``model.json`` and ``config.json`` into ``cnnlab/handwriting/reader/`` (``--into``
writes elsewhere), each file written whole or not at all. The run itself, with its report, stays
in ``--out`` (``runs/reader-2`` and on when it exists). About 8.5 minutes on the project's 2-core CPU,
with nothing else running, on 2 threads: on the same machine, the same seed and thread count learn the
same weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from cnnlab.files import atomic_write_bytes, free_folder, read_json
from cnnlab.models.files import MODEL_FILE, MODEL_META
from cnnlab.training.loop import train

READER_FOLDER = Path(__file__).resolve().parents[1] / "handwriting" / "reader"


def pack(run: str | Path, into: str | Path = READER_FOLDER) -> Path:
    """Copy a trained run's model into ``into``: weights as float16, ``model.json`` and ``config.json``."""
    run, into = Path(run), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.to(torch.float16) if tensor.is_floating_point() else tensor
               for name, tensor in load_file(run / MODEL_FILE).items()}
    atomic_write_bytes(into / MODEL_FILE, save(weights))
    atomic_write_bytes(into / MODEL_META, (run / MODEL_META).read_bytes())
    config = read_json(run / "config.json")
    config.update(data_dir=None, out=None)  # where this machine kept them means nothing elsewhere
    atomic_write_bytes(into / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/reader")
    parser.add_argument("--into", default=str(READER_FOLDER))
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads; the shipped reader was trained on 2, and another count learns other weights")
    args = parser.parse_args()
    out = free_folder(Path(args.out))  # an earlier run there is kept
    train(preset="reader", seed=args.seed, data_dir=args.data_dir, out=out, threads=args.threads)
    print(f"Wrote the reader to {pack(out, args.into)}")


if __name__ == "__main__":
    main()
