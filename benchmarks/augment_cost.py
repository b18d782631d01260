"""Benchmark: what whole-batch augmentation costs, as a fraction of a training step.

Times a model's training step on a batch of real-sized random images, and the augmenter on the
same batch, for each level; prints medians and the ratio. The default is MNIST's case (``cnn``,
28x28 grey); ``--channels 3 --size 32 --model cnn-small`` is a colour photo's (CIFAR, SVHN).

    python benchmarks/augment_cost.py [--batch-size 256] [--repeats 30] [--model cnn]
                                      [--channels 1] [--size 28]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab.models.registry import build_model
from cnnlab.training.augment import LEVELS, Augmenter
from cnnlab.training.system import pick_threads


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels on the first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=28)
    args = parser.parse_args()
    torch.set_num_threads(pick_threads())
    model = build_model(args.model, 10, args.size, args.channels).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch_size, args.channels, args.size, args.size).contiguous(memory_format=torch.channels_last)
    background = [-0.42] * args.channels
    y = torch.randint(0, 10, (args.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = median_seconds(step, args.repeats)
    print(f"{args.model} training step, batch {args.batch_size} of {args.size}x{args.size}x{args.channels}: "
          f"{1000 * step_s:.2f} ms (median of {args.repeats})")
    for level, spec in LEVELS.items():
        if spec is None:
            continue
        augment = Augmenter(spec, background=background)
        aug_s = median_seconds(lambda a=augment: a(x), args.repeats)
        print(f"augment {level:<9}: {1000 * aug_s:.2f} ms = {100 * aug_s / step_s:.1f}% of a step")


if __name__ == "__main__":
    main()
