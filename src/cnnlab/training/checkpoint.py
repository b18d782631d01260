"""What a resumed run needs back, gathered in one place: cnnlab.train() saves it after every epoch
(:func:`save_checkpoint`) and ``cnnlab train --resume`` puts it back.

Everything random is a seeded generator whose state is saved, so a resumed run takes the same
shuffles, warps and dropout masks as one that never stopped, and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes
from cnnlab.training.augment import Augmenter
from cnnlab.training.config import TrainConfig
from cnnlab.training.curves import EpochPoints
from cnnlab.training.distributed import World, gather
from cnnlab.training.early_stopping import BestEpoch

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(folder) / CHECKPOINT_FILE, buffer.getvalue())



def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: plain
    data only, so a crafted file cannot run code (a pickle that asks for more is refused)."""
    path = Path(folder) / CHECKPOINT_FILE if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise CnnlabError(f"{path}: no checkpoint here; --resume takes the run directory of a 'cnnlab train "
                          "--out DIR' that finished at least one epoch")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error, a truncated zip, a foreign file
        raise CnnlabError(f"{path}: not a cnnlab checkpoint, or refused as unsafe "
                          f"({str(exc).splitlines()[0][:200]})") from None


@dataclass
class TrainingParts:
    """Everything whose state a resumed run needs back: weights, optimizer, schedule, the weight
    average, and the random generators of the shuffle and the augmentation."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    averaged: AveragedModel | None
    shuffler: torch.Generator
    augmenter: Augmenter | None
    ongoing: dict[str, Any] | None = None  # where an interrupted epoch stood (see StopRequested)
    best: BestEpoch | None = None  # early stopping's best epoch so far (--patience)
    points: EpochPoints | None = None  # the curves' points during each epoch of a short run

    def generator_states(self) -> dict[str, torch.Tensor | None]:
        """This process's random generators (each rank of a torchrun has its own augmentation)."""
        device = next(self.model.parameters()).device
        return {"torch": torch.get_rng_state(), "shuffle": self.shuffler.get_state(),
                "augment": self.augmenter.generator.get_state() if self.augmenter else None,
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}  # dropout on a GPU

    def state(self, history: list[dict[str, float]], config: dict[str, Any],
              generators: list[dict[str, torch.Tensor | None]]) -> dict[str, Any]:
        """A checkpoint after ``len(history)`` epochs, with every rank's ``generators`` (rank order):
        tensors, numbers and strings only."""
        return {"format": "cnnlab-checkpoint-1", "config": config, "history": history,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "averaged": self.averaged.state_dict() if self.averaged else None, "generators": generators,
                "ongoing": self.ongoing, "best": self.best.state() if self.best else None,
                "points": self.points.rows if self.points else None}

    def restore(self, state: dict[str, Any], rank: int = 0) -> list[dict[str, float]]:
        """Load a checkpoint made by :meth:`state` into rank ``rank``; returns the history of the
        epochs it holds. With more ranks than the checkpoint knows, the extra ones take rank 0's
        generators (the run goes on, no longer bit-identical to an unbroken one)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])
        generators = state["generators"][rank if rank < len(state["generators"]) else 0]
        torch.set_rng_state(generators["torch"])
        if generators.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(generators["cuda"], next(self.model.parameters()).device)
        self.shuffler.set_state(generators["shuffle"])
        if self.augmenter is not None and generators["augment"] is not None:
            self.augmenter.generator.set_state(generators["augment"])
        self.ongoing = state.get("ongoing")
        if self.best is not None:
            self.best.restore(state.get("best"))
        if self.points is not None:
            self.points.rows[:] = state.get("points") or []
        return [dict(row) for row in state["history"]]


class StopRequested(Exception):
    """Ctrl-C reached the training loop between two steps; ``ongoing`` is where the epoch stood:
    its shuffled order, the next batch's start, and the loss and hit sums so far."""

    def __init__(self, ongoing: dict[str, Any]) -> None:
        super().__init__("stopped between two steps")
        self.ongoing = ongoing


@contextlib.contextmanager
def stop_between_steps(enabled: bool) -> Iterator[threading.Event]:
    """While inside, Ctrl-C sets the yielded event instead of interrupting: the training loop stops
    after the step under way, so the checkpoint it writes is consistent. A second Ctrl-C stops at
    once. Only for one process in its main thread (torchrun's ranks would stop at different steps)."""
    asked = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def ask(_signum, _frame) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


def save_progress(config: TrainConfig, parts: TrainingParts, history: list[dict[str, float]], threads: int,
                  world: World) -> None:
    """The checkpoint after each epoch, or at a step boundary on Ctrl-C (``parts.ongoing`` set), so
    a crash loses at most the epoch under way. Every rank gives its random generators' states;
    rank 0 writes the file."""
    if not config.out:
        return
    generators = gather(parts.generator_states(), world)
    if world.main:
        save_checkpoint(config.out, parts.state(history, {**asdict(config), "threads": threads}, generators))
