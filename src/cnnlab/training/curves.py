"""Points of a short run's learning curves, taken during each epoch.

A run of one or two epochs would draw one dot per line. For runs of up to :data:`MAX_EPOCHS`
epochs, and any run watched live (``on_point``), every 1/:data:`POINTS` of an epoch (and its end)
records the training loss and accuracy of the steps since the last point, and the validation loss
and accuracy on the first :data:`VAL_IMAGES` validation images. A watched run gets a point every
:data:`WATCH_SECONDS` too, or every three times a point's cost if that is longer. Each point costs
one host sync and a forward pass over those images; that time is measured and left out of the
epoch's training seconds, as checkpoints are.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from cnnlab.models.inference import predict_logits
from cnnlab.reporting.metrics import score

POINTS = 8  # per epoch
MAX_EPOCHS = 3  # longer runs have enough epoch-end points
VAL_IMAGES = 1000
WATCH_SECONDS = 0.25  # a run watched live (``on_point``) gets a point at least this often


class EpochPoints:
    """Collects ``rows`` of ``{"epoch" (fractional), "loss", "train_ce", "accuracy", "val_loss", "val_accuracy"}``."""

    def __init__(self, model: torch.nn.Module, val_x: torch.Tensor, val_y: torch.Tensor, steps_per_epoch: int,
                 rows: list[dict[str, float]] | None = None, on_point: Callable[[dict], None] | None = None) -> None:
        self.model, self.val_x, self.val_y = model, val_x[:VAL_IMAGES], val_y[:VAL_IMAGES]
        self.steps, self.every = steps_per_epoch, max(1, -(-steps_per_epoch // POINTS))
        self.rows = rows if rows is not None else []
        self.on_point = on_point
        self.seconds, self.epoch, self.last = 0.0, 0, (0.0, 0.0, 0.0, 0)
        self.taken = time.perf_counter()  # when the last point was taken
        self.cost = 0.0  # how long taking it took

    def start(self, epoch: int) -> None:
        self.epoch, self.last, self.seconds = epoch, (0.0, 0.0, 0.0, 0), 0.0
        self.taken = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether step ``step`` (0-based) ends a point: every 1/POINTS of the epoch, its end, and when
        watched, every :data:`WATCH_SECONDS` as well."""
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            return True
        # Watched: often, but never so often that taking points (a forward pass over VAL_IMAGES)
        # costs more than a quarter of the time.
        return self.on_point is not None and time.perf_counter() - self.taken >= max(WATCH_SECONDS, 3 * self.cost)

    def after_step(self, step: int, sums: torch.Tensor, seen: int) -> None:
        """``sums``: the epoch's running (loss, cross-entropy, hits) sums on the device after step ``step``
        (0-based), ``seen`` images into the epoch."""
        if not self.due(step):
            return
        started = time.perf_counter()
        loss, cross_entropy, hits = sums.tolist()
        count = seen - self.last[3]
        if count > 0:
            row = {"epoch": self.epoch - 1 + (step + 1) / self.steps, "loss": (loss - self.last[0]) / count,
                   "train_ce": (cross_entropy - self.last[1]) / count, "accuracy": (hits - self.last[2]) / count}
            if len(self.val_y):
                row["val_loss"], row["val_accuracy"] = score(predict_logits(self.model, self.val_x), self.val_y)
            self.rows.append(row)
            if self.on_point is not None:
                self.on_point(row)
        self.last = (loss, cross_entropy, hits, seen)
        self.taken = time.perf_counter()
        self.cost = self.taken - started
        self.seconds += self.cost
