"""Benchmark: what whole-batch augmentation costs, as a fraction of a training step.

Times the default model's training step on a batch of real-sized random images, and the
augmenter on the same batch, for each level; prints medians and the ratio.

    python benchmarks/augment_cost.py [--batch-size 256] [--repeats 30]
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
    args = parser.parse_args()
    torch.set_num_threads(pick_threads())
    model = build_model("cnn").to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = median_seconds(step, args.repeats)
    print(f"training step, batch {args.batch_size}: {1000 * step_s:.2f} ms (median of {args.repeats})")
    for level, spec in LEVELS.items():
        if spec is None:
            continue
        augment = Augmenter(spec, background=-0.42)
        aug_s = median_seconds(lambda a=augment: a(x), args.repeats)
        print(f"augment {level:<6}: {1000 * aug_s:.2f} ms = {100 * aug_s / step_s:.1f}% of a step")


if __name__ == "__main__":
    main()
