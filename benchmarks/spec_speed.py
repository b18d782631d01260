"""A network built from a layer spec trains as fast as the same network written by hand.

Builds each network twice, once as PyTorch code (the hand-written classes the registry held
before it became specs) and once from its spec, and times training steps on MNIST-sized batches,
alternating the two so that the machine's drift falls on both. Prints the median step time of
each and their ratio.

    python benchmarks/spec_speed.py [--steps 60] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cnnlab.models.layers import CropBorder
from cnnlab.models.registry import MODELS, build_model


def cnn_fast_by_hand() -> nn.Module:
    return nn.Sequential(
        CropBorder(2),
        nn.Conv2d(1, 16, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10),
    )


def pytorch_example_by_hand() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )


HAND_WRITTEN = {"cnn-fast": cnn_fast_by_hand, "pytorch-example": pytorch_example_by_hand}


def step_seconds(model: nn.Module, steps: int, batch: int = 128) -> float:
    """Seconds a training step (forward, backward, Adam) takes, the median of ``steps``."""
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 5):
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[5:])  # the first steps warm oneDNN's kernels up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, by_hand in HAND_WRITTEN.items():
        print(f"{name}: spec '{MODELS[name].spec}'")
        hand, spec = [], []
        for _ in range(args.rounds):
            torch.manual_seed(0)
            hand.append(step_seconds(by_hand(), args.steps))
            torch.manual_seed(0)
            spec.append(step_seconds(build_model(name), args.steps))
        h, s = statistics.median(hand), statistics.median(spec)
        print(f"  step time, median of {args.rounds} rounds x {args.steps} steps: by hand {1000 * h:.2f} ms, "
              f"from the spec {1000 * s:.2f} ms, spec / hand {s / h:.3f}")


if __name__ == "__main__":
    main()
