"""The best epoch kept (``--keep best``, the default) and early stopping (``--patience N``), as
Keras' ``EarlyStopping(patience, restore_best_weights=True)`` and ultralytics' ``best.pt``.

After each epoch the validation loss is compared with the lowest so far. A lower one, or one within
:data:`AS_GOOD` of it, makes that epoch the best, and its weights are copied aside; with a patience
of N, N epochs in a row without one stop the run. The kept epoch's weights are the ones delivered
(``model.safetensors``), the other epoch's are written beside them (``last.safetensors``, or
``best.safetensors`` with ``--keep last``), and ``history.csv`` marks the kept epoch ``kept``. The state goes into the
checkpoint, so a resumed run keeps the same epoch, and stops where an unbroken one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

KEEP = ("best", "last")  # TrainConfig.keep
# An epoch whose val_loss is within this fraction of the lowest so far counts as the best: a later epoch
# as good is kept, having trained longer. On a small folder's few validation images the loss is noisy,
# and the lowest can fall early in the schedule by chance (docs/notes/small-folders.md).
AS_GOOD = 0.05
OTHER_FILE = {"best": "last.safetensors", "last": "best.safetensors"}  # the epoch not kept, beside model.safetensors


@dataclass
class BestEpoch:
    """The epoch with the lowest validation loss so far, its weights, and whether the run stopped
    (``patience`` None: it never stops early)."""

    patience: int | None = None
    epoch: int = 0
    val_loss: float = math.inf
    weights: dict[str, torch.Tensor] | None = None
    stopped: bool = False
    lowest: float = math.inf  # the lowest val_loss so far (the kept epoch's is within AS_GOOD of it)
    lowest_epoch: int = 0

    def update(self, row: dict[str, float], model: torch.nn.Module, epochs: int) -> bool:
        """Take a finished epoch's history ``row`` of a run of ``epochs``; True when the run should
        stop after it, before its last epoch."""
        if row["val_loss"] <= self.lowest * (1 + AS_GOOD):
            self.epoch, self.val_loss = int(row["epoch"]), row["val_loss"]
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if row["val_loss"] < self.lowest:
            self.lowest, self.lowest_epoch = row["val_loss"], int(row["epoch"])
        # Patience counts from the lowest loss itself, as Keras' does: an epoch merely as good is no improvement.
        waited = row["epoch"] - self.lowest_epoch
        self.stopped = bool(self.patience) and waited >= self.patience and row["epoch"] < epochs
        return self.stopped

    def deliver(self, model: torch.nn.Module, history: list[dict[str, float]], keep: str = "best"
                ) -> tuple[dict[str, torch.Tensor] | None, str | None]:
        """Leave the ``keep`` epoch's weights in ``model`` and mark that epoch ``kept`` in ``history``.

        Returns the other epoch's weights (the last epoch's with ``keep="best"``, the best's with
        ``"last"``), to be written beside the model, and a line saying what was kept (None for a
        one-epoch run, where there is no choice)."""
        last = int(history[-1]["epoch"])
        if self.weights is None:  # a checkpoint from before the best epoch was kept: the last is all there is
            self.epoch, keep = last, "best"
        kept = self.epoch if keep == "best" else last
        for row in history:
            row["kept"] = int(row["epoch"] == kept)
        if keep == "last":
            return self.weights, self.line(last, keep)
        other = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the last epoch's
        if self.epoch != last:
            model.load_state_dict(self.weights)
        return other, self.line(last, keep)

    def line(self, last: int, keep: str) -> str | None:
        """What was kept, in a line; None for a one-epoch run that did not stop (there was no choice)."""
        stop = (f"stopped early: val_loss did not improve for {self.patience} epoch{'s' * (self.patience > 1)}; "
                if self.stopped else "")
        if last == 1 and not stop:
            return None
        lowest = (f"the lowest val_loss ({self.val_loss:.4f})" if self.val_loss <= self.lowest else
                  f"a val_loss ({self.val_loss:.4f}) within {AS_GOOD:.0%} of the lowest ({self.lowest:.4f})")
        if keep == "last":
            what = (f"keeping the last epoch's weights (--keep last); epoch {self.epoch}'s, {lowest}, are in "
                    f"{OTHER_FILE[keep]}")
        elif self.epoch == last:
            what = f"keeping epoch {last}'s weights: the last had {lowest}"
        else:
            what = (f"keeping epoch {self.epoch}'s weights, {lowest}; the last epoch's are in {OTHER_FILE[keep]} "
                    "(--keep last keeps them instead)")
        text = stop + what
        return text[0].upper() + text[1:]

    def state(self) -> dict[str, Any]:
        return {"patience": self.patience or 0, "epoch": self.epoch, "val_loss": self.val_loss,
                "weights": self.weights, "stopped": self.stopped, "lowest": self.lowest,
                "lowest_epoch": self.lowest_epoch}

    def restore(self, state: dict[str, Any] | None) -> None:
        if state:
            self.epoch, self.val_loss = state["epoch"], state["val_loss"]
            self.weights, self.stopped = state["weights"], state["stopped"]
            self.lowest = state.get("lowest", self.val_loss)
            self.lowest_epoch = state.get("lowest_epoch", self.epoch)
