"""Every option of a training run, in one plain dataclass (saved as ``config.json``), and the
checks of a run's settings against its data and this machine."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from cnnlab.data import DATASETS, Dataset
from cnnlab.data.registry import dataset_kind
from cnnlab.errors import CnnlabError, require
from cnnlab.models.files import PYTHON_ARCHITECTURE
from cnnlab.models.registry import resolve_model
from cnnlab.models.summary import Summary, byte_size, spec_summary
from cnnlab.models.timm_nets import is_timm
from cnnlab.training import system
from cnnlab.training.augment import get_level
from cnnlab.training.early_stopping import KEEP
from cnnlab.training.presets import get_preset
from cnnlab.training.tensorboard import LOGGERS

MIN_STEPS_PER_EPOCH, MIN_STEPS, MIN_BATCH = 20, 200, 16  # a small folder's run (fit_to_small_data)
SMALL_FOLDER = 2000  # a user's folder of fewer training images gets the small-folder recipe (fit_to_small_data)
# Its augmentation by the images' kind, else by their channels: digit warps for digits, crop-flip for colour
# photos, and for grey images of any other kind the light warps, which never mirror. Colour jitter
# ("colour") lost to crop-flip on validation (docs/notes/small-folders.md).
SMALL_AUGMENT: dict[str | int, str] = {"digits": "light", "characters": "light", "photo-digits": "light",
                                       3: "crop-flip", 1: "light"}
OPTIMIZERS = ("adam", "sgd", "adadelta")
SCHEDULES = ("onecycle", "step", "constant")
PICTURES = ("now", "after", "none")  # TrainConfig.pictures
DEFAULT_LR = {"adam": 1e-2, "sgd": 0.05, "adadelta": 1.0}


@dataclass
class TrainConfig:
    """Every option of a training run; saved as ``config.json`` in the run directory.

    The defaults are the ``fast`` preset (cnnlab.presets); :meth:`from_preset` starts from
    another preset instead. Options a preset does not set keep these defaults.
    """

    model: str = "cnn-fast"  # a registry name, a layer spec, or a file holding one (cnnlab.models.layers)
    dataset: str = "mnist"
    epochs: int = 1
    batch_size: int = 128
    lr: float | str | None = None  # None: the optimizer's default from DEFAULT_LR; "auto": lr-find's suggestion
    optimizer: str = "adam"
    schedule: str = "onecycle"
    label_smoothing: float = 0.1  # target 0.9 on the true class, 0.1 spread over all classes
    seed: int = 0
    val_split: float = 0.1
    normalize: bool = True  # False: pixels scaled to 0-1 only, as in the article
    augment: str = "light"  # none, light, strong or crop-flip (cnnlab.training.augment)
    tta: bool = False  # score the test set with test-time augmentation (cnnlab.evaluate)
    patience: int | None = None  # stop when val_loss has not improved for this many epochs; None: never
    keep: str = "best"  # the epoch delivered: "best" (lowest val_loss) or "last"; the other is written beside it
    ema: float = 0.0  # per-step decay of an exponential moving average of the weights; 0: off
    preset: str = "fast"  # the preset these settings started from (recorded, not applied)
    init: str | None = None  # a trained run to start from (cnnlab.training.start): fine-tuning
    freeze: bool = False  # with init: the loaded layers never learn, only the fresh ones
    limit: int | None = None
    image_size: int | None = None  # the square side to resize to; None: the data's own (a folder: median, <= 64)
    grey: bool = False  # make colour images grey (one channel)
    fit_small_data: bool = True  # a small folder of images gets smaller batches and more epochs (fit_to_small_data)
    device: str = "auto"
    threads: int | None = None  # None: every usable core less those other cnnlab trainings run
    data_dir: str | None = None
    out: str | None = None
    # When the run's pictures and report.html are drawn: "now", before train() returns; "after", by a
    # child process once the result is out (the command line's default: the prompt comes back first);
    # "none": report.html without pictures (cnnlab report draws them later).
    pictures: str = "now"
    log: str = "none"  # "tensorboard": event files in the run folder (cnnlab.training.tensorboard)

    @classmethod
    def from_preset(cls, name: str = "fast", kind: str | None = None, **overrides: Any) -> TrainConfig:
        """The preset's settings for the data's ``kind`` (default: the kind of ``overrides``'
        dataset, cnnlab.data.registry.dataset_kind), with ``overrides`` on top."""
        kind = kind or dataset_kind(str(overrides.get("dataset", "mnist")))
        return cls(**{**get_preset(name).settings_for(kind), **overrides, "preset": name})

    def __post_init__(self) -> None:
        # Paths as text, so the config is written to config.json as it is; Python callers pass Path too.
        self.data_dir, self.out, self.init = (str(p) if p is not None else None
                                              for p in (self.data_dir, self.out, self.init))

    def validate(self) -> None:
        """Raise :class:`CnnlabError` naming the first bad option."""
        if not self.model.startswith(PYTHON_ARCHITECTURE):  # a module of the user's own class: train(model=...)
            self.model = resolve_model(self.model)  # a registry name, or a spec's text (read from its file)
        require(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        require(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        require(self.lr in (None, "auto") or (isinstance(self.lr, int | float) and self.lr > 0),
                f"--lr must be a positive number or 'auto', got {self.lr}")
        require(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        require(self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}")
        require(self.patience is None or self.patience >= 1, f"--patience must be at least 1, got {self.patience}")
        started = self.init is not None or is_timm(self.model)
        require(started or not self.freeze, "--freeze needs --init RUN or a pretrained --model timm:NAME: the layers "
                "it keeps")
        require(not (started and self.lr == "auto"), "--lr auto sweeps a network from random weights, not one that "
                "starts from trained layers: give --lr, or leave it out (fine-tuning's rates are the run's, lower for "
                "the loaded layers)")
        require(not (started and self.grey), "--grey: a run that starts from --init or a timm backbone takes its "
                "start's channels; leave --grey out")
        require(self.log != "tensorboard" or importlib.util.find_spec("tensorboard") is not None,
                "--log tensorboard needs TensorBoard: pip install 'cnnlab[tensorboard]'")
        require(self.log in LOGGERS, f"--log must be one of {', '.join(LOGGERS)}, got {self.log}")
        require(self.keep in KEEP, f"--keep must be best or last, got {self.keep}")
        require(0 <= self.ema < 1, f"--ema must be in [0, 1) (e.g. 0.999), got {self.ema}")
        require(0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        require(self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}")
        require(self.device in ("auto", "cpu", "cuda", "mps"), "--device must be auto, cpu, cuda or mps")
        require(self.pictures in PICTURES, f"--pictures must be one of {', '.join(PICTURES)}, got {self.pictures}")
        get_level(self.augment)
        get_preset(self.preset)


def fit_to_small_data(config: TrainConfig, data: Dataset, users: bool, chosen: frozenset[str] = frozenset()
                      ) -> str | None:
    """A user's folder of a few hundred images would get a handful of steps from a preset made
    for 60,000 (3 epochs of batch 256). Where the run keeps the preset's settings, make the batch
    small enough for :data:`MIN_STEPS_PER_EPOCH` steps an epoch (a power of two, at least
    :data:`MIN_BATCH`) and the epochs enough for :data:`MIN_STEPS` steps; and a folder of fewer
    than :data:`SMALL_FOLDER` images gets the augmentation of :data:`SMALL_AUGMENT` for its images
    and early stopping (:func:`small_patience`). ``users``: the data is the user's own (a folder, a
    file, a Dataset made in Python); ``chosen``: the options the caller set, which stay, as does an
    augmentation other than the preset's. A run whose batch size or epochs were chosen
    (``fit_small_data`` False) is left as it is. Returns the note saying what changed
    (docs/notes/small-folders.md)."""
    preset = get_preset(config.preset).settings_for(data.kind)
    if not (config.fit_small_data and users):
        return None
    count, changes = len(data.train_labels), []
    if (config.batch_size, config.epochs) == (preset.get("batch_size"), preset.get("epochs")):
        batch = config.batch_size
        while batch > MIN_BATCH and count / batch < MIN_STEPS_PER_EPOCH:
            batch //= 2
        steps = -(-count // batch)
        epochs = max(config.epochs, -(-MIN_STEPS // steps))
        if (batch, epochs) != (config.batch_size, config.epochs):
            config.batch_size, config.epochs = batch, epochs
            changes.append(f"batch {batch} and {epochs} epochs ({epochs * steps} steps)")
    if count < SMALL_FOLDER:
        augment = SMALL_AUGMENT.get(data.kind) or SMALL_AUGMENT[data.channels]
        augment_chosen = "augment" in chosen or config.augment != preset.get("augment", config.augment)
        if not augment_chosen and augment != config.augment:
            config.augment = augment
            changes.append(f"'{augment}' augmentation")
        if "patience" not in chosen and config.patience is None and len(data.val_labels) and config.epochs > 1:
            config.patience = small_patience(config.epochs)
            changes.append(f"early stopping (--patience {config.patience})")
    if not changes:
        return None
    return (f"note: {count:,} training images are few for the preset: {', '.join(changes)} instead; "
            "--batch-size, --epochs, --augment and --patience choose")


def is_users(dataset: str) -> bool:
    """Whether ``dataset`` names the user's own data (a folder or a file) rather than a built-in dataset."""
    return dataset not in DATASETS


def users_data(data: Dataset) -> bool:
    """Whether the run's ``data`` is the user's own rather than a built-in dataset: a folder, a
    file, or a Dataset made in Python (its ``source`` names no built-in dataset)."""
    return data.source not in DATASETS


def small_patience(epochs: int) -> int:
    """Early stopping's patience for a small folder's run of ``epochs``: a quarter of them, at least 5."""
    return max(5, epochs // 4)


def check_memory(config: TrainConfig, shape: tuple[int, int, int], device: torch.device | None = None) -> None:
    """Refuse, before the network is built, a network whose training at ``config.batch_size``
    needs more memory than ``device`` (default: the one ``config.device`` picks) has free.

    ``shape``: the data's (classes, channels, side). The figure is ``cnnlab summary``'s
    (cnnlab.models.summary.Summary.training_bytes), worked out on the ``meta`` device. A network
    of the caller's own class (``python:``) exists already and is not checked, nor is memory that
    cannot be read (:func:`cnnlab.training.system.free_memory` gives None).
    """
    if config.model.startswith(PYTHON_ARCHITECTURE) or is_timm(config.model):  # not a spec: no table to read
        return
    device = device if device is not None else system.select_device(config.device)
    free = system.free_memory(device)
    if free is None:
        return
    table = spec_summary(config.model, *shape, config.batch_size)
    if problem := memory_shortfall(table, free, "GPU" if device.type == "cuda" else "machine"):
        name = config.model if len(config.model) <= 80 else config.model[:77] + "..."
        raise CnnlabError(f"the network '{name}' {problem}")


def memory_shortfall(table: Summary, free: int, where: str = "machine") -> str | None:
    """``"needs about 54.3 GB to train at batch 128 (...); this machine has 20.1 GB free: lower
    --batch-size to 47 or less, or the filters"``, or None when ``table``'s training fits ``free`` bytes."""
    if table.training_bytes <= free:
        return None
    batch = table.largest_batch_within(free)
    fix = (f"lower --batch-size to {batch} or less, or the filters" if batch
           else "use fewer filters or units, or a stride or a pool earlier")
    return f"needs {table.training_memory()}; this {where} has {byte_size(free)} free: {fix}"


def resolve_config(config: TrainConfig | None, options: dict[str, Any], kind: str | None = None
                   ) -> tuple[TrainConfig, nn.Module | None]:
    """``config`` (or the preset named by ``options["preset"]``, or ``fast``, with its settings for
    data of this ``kind``) with ``options`` on top, validated; and the network if ``model`` is a
    ``torch.nn.Module`` rather than a name or spec (``config.model`` then says ``python:`` and its class)."""
    network = options.get("model", config.model if config else None)
    if isinstance(network, nn.Module):
        kind = type(network)
        options["model"] = f"{PYTHON_ARCHITECTURE}{kind.__module__}.{kind.__qualname__}"
        if config is not None:
            config = replace(config, model=options["model"])
    else:
        network = None
    if {"batch_size", "epochs"} & {k for k, v in options.items() if v is not None}:
        options.setdefault("fit_small_data", False)  # the caller chose them: kept as they are
    preset = options.pop("preset", None)
    if preset or config is None:  # the preset's settings for this kind of data (the default: fast)
        base = TrainConfig.from_preset(preset or "fast", kind, dataset=options.get("dataset", "mnist"))
    else:
        base = config
    config = TrainConfig(**{**asdict(base), **options})
    config.validate()
    return config, network
