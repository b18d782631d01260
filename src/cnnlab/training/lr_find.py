"""The learning-rate range test, in the manner of fastai's ``lr_find``.

A fresh network trains for a few hundred steps while the learning rate grows exponentially from
``start`` to ``end``; the loss is smoothed (an exponential moving average, as fastai's) and the
sweep stops once it passes 4x its lowest. The suggestion is fastai's "minimum" rule, the learning
rate where the smoothed loss was lowest, divided by 10, meant as the peak of the one-cycle schedule
(``--lr``), which is how cnnlab trains by default. fastai's newer default, "valley" (two thirds
down the longest falling stretch), is reported beside it: measured against one-epoch validation
sweeps (benchmarks/lr_find_check.py, docs/notes/lr-find.md) it lands 10-40x below the best peak
rate for cnnlab's networks trained from scratch, where minimum/10 lands within 2.5x.
``cnnlab train --lr auto`` runs this first and trains with the suggestion.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError, require
from cnnlab.models.inference import background_of
from cnnlab.models.registry import build_model
from cnnlab.training.augment import Augmenter
from cnnlab.training.config import TrainConfig, check_memory, fit_to_small_data, resolve_config, users_data
from cnnlab.training.optim import make_optimizer, training_loss
from cnnlab.training.system import select_device, set_threads
from cnnlab.training.tensors import on_device, pixel_stats, prepare_data

SMOOTHING = 0.98  # fastai's beta for the loss's moving average
STOP_FACTOR = 4.0  # the sweep ends when the smoothed loss passes this many times its lowest


@dataclass
class LrFind:
    """The sweep's learning rates and smoothed losses, and the suggestion."""

    model: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float = math.nan  # the lowest loss's learning rate / 10
    valley: float = math.nan  # fastai's valley rule, for comparison
    seconds: float = 0.0

    def plot(self, path: str | Path) -> Path:
        """The sweep's picture, the suggestion marked."""
        from cnnlab.reporting import plots  # matplotlib loads only when pictures are drawn

        return plots.lr_finder(self.lrs, self.losses, self.suggestion, path, f"lr-find: {self.model}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"Suggested peak learning rate for {self.model}: {self.suggestion:.2g} (the loss was lowest at "
                f"{10 * self.suggestion:.2g}; fastai's valley rule: {self.valley:.2g}), from {len(self.lrs)} steps "
                f"in {self.seconds:.1f}s")


def lr_find(config: TrainConfig | None = None, dataset: Dataset | None = None, start: float = 1e-7,
            end: float = 10.0, steps: int = 200, progress: bool | None = None, **options) -> LrFind:
    """Sweep the learning rate for the network and settings of ``config`` (or ``options``, as
    :func:`cnnlab.train` takes them) on its training data; nothing is saved.

    Args:
        start, end: the first and the last learning rate of the sweep.
        steps: the most steps; the sweep stops early once the loss has blown up.
    """
    require(0 < start < end, f"the sweep needs 0 < start < end, got {start:g} and {end:g}")
    require(steps >= 10, f"--steps must be at least 10, got {steps}")
    config, network = resolve_config(config, {**options, "lr": None})
    started = time.perf_counter()
    device = select_device(config.device)
    set_threads(config.threads)
    torch.manual_seed(config.seed)
    data = prepare_data(config, dataset)
    chosen = frozenset(k for k, v in options.items() if v is not None)
    fit_to_small_data(config, data, users_data(data), chosen)  # the batch size the run trains with
    check_memory(config, (data.num_classes, data.channels, data.image_size), device)
    mean, std = pixel_stats(data.train_images) if config.normalize else (0.0, 1.0)
    (x, y), _ = on_device(data, mean, std, device)
    model = (network or build_model(config.model, data.num_classes, data.image_size, data.channels))
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = make_optimizer(config.optimizer, model.parameters(), start)
    augmenter = Augmenter.for_level(config.augment, background_of(mean, std), config.seed + 1)
    shuffler = torch.Generator().manual_seed(config.seed)
    result = LrFind(config.model)
    order, position, average, lowest = torch.randperm(len(y), generator=shuffler), 0, 0.0, math.inf
    for step in tqdm(range(steps), desc="lr-find", leave=False, disable=not progress if progress is not None else None):
        lr = start * (end / start) ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        if position + config.batch_size > len(order):
            order, position = torch.randperm(len(y), generator=shuffler), 0
        index = order[position: position + config.batch_size].to(y.device)
        position += config.batch_size
        inputs = augmenter(x[index]) if augmenter else x[index]
        loss = training_loss(model(inputs), y[index], config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
        smoothed = average / (1 - SMOOTHING ** (step + 1))
        if not math.isfinite(smoothed) or (step > 10 and smoothed > STOP_FACTOR * lowest):
            break
        lowest = min(lowest, smoothed)
        result.lrs.append(lr)
        result.losses.append(smoothed)
    if len(result.losses) < 10:
        raise CnnlabError(f"the loss blew up within {len(result.losses)} steps; lower the sweep's --start")
    result.suggestion = result.lrs[result.losses.index(min(result.losses))] / 10
    skip = len(result.losses) // 10  # as fastai: not the first tenth, nor the last 5 steps
    result.valley = valley(result.lrs[skip:-5], result.losses[skip:-5])
    result.seconds = time.perf_counter() - started
    return result


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's "valley": the longest run of falling losses (the longest decreasing subsequence),
    and the learning rate two thirds of the way along it."""
    n = len(losses)
    longest = [1] * n
    best_start = best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[best_end] < longest[i]:
            best_end, best_start = i, i - longest[i]
    third = (best_end - best_start) / 3
    return lrs[best_start + int(third) + int(third / 2)]


def choose_lr(config: TrainConfig, data: Dataset, network: torch.nn.Module | None, progress: bool | None) -> str:
    """``--lr auto``: set ``config.lr`` to lr-find's suggestion (two significant figures) on this
    data, re-seed as the run began, and say so. The sweep trains a copy of a given ``network``."""
    own = {"model": copy.deepcopy(network)} if network else {}  # the sweep trains a copy
    # The sweep keeps the run's thread count: choosing again could pick another on a busy machine.
    found = lr_find(config, data, progress=progress, threads=torch.get_num_threads(), **own)
    config.lr = float(f"{found.suggestion:.2g}")
    torch.manual_seed(config.seed)
    return f"lr-find suggests a peak learning rate of {config.lr:g} ({found.seconds:.1f}s); training with it"
