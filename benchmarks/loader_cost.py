"""Benchmark: one epoch of getting MNIST batches, per-sample DataLoader against tensor slicing.

The DataLoader builds every sample on its own as pytorch/examples does (PIL image, ToTensor,
Normalize; batch 64, shuffled); cnnlab slices one normalised tensor through a random
permutation (batch 256). Neither trains: this is the data pipeline's cost alone.

    CNNLAB_DATA=../shared/data python benchmarks/loader_cost.py
"""

from __future__ import annotations

import time

import torch

from cnnlab.bench import EXAMPLE_MEAN, EXAMPLE_STD, PerSampleMNIST
from cnnlab.data import load_dataset
from cnnlab.models.inference import to_input
from cnnlab.training.system import pick_threads


def main() -> None:
    torch.set_num_threads(pick_threads())
    ds = load_dataset("mnist")
    loader = torch.utils.data.DataLoader(PerSampleMNIST(ds.train_images, ds.train_labels), batch_size=64,
                                         shuffle=True)
    started = time.perf_counter()
    for _images, _labels in loader:
        pass
    per_sample = time.perf_counter() - started

    started = time.perf_counter()
    x, y = to_input(ds.train_images, EXAMPLE_MEAN, EXAMPLE_STD), ds.train_labels
    order = torch.randperm(len(y))
    for i in range(0, len(y), 256):
        index = order[i : i + 256]
        _images, _labels = x[index], y[index]
    slicing = time.perf_counter() - started
    print(f"per-sample DataLoader, batch 64: {per_sample:.2f} s an epoch")
    print(f"one tensor, sliced, batch 256:   {slicing:.2f} s an epoch (normalising included)")
    print(f"ratio: {per_sample / slicing:.0f}x")


if __name__ == "__main__":
    main()
