"""Early stopping (``--patience N``), as Keras' ``EarlyStopping(patience, restore_best_weights=True)``.

After each epoch the validation loss is compared with the lowest so far. A lower one makes that
epoch the best, and its weights are copied aside; N epochs in a row without one stop the run.
The best epoch's weights are the ones delivered, and ``history.csv`` marks that epoch ``kept``.
The state goes into the checkpoint, so a resumed run stops where an unbroken one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class BestEpoch:
    """The epoch with the lowest validation loss so far, its weights, and whether the run stopped."""

    patience: int
    epoch: int = 0
    val_loss: float = math.inf
    weights: dict[str, torch.Tensor] | None = None
    stopped: bool = False

    def update(self, row: dict[str, float], model: torch.nn.Module, epochs: int) -> bool:
        """Take a finished epoch's history ``row`` of a run of ``epochs``; True when the run should
        stop after it, before its last epoch."""
        if row["val_loss"] < self.val_loss:
            self.epoch, self.val_loss = int(row["epoch"]), row["val_loss"]
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.stopped = row["epoch"] - self.epoch >= self.patience and row["epoch"] < epochs
        return self.stopped

    def deliver(self, model: torch.nn.Module, history: list[dict[str, float]]) -> str:
        """Put the best epoch's weights back into ``model``, mark that epoch ``kept`` in ``history``,
        and say so in a line."""
        last = int(history[-1]["epoch"])
        for row in history:
            row["kept"] = int(row["epoch"] == self.epoch)
        if self.epoch != last:
            model.load_state_dict(self.weights)
        kept = f"epoch {self.epoch}'s weights, the lowest val_loss ({self.val_loss:.4f})"
        if self.stopped:
            return (f"Stopped early: val_loss did not improve for {self.patience} epoch"
                    f"{'s' if self.patience > 1 else ''}; keeping {kept}")
        return f"Keeping {kept}"

    def state(self) -> dict[str, Any]:
        return {"patience": self.patience, "epoch": self.epoch, "val_loss": self.val_loss, "weights": self.weights,
                "stopped": self.stopped}

    def restore(self, state: dict[str, Any] | None) -> None:
        if state:
            self.epoch, self.val_loss = state["epoch"], state["val_loss"]
            self.weights, self.stopped = state["weights"], state["stopped"]
