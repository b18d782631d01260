"""What a resumed run needs back, gathered in one place: cnnlab.train() saves it after every epoch
(:func:`save_checkpoint`) and ``cnnlab train --resume`` puts it back.

Everything random is a seeded generator whose state is saved, so a resumed run takes the same
shuffles, warps and dropout masks as one that never stopped, and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import threading
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError, first_line, require
from cnnlab.files import atomic_write_bytes
from cnnlab.models.files import CHECKPOINT_FILE, PYTHON_ARCHITECTURE
from cnnlab.models.inference import check_logits
from cnnlab.models.registry import build_model
from cnnlab.reporting.report import RUN_FILES
from cnnlab.training.augment import Augmenter
from cnnlab.training.config import TrainConfig
from cnnlab.training.curves import EpochPoints
from cnnlab.training.distributed import World
from cnnlab.training.early_stopping import BestEpoch
from cnnlab.training.optim import average_weights, make_optimizer_and_schedule
from cnnlab.training.start import HeadFirst, Start
from cnnlab.training.tensorboard import TensorBoardLog


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> None:
    """Write a training checkpoint (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(Path(folder) / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``: plain
    data only, so a crafted file cannot run code (a pickle that asks for more is refused). Its
    fields are checked (:func:`check_fields`): a damaged or hand-edited one is one line, never a traceback."""
    path = Path(folder) / CHECKPOINT_FILE if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise CnnlabError(f"{path}: no checkpoint here; --resume takes the run directory of a 'cnnlab train "
                          "--out DIR' that finished at least one epoch")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses a pickle that asks for a function (GLOBAL), to call it
        if asked := re.search(r"GLOBAL ([\w.]+)", str(exc)):
            raise CnnlabError(f"{path}: refused: loading it could run code (it asks for {asked.group(1)}); resume "
                              f"only from checkpoints cnnlab wrote, or {AGAIN}") from None
        # torch's own text for a pickle it refused advises loading it unsafely: it is not repeated here;
        # a KeyError names only a stray byte
        why = ("not tensors and plain data as cnnlab writes them" if "weights_only" in str(exc) else
               "not a file torch.save wrote" if isinstance(exc, KeyError) else first_line(exc))
        raise CnnlabError(f"{path}: damaged, or not a cnnlab checkpoint ({why}); {AGAIN}") from None
    check_fields(state, path)
    return state


AGAIN = "train again into that folder with --overwrite (overwrite=True in Python)"
FORMAT = "cnnlab-checkpoint-1"
NONE = type(None)
# Each field of a checkpoint and the types it may have; the last four are absent from the oldest checkpoints.
FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,), "config": (dict,), "history": (list,), "model": (dict,), "optimizer": (dict,),
    "scheduler": (dict,), "generators": (list,),
    "averaged": (dict, NONE), "ongoing": (dict, NONE), "best": (dict, NONE), "points": (list, NONE)}
OPTIONAL = ("averaged", "ongoing", "best", "points")
CONFIG_NEEDS = ("model", "dataset", "epochs", "batch_size", "seed")  # the rest have defaults older runs lacked
GENERATORS = {"torch": (torch.Tensor,), "shuffle": (torch.Tensor,), "augment": (torch.Tensor, NONE),
              "cuda": (torch.Tensor, NONE)}
ONGOING = {"order": (torch.Tensor,), "next": (int,), "loss_sum": (torch.Tensor,), "hits": (torch.Tensor,),
           "ce_sum": (torch.Tensor,)}
BEST = {"patience": (int,), "epoch": (int,), "val_loss": (float, int), "weights": (dict, NONE), "stopped": (bool,),
        "lowest": (float, int), "lowest_epoch": (int,)}
LATER_KEYS = ("cuda", "ce_sum", "lowest", "lowest_epoch")  # absent from the oldest checkpoints
POINT_KEYS = {"epoch", "loss", "train_ce", "accuracy"}  # a row of history.csv or points.csv...
EPOCH_KEYS, VAL_KEYS = POINT_KEYS | {"seconds"}, {"val_loss", "val_accuracy"}  # ...with these where it has them


def check_fields(state: Any, path: Path) -> None:
    """Raise a :class:`CnnlabError` saying the checkpoint at ``path`` is damaged unless ``state``
    has every field :meth:`TrainingParts.state` writes, each of its type (the config's are checked
    by :func:`checkpoint_config`, the tensors' shapes as they are loaded into the network)."""
    def damaged(what: str) -> CnnlabError:
        return CnnlabError(f"{path}: damaged checkpoint ({what}); it cannot be resumed: {AGAIN}")

    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise damaged(f"not a {FORMAT}")
    for key, kinds in FIELDS.items():
        if key not in state and key not in OPTIONAL:
            raise damaged(f"no '{key}'")
        if not isinstance(state.get(key), kinds):
            raise damaged(f"'{key}' is a {type(state[key]).__name__}")
    if missing := [key for key in CONFIG_NEEDS if key not in state["config"]]:
        raise damaged(f"its config has no '{missing[0]}'")
    points = state.get("points") or []
    for name, rows, keys in (("history", state["history"], EPOCH_KEYS), ("points", points, POINT_KEYS)):
        if not all(isinstance(row, dict) and row.keys() in (keys, keys | VAL_KEYS) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in row.values()) for row in rows):
            raise damaged(f"a row of its {name} is not the numbers cnnlab writes")
    if len({"val_loss" in row for row in state["history"] + points}) > 1:
        raise damaged("some of its rows have validation figures and some do not")
    if [row["epoch"] for row in state["history"]] != list(range(1, len(state["history"]) + 1)):
        raise damaged("its history's epochs are not 1, 2, 3...")
    parts = [("a random generator", g, GENERATORS) for g in state["generators"] or [None]]
    parts += [(key, state[key], spec) for key, spec in (("ongoing", ONGOING), ("best", BEST)) if state.get(key)]
    for name, value, spec in parts:
        if not (isinstance(value, dict) and all(isinstance(value[k], kinds) if k in value else k in LATER_KEYS
                                                for k, kinds in spec.items())):
            raise damaged(f"{name} is not as cnnlab writes it")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items()):
        raise damaged("its 'model' holds more than named tensors")


def checkpoint_config(state: dict[str, Any], path: Path, out: str) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint was trained with, writing to ``out``: every field of
    its type and valid, or a :class:`CnnlabError` saying the checkpoint at ``path`` is damaged."""
    hints = typing.get_type_hints(TrainConfig)
    for key, value in state["config"].items():
        if key not in hints:
            raise CnnlabError(f"{path}: damaged checkpoint (its config has an unknown field '{key}'); {AGAIN}")
        if not of_type(value, hints[key]):
            raise CnnlabError(f"{path}: damaged checkpoint (its config's {key} is {str(value)[:40]!r}, not "
                              f"{getattr(hints[key], '__name__', hints[key])}); {AGAIN}")
    config = TrainConfig(**{**state["config"], "out": out})
    try:
        config.validate()
    except CnnlabError as exc:
        raise CnnlabError(f"{path}: damaged checkpoint (its config: {exc}); {AGAIN}") from None
    return config


def of_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (``int``, ``float | str | None``...), an
    int counting as a float and a bool as neither."""
    allowed = set(typing.get_args(hint)) or {hint}
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, tuple(allowed | ({int} if float in allowed else set())))


@dataclass(frozen=True)
class RunShape:
    """What a resumed checkpoint must fit besides the network: the run's training images, whether it
    has a validation split, its epochs, its steps an epoch (on each rank) and its batch size."""

    train_images: int
    validation: bool
    epochs: int
    steps_per_epoch: int
    batch_size: int

    def misfit(self, state: dict[str, Any]) -> str | None:
        """What in ``state`` does not fit this run (None: all of it fits)."""
        rows = state["history"] + (state.get("points") or [])
        ongoing, schedule = state.get("ongoing"), state["scheduler"]
        if rows and ("val_loss" in rows[0]) != self.validation:
            return f"its rows {'lack' if self.validation else 'have'} validation figures, and the run has " \
                   f"{'a' if self.validation else 'no'} validation split"
        if ongoing and not ongoing_fits(ongoing, self.train_images):
            return "where its epoch stood does not fit the run's training images"
        left = ((self.epochs - len(state["history"])) * self.steps_per_epoch
                - (ongoing["next"] // self.batch_size if ongoing else 0))
        if "total_steps" in schedule and schedule["last_epoch"] + left > schedule["total_steps"]:  # one-cycle's end
            return (f"its schedule has taken {schedule['last_epoch']} of its {schedule['total_steps']} steps, and the "
                    f"epochs left take {left} more")
        return None


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
    log: TensorBoardLog | None = None  # --log tensorboard's writer (the run folder's holder only)

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
        return {"format": FORMAT, "config": config, "history": history,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "averaged": self.averaged.state_dict() if self.averaged else None, "generators": generators,
                "ongoing": self.ongoing, "best": self.best.state() if self.best else None,
                "points": self.points.rows if self.points else None}

    def restore(self, state: dict[str, Any], rank: int = 0, source: str = "the checkpoint",
                run: RunShape | None = None) -> list[dict[str, float]]:
        """Load a checkpoint made by :meth:`state` (from ``source``, named in errors) into rank
        ``rank``; returns the history of the epochs it holds. With more ranks than the checkpoint
        knows, the extra ones take rank 0's generators (the run goes on, no longer bit-identical to
        an unbroken one). A state that does not fit this network, or this ``run``, is a :class:`CnnlabError`."""
        def damaged(what: str) -> CnnlabError:
            return CnnlabError(f"{source}: damaged checkpoint ({what}); it cannot be resumed: {AGAIN}")

        if what := self.misfit(state) or (run.misfit(state) if run is not None else None):
            raise damaged(what)
        try:
            self._load(state, state["generators"][rank if rank < len(state["generators"]) else 0])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:  # load_state_dict's
            reason = first_line(exc)
            raise damaged(f"its saved state does not fit the run's network: {reason}") from None
        return [dict(row) for row in state["history"]]

    def misfit(self, state: dict[str, Any]) -> str | None:
        """What in ``state`` does not fit these parts (None: all of it fits), beyond what
        ``load_state_dict`` checks: values that would fail only later, in the middle of training."""
        weights = (state.get("best") or {}).get("weights")
        trained = self.averaged.module if self.averaged is not None else self.model
        if not same_form(self.scheduler.state_dict(), state["scheduler"]):
            return "its learning-rate schedule is not this run's"
        if not optimizer_fits(self.optimizer, state["optimizer"]):
            return "its optimizer's state does not fit the run's network"
        if weights is not None and not same_form(trained.state_dict(), weights):
            return "its best epoch's weights do not fit the run's network"
        return None

    def _load(self, state: dict[str, Any], generators: dict[str, torch.Tensor | None]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])
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


def make_parts(config: TrainConfig, data: Dataset, background: list[float], device: torch.device, world: World,
               steps_per_epoch: int, network: torch.nn.Module | None = None, start: Start | None = None
               ) -> TrainingParts:
    """The network (``network`` if given, else built from ``config.model``; channels_last, trick 2),
    its weight average (trick 7), the optimizer and schedule, and the seeded generators: one
    shuffle for all ranks (each takes its shard) and an augmentation of each rank's own. A run
    fine-tuned from ``start`` (its weights in ``network`` already) gets its learning rates by layer,
    and a schedule that can rest the loaded layers (cnnlab.training.start)."""
    if network is None:
        network = build_model(config.model, data.num_classes, data.image_size, data.channels)
    check_logits(network, data.num_classes, data.image_size, data.channels)
    model = network.to(device, memory_format=torch.channels_last)
    if start is not None and config.freeze:
        start.freeze(model)
    groups = start.lr_factors(model) if start is not None else None
    optimizer, scheduler = make_optimizer_and_schedule(config, model, steps_per_epoch, groups)
    if groups and not config.freeze:  # the output layer and any fresh ones learn alone first
        scheduler = HeadFirst(scheduler, [i for i, (_, factor) in enumerate(groups) if factor < 1], config.epochs)
    augmenter = Augmenter.for_level(config.augment, background, config.seed + 1 + world.rank)
    return TrainingParts(model, optimizer, scheduler, average_weights(model, config.ema),
                         torch.Generator().manual_seed(config.seed), augmenter,
                         best=BestEpoch(config.patience) if len(data.val_labels) else None)


def resumable(run: str | Path, own_class: bool = False) -> tuple[dict[str, Any], TrainConfig]:
    """The checkpoint in ``run`` and the :class:`TrainConfig` it was trained with (writing to
    ``run`` again), checked: a :class:`CnnlabError` when either is damaged, nothing is left to do
    (every epoch trained and every file written), or the run's network is of a class of the user's
    and no ``own_class`` instance is given."""
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    state = load_checkpoint(run)
    config = checkpoint_config(state, folder / CHECKPOINT_FILE, str(folder))
    if config.model.startswith(PYTHON_ARCHITECTURE) and not own_class:
        raise CnnlabError(f"{run} trains a network of your own class ({config.model.removeprefix(PYTHON_ARCHITECTURE)})"
                          "; resume it in Python with cnnlab.training.resume_training(run, model=YourClass())")
    done, stopped = len(state["history"]), bool((state.get("best") or {}).get("stopped"))
    if (folder / RUN_FILES[-1]).is_file():  # a training's last file: the run is complete
        require(not stopped, f"{run}: it stopped early after epoch {done} (--patience {config.patience}); "
                "nothing to resume")
        require(done < config.epochs, f"{run}: all {config.epochs} epochs are done already; nothing to resume")
    return state, config


def check_still_resumable(run: Path, state: dict[str, Any]) -> None:
    """Under the run's lock: refuse to resume from ``state`` (read before the lock was taken) when the
    run has gone on since, its checkpoint further or its files all written by another training."""
    now, _ = resumable(run)
    where = (len(state["history"]), (state.get("ongoing") or {}).get("next"))
    require((len(now["history"]), (now.get("ongoing") or {}).get("next")) == where,
            f"{run}: another training went on with this run while this one read it; resume it again to go on "
            "from where it stands now")


def resume_line(config: TrainConfig, history: list[dict[str, float]], best: BestEpoch | None) -> str:
    """What a resumed run does: train on, or only write the files of one whose epochs are all done."""
    if len(history) < config.epochs and not (best is not None and best.stopped):
        return f"Resuming {config.out} after epoch {len(history)} of {config.epochs}"
    return f"Finishing {config.out}: its epochs are done; scoring the test set and writing its files"


def same_form(fresh: Any, loaded: Any) -> bool:
    """Whether ``loaded`` has the form of ``fresh`` (a state_dict as these parts made it): the same
    keys and lengths, tensors of the same shapes, numbers where numbers are (an int for a float),
    and the same type elsewhere."""
    if isinstance(fresh, dict):
        return isinstance(loaded, dict) and fresh.keys() == loaded.keys() and all(
            same_form(fresh[k], loaded[k]) for k in fresh)
    if isinstance(fresh, list | tuple):
        return isinstance(loaded, list | tuple) and len(fresh) == len(loaded) and all(map(same_form, fresh, loaded))
    if isinstance(fresh, torch.Tensor):
        return isinstance(loaded, torch.Tensor) and loaded.shape == fresh.shape
    if isinstance(fresh, int | float) and not isinstance(fresh, bool):
        return isinstance(loaded, int | float) and not isinstance(loaded, bool)
    return type(loaded) is type(fresh)


def optimizer_fits(optimizer: torch.optim.Optimizer, loaded: dict[str, Any]) -> bool:
    """Whether ``loaded`` could be ``optimizer``'s state: its groups of the same form, and each
    parameter's state tensors of that parameter's shape (or scalars, as a step count)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def fits(index: Any, kept: Any) -> bool:
        return isinstance(index, int) and 0 <= index < len(params) and isinstance(kept, dict) and all(
            value is None or (isinstance(value, torch.Tensor) and value.shape in (params[index].shape, torch.Size()))
            for value in kept.values())

    return (same_form(optimizer.state_dict()["param_groups"], loaded.get("param_groups"))
            and isinstance(loaded.get("state"), dict) and all(fits(i, kept) for i, kept in loaded["state"].items()))


def ongoing_fits(ongoing: dict[str, Any], train_images: int) -> bool:
    """Whether an interrupted epoch's position (:class:`StopRequested`) fits ``train_images``
    training images: an order of indices among them, a next batch within it, scalar sums."""
    order, start = ongoing["order"], ongoing["next"]
    return (order.dtype == torch.long and order.dim() == 1 and len(order) <= train_images
            and 0 <= start <= len(order) and (not len(order) or 0 <= order.min() <= order.max() < train_images)
            and all(ongoing[k].dim() == 0 for k in ("loss_sum", "hits", "ce_sum") if k in ongoing))
