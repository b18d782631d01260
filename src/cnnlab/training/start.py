"""Fine-tuning: a run that starts from another run's network (``--init RUN``), as fastai's ``fine_tune``.

    the run's model.json   what the new run takes from it unless told otherwise: the architecture,
                           the image size and channels, the kind of images, the normalisation, and
                           how photos are read (an MNIST digit model's photos: their ink found)
    its weights            every tensor whose name and shape match is loaded; the output layer
                           starts fresh when the classes differ, even where its shape matches
    the schedule           the fresh layers alone for the first epoch (:data:`HEAD_EPOCHS`), then
                           every layer, the loaded ones at lower learning rates, the earliest lowest
                           (:data:`LOADED_LR`); ``--freeze`` keeps the loaded ones fixed throughout
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.files import PYTHON_ARCHITECTURE, SPEC_ARCHITECTURE, ModelInfo, load_model
from cnnlab.models.timm_nets import check_weights_at_hand, input_config, is_timm
from cnnlab.training.config import TrainConfig, is_users

HEAD_EPOCHS = 1  # epochs in which only the fresh layers learn, in a run of more epochs than this
# Learning rates of the loaded layers, as fractions of the run's, from the first third of them to the last:
# fastai's fine_tune spreads its rates from lr/100 to lr over its layer groups.
LOADED_LR = (0.01, 0.03, 0.1)


@dataclass
class Start:
    """The run a training starts from: its folder, its ``model.json`` and its weights; once applied
    to a network (:meth:`apply`), the names of the tensors loaded and of those that start fresh."""

    run: str
    info: ModelInfo
    weights: dict[str, torch.Tensor] | None  # None: a pretrained backbone's, built with it (:meth:`backbone`)
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)  # the output layer's tensors: they learn from the first step
    layers: dict[str, list[str]] = field(default_factory=dict)  # "loaded" and "fresh": each layer's name and kind

    @classmethod
    def read(cls, run: str | Path) -> Start:
        """The trained run (a run folder or a ``.safetensors`` file), read as ``cnnlab.load`` reads it:
        checked, without running code."""
        if not Path(run).exists():
            raise CnnlabError(f"--init {run}: not found; give the folder of a finished 'cnnlab train --out DIR' (or "
                              "its model.safetensors)")
        try:
            model, info = load_model(run)
        except CnnlabError as exc:
            raise CnnlabError(f"--init: {exc}") from None
        return cls(str(run), info, {k: v.detach() for k, v in model.state_dict().items()})

    @classmethod
    def backbone(cls, model: str, check: bool = True) -> Start:
        """A timm backbone's ImageNet weights (``--model timm:NAME``): its images are those of its
        pretrained config, and its classes ImageNet's, never the run's. ``check``: refuse, offline,
        weights missing from the Hub's cache."""
        own = input_config(model)
        if check:
            check_weights_at_hand(model)
        info = ModelInfo(model, [], own.image_size, own.mean, own.std, "ImageNet", in_channels=own.channels,
                         kind="natural")
        return cls(f"{model}'s pretrained weights", info, None)

    def settings(self) -> dict[str, Any]:
        """The options a run takes from this one unless it sets them: its network and image size."""
        architecture = self.info.architecture
        if architecture.startswith(PYTHON_ARCHITECTURE):
            raise CnnlabError(f"--init {self.run}: its network is of your own class ({architecture}); pass a fresh "
                              "instance as model= in Python")
        model = self.info.spec if architecture == SPEC_ARCHITECTURE else architecture
        return {"model": model, "image_size": self.info.image_size}

    def apply(self, network: nn.Module, class_names: list[str]) -> str:
        """Load every tensor of the start whose name and shape match into ``network`` (a new run's,
        for ``class_names``), the output layer only when the classes are the same; returns the line
        that says what was loaded and what starts fresh."""
        own = network.state_dict()
        weights = self.weights if self.weights is not None else dict(own)  # a backbone's: built with them
        same_classes = list(class_names) == list(self.info.class_names)
        self.head = output_tensors(network)
        self.loaded = [k for k, v in own.items() if k in weights and weights[k].shape == v.shape
                       and (same_classes or k not in self.head)]
        self.fresh = [k for k in own if k not in self.loaded]
        if not any(k in self.loaded for k, _ in network.named_parameters()):
            raise CnnlabError(f"--init {self.run}: none of its layers fits the network being trained "
                              f"({self.info.architecture} there); leave --model out to train its own")
        network.load_state_dict({k: weights[k] for k in self.loaded}, strict=False)
        self.layers = {"loaded": layer_names(self.loaded, network), "fresh": layer_names(self.fresh, network)}
        return self.line(network)

    def line(self, network: nn.Module) -> str:
        loaded, fresh = self.layers["loaded"], self.layers["fresh"]
        loaded_names = set(self.loaded)
        count = sum(p.numel() for k, p in network.named_parameters() if k in loaded_names)
        text = f"Starting from {self.run}: loaded {len(loaded)} layer{'s' * (len(loaded) != 1)} ({short(loaded)}; " \
               f"{count:,} weights)"
        if not fresh:
            return text + "; none starts fresh"
        why = " (the classes differ)" if set(self.head) & set(self.fresh) else ""
        return text + f"; fresh: {short(fresh)}{why}"

    def record(self) -> dict[str, Any]:
        """What ``config.json`` says of the start."""
        run = self.run if self.weights is None else str(Path(self.run).resolve())
        return {"run": run, **self.layers}

    def learns_first(self) -> set[str]:
        """The tensors that learn from the first step: the fresh ones and the output layer."""
        return set(self.fresh) | set(self.head)

    def lr_factors(self, network: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        """The network's parameters in groups, each with its fraction of the run's learning rate:
        the loaded ones in thirds (:data:`LOADED_LR`), then the fresh ones and the output layer at 1."""
        named, first = list(network.named_parameters()), self.learns_first()
        loaded = [p for k, p in named if k not in first]
        groups = []
        for index, factor in enumerate(LOADED_LR):
            part = loaded[index * len(loaded) // len(LOADED_LR) : (index + 1) * len(loaded) // len(LOADED_LR)]
            if part:
                groups.append((part, factor))
        return [*groups, ([p for k, p in named if k in first], 1.0)]

    def freeze(self, network: nn.Module) -> None:
        """``--freeze``: the loaded parameters but the output layer never learn (no gradients are
        computed for them)."""
        first = self.learns_first()
        for name, parameter in network.named_parameters():
            if name not in first:
                parameter.requires_grad_(False)


def output_tensors(network: nn.Module) -> list[str]:
    """The names of the output layer's tensors: the classifier a timm network names, each member's
    of an ensemble, else the last module with parameters of its own."""
    if isinstance(getattr(network, "members", None), nn.ModuleList):  # cnnlab.models.registry.Ensemble
        return [f"members.{i}.{name}" for i, member in enumerate(network.members) for name in output_tensors(member)]
    if hasattr(network, "get_classifier"):
        classifier = network.get_classifier()
        ids = {id(t) for t in classifier.state_dict(keep_vars=True).values()}
        return [k for k, v in network.state_dict(keep_vars=True).items() if id(v) in ids]
    last = ""
    for name, module in network.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return [k for k in network.state_dict() if k.rsplit(".", 1)[0] == last]


def layer_names(tensors: list[str], network: nn.Module) -> list[str]:
    """The layers (modules) of ``network`` that ``tensors`` belong to, in order, each once, as
    ``"Conv2d 1"`` (its kind and its name in the network)."""
    modules = dict(network.named_modules())
    names = dict.fromkeys(name.rsplit(".", 1)[0] if "." in name else "" for name in tensors)
    return [f"{type(modules[name]).__name__} {name}".strip() if name in modules else name for name in names]


def short(names: list[str], most: int = 6) -> str:
    return ", ".join(names) if len(names) <= most else ", ".join(names[:3]) + f", ... {', '.join(names[-2:])}"


class HeadFirst:
    """A learning-rate schedule whose loaded parameter groups rest (learning rate 0) for the first
    :data:`HEAD_EPOCHS` of a run of more ``epochs`` than that: the head phase of a fine-tuning run.
    Resting by rate rather than by ``requires_grad`` keeps every parameter in the graph, as
    torchrun's DDP needs, and keeps batch norm's statistics following the new images. The
    schedule's own rates are kept aside and given back before each of its steps, so a schedule
    that computes a step's rate from the last (step, constant) goes on from where it was, not from 0."""

    def __init__(self, schedule: Any, resting: list[int], epochs: int) -> None:
        self.schedule, self.resting, self.epochs, self.active = schedule, resting, epochs, False
        self.rates = [group["lr"] for group in schedule.optimizer.param_groups]

    def begin_epoch(self, epoch: int) -> None:
        """Rest the loaded groups in ``epoch`` (1-based) if it is one of the head phase's."""
        self.active = self.epochs > HEAD_EPOCHS and epoch <= HEAD_EPOCHS
        self._apply()

    def step(self) -> None:
        groups = self.schedule.optimizer.param_groups
        for group, rate in zip(groups, self.rates, strict=True):
            group["lr"] = rate
        self.schedule.step()
        self.rates = [group["lr"] for group in groups]
        self._apply()

    def _apply(self) -> None:
        groups = self.schedule.optimizer.param_groups
        for index in self.resting:
            groups[index]["lr"] = 0.0 if self.active else self.rates[index]

    def get_last_lr(self) -> list[float]:
        return self.schedule.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return {**self.schedule.state_dict(), "head_first_rates": list(self.rates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.rates = list(state.pop("head_first_rates", self.rates))
        self.schedule.load_state_dict(state)


def starting_point(config: TrainConfig | None, options: dict[str, Any], kind: str | None, resuming: bool = False
                   ) -> tuple[Start | None, str | None]:
    """The run to start from (``init``), read; its settings put into ``options`` where neither they nor a
    ``config`` given set them; and the kind of the data, the start's for a folder of the user's. The
    start is recorded by its absolute path, so a resumed run finds it from anywhere; ``resuming``: a
    backbone's weights come from the checkpoint, and need not be at hand."""
    init = options.get("init") or (config.init if config else None)
    model = str(options.get("model") or (config.model if config else ""))
    if not init and is_timm(model):  # a pretrained backbone: its images' size unless the run sets one
        start = Start.backbone(model, check=not resuming)
        if config is None and options.get("image_size") is None:
            options["image_size"] = start.info.image_size
        return start, kind
    if not init:
        return None, kind
    start = Start.read(init)
    if options.get("init"):
        options["init"] = str(Path(init).resolve())
    if config is None:
        for key, value in start.settings().items():
            if options.get(key) is None:
                options[key] = value
    dataset = str(options.get("dataset") or (config.dataset if config else "mnist"))
    return start, kind or (start.info.kind if is_users(dataset) else None)
