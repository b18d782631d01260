"""A network described as a table, as Keras' ``model.summary()`` and torchinfo do: each layer's
output shape, parameters, MFLOPs per image and receptive field, and the totals.

A network built from a layer spec gets one row per layer written (plus the parts the spec
implies); any other module gets one row per leaf module. FLOPs are PyTorch's FLOP counter's
(``torch.utils.flop_counter``, a multiply-add counted as 2), measured by running each layer on one
image. The receptive field is the side of the input square one output value sees, followed
along the main path (a residual block's shortcut adds nothing to it).

A registry name or a spec is described on PyTorch's ``meta`` device: its modules have shapes but
no storage, so a network too large for this machine is described without allocating it. The
training-memory figure (:attr:`Summary.training_bytes`) is the one cnnlab's training checks
against the free memory before it builds a network (cnnlab.training.config.check_memory).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.files import read_json
from cnnlab.models.files import load_model
from cnnlab.models.layers import Layer, parse, plan
from cnnlab.models.registry import MODELS, build, model_spec, resolve_model, spec_file

FLOAT_BYTES = 4
# Training keeps four copies of the weights: the weights, their gradients and Adam's two moments.
TRAINING_WEIGHT_COPIES = 4


@dataclass
class SummaryRow:
    """One layer: its name, output shape per image, parameters, MFLOPs per image, receptive field
    (None: the whole image, after a dense layer or global pooling)."""

    layer: str
    output: tuple[int, ...]
    parameters: int
    mflops: float
    receptive_field: int | None


@dataclass
class Summary:
    """A network's table and totals; ``str()`` gives the table as ``cnnlab summary`` prints it."""

    name: str
    input: tuple[int, ...]  # (channels, height, width)
    batch_size: int
    rows: list[SummaryRow] = field(default_factory=list)
    parameters: int = 0
    mflops: float = 0.0
    weight_bytes: int = 0
    activation_bytes: int = 0  # what a training step keeps for the backward pass at batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def training_bytes(self) -> int:
        """About what training at ``batch_size`` holds: the weights with their gradients and the
        optimizer's state (:data:`TRAINING_WEIGHT_COPIES`), and the activations kept for the backward pass."""
        return TRAINING_WEIGHT_COPIES * self.weight_bytes + self.activation_bytes

    def training_memory(self) -> str:
        """``"about 54.2 GB to train at batch 128 (weights with gradients and Adam's state 71.2 MB,
        activations 54.2 GB)"``: the training figure, in words."""
        return (f"about {byte_size(self.training_bytes)} to train at batch {self.batch_size} (weights with gradients "
                f"and Adam's state {byte_size(TRAINING_WEIGHT_COPIES * self.weight_bytes)}, activations "
                f"{byte_size(self.activation_bytes)})")

    def largest_batch_within(self, free_bytes: int) -> int:
        """The largest batch whose training fits ``free_bytes`` (0: not even one image)."""
        per_image = self.activation_bytes / self.batch_size if self.batch_size else 0
        room = free_bytes - TRAINING_WEIGHT_COPIES * self.weight_bytes
        return 0 if room < 0 else int(room // per_image) if per_image else self.batch_size

    def __str__(self) -> str:
        width = max(24, *(len(r.layer) + 2 for r in self.rows))
        lines = [f"{self.name}: input {_shape(self.input)}",
                 f"{'layer':<{width}}{'output':<14}{'params':>11}{'MFLOPs':>9}  receptive field"]
        for r in self.rows:
            field_text = "all" if r.receptive_field is None else f"{r.receptive_field}x{r.receptive_field}"
            lines.append(f"{r.layer:<{width}}{_shape(r.output):<14}{r.parameters:>11,}{r.mflops:>9.2f}  {field_text}")
        lines.append(f"Total: {self.parameters:,} parameters, {self.mflops:.2f} MFLOPs an image")
        lines.append(f"Memory: weights {_megabytes(self.weight_bytes)}; training at batch {self.batch_size} keeps "
                     f"about {_megabytes(self.activation_bytes)} of activations")
        return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.2f} MB"


def byte_size(count: int) -> str:
    """``"54.2 GB"``, ``"71.2 MB"``: a size in decimal units, as the memory line's MB."""
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"


def summary(model: str | Path | nn.Module, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
            batch_size: int | None = None) -> Summary:
    """The table of a network: a registry name, a layer spec, a file holding one, a run
    directory (or its ``model.safetensors``), or any ``torch.nn.Module``.

    Args:
        model: what to describe.
        num_classes, in_channels, image_size: the data it is built for (a run's come from its
            ``model.json``).
        batch_size: for the training-memory estimate (default: the run's, else 128).

    ``print(cnnlab.summary("seed-cnn"))`` prints the table; the :class:`Summary` holds its numbers.
    """
    if isinstance(model, nn.Module):
        return summarize(model, type(model).__name__, in_channels, image_size, batch_size or 128)
    text, path = str(model), Path(model)
    if text not in MODELS and (_is_dir(text) or path.suffix in (".safetensors", ".onnx")):
        if path.suffix == ".onnx":
            raise CnnlabError(f"{path}: an ONNX file holds no PyTorch layers to describe; give its run directory")
        network, info = load_model(path)
        run = path if path.is_dir() else path.parent
        batch = batch_size or _run_batch_size(run / "config.json")
        return summarize(network, str(path), info.in_channels, info.image_size, batch, info.spec)
    resolved = resolve_model(text)
    name = text if spec_file(text) else resolved  # a registry name, a spec file's path, or the spec
    table = spec_summary(resolved, num_classes, in_channels, image_size, batch_size or 128)
    table.name = name
    return table


def spec_summary(model: str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 batch_size: int = 128) -> Summary:
    """The table of a registry name or a spec's text, the network built on the ``meta`` device:
    its shapes, parameters, FLOPs and memory, with no storage allocated however large it is.
    A spec that does not fit its input or passes a budget raises :class:`SpecError` first."""
    with torch.device("meta"):
        network = build(model, num_classes, in_channels, image_size)
    return summarize(network, model, in_channels, image_size, batch_size, model_spec(model))


def _is_dir(text: str) -> bool:
    """Whether ``text`` names a folder; a spec too long to be a path (the system refuses it) does not."""
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):
        return False


def _run_batch_size(config: Path) -> int:
    """The batch size a run trained with (its ``config.json``), or 128 when it has no config."""
    if not config.is_file():
        return 128
    settings = read_json(config)
    batch = settings.get("batch_size", 128) if isinstance(settings, dict) else None
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise CnnlabError(f"{config}: batch_size should be a whole number of at least 1, got {batch!r}; "
                          "give --batch-size, or fix the file")
    return batch


def summarize(model: nn.Module, name: str = "model", in_channels: int = 1, image_size: int = 28,
              batch_size: int = 128, spec: str | None = None) -> Summary:
    """The table of ``model`` for ``(in_channels, image_size, image_size)`` images.

    ``spec``: the layer spec ``model`` was built from (rows are then its layers, as written).
    """
    was_training = model.training
    model.eval()
    try:
        groups = _spec_groups(model, spec, in_channels, image_size) if spec else _leaf_groups(model)
        rows, activations = _measure(model, groups, in_channels, image_size)
    finally:
        model.train(was_training)
    summary = Summary(name, (in_channels, image_size, image_size), batch_size, rows)
    summary.parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary.mflops = sum(r.mflops for r in rows)
    tensors = [*model.parameters(), *model.buffers()]
    summary.weight_bytes = sum(t.numel() * t.element_size() for t in tensors)
    summary.activation_bytes = activations * batch_size * FLOAT_BYTES
    return summary


@dataclass
class _Group:
    """Modules that make one row, in call order, and how the row moves the receptive field."""

    label: str
    modules: list[nn.Module]
    window: int = 1  # the kernel side, added to the receptive field times the current jump
    stride: int = 1
    whole: bool = False  # after it, every output sees the whole image
    windows: tuple[tuple[int, int], ...] = ()  # several (window, stride) in turn (a residual block)
    branch: str = ""  # an ensemble's member: each starts from the image again


def _spec_groups(model: nn.Module, spec: str, in_channels: int, image_size: int) -> list[_Group]:
    num_classes = model[-1].out_features
    steps = plan(parse(spec), num_classes, in_channels, image_size)
    modules, groups, start = list(model), [], 0
    for step in steps:
        with torch.device("meta"):  # only how many modules: nothing allocated
            count = len(step.make())
        layer = step.layer
        label = f"{layer.position} {layer.text}" if layer else (
            "  (flatten)" if isinstance(modules[start], nn.Flatten) else f"  (output) dense{num_classes}")
        groups.append(_Group(label, modules[start: start + count], *_window(layer, step.shape)))
        start += count
    return groups


def _window(layer: Layer | None, shape: tuple[int, ...]) -> tuple:
    """``(window, stride, whole, windows)`` of a spec layer, for the receptive field."""
    if layer is None or len(shape) == 1:
        return 1, 1, True, ()
    if layer.kind == "conv":
        return layer.options.get("kernel", 3), layer.options.get("stride", 1), False, ()
    if layer.kind in ("maxpool", "avgpool"):
        return int(layer.size), layer.options.get("stride") or int(layer.size), False, ()
    if layer.kind == "res":
        return 1, 1, False, ((3, layer.options.get("stride", 1)), (3, 1))
    return 1, 1, False, ()


def _leaf_groups(model: nn.Module) -> list[_Group]:
    groups = []
    for name, module in model.named_modules():
        if list(module.children()) or "shortcut" in name.split("."):
            continue
        kernel, stride = getattr(module, "kernel_size", 1), getattr(module, "stride", 1)
        kernel = kernel[0] if isinstance(kernel, tuple) else kernel
        stride = stride[0] if isinstance(stride, tuple) else stride
        whole = isinstance(module, nn.Linear | nn.Flatten | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
        branch = ".".join(name.split(".")[:2]) if name.startswith("members.") else ""
        groups.append(_Group(f"{name} {type(module).__name__}", [module], kernel, stride, whole, (), branch))
    return groups


def _measure(model: nn.Module, groups: list[_Group], in_channels: int, image_size: int) -> tuple[list, int]:
    """Run one image through ``model``, recording each module's input and output; then count each
    group's FLOPs by running its modules again on what they were given."""
    seen: dict[nn.Module, list[tuple[tuple, torch.Tensor]]] = {}

    def record(module, inputs, output):
        seen.setdefault(module, []).append((inputs, output))

    hooks = [m.register_forward_hook(record) for group in groups for m in group.modules]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    rows, field_side, jump, whole, activations, branch = [], 1, 1, False, 0, ""
    for group in groups:
        if group.branch != branch:
            field_side, jump, whole, branch = 1, 1, False, group.branch
        calls = [call for m in group.modules for call in seen.get(m, [])]
        if not calls:
            continue
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            for module in group.modules:
                for inputs, _ in seen.get(module, []):
                    module(*inputs)
        for window, stride in group.windows or ((group.window, group.stride),):
            field_side, jump = field_side + (window - 1) * jump, jump * stride
        whole = whole or group.whole
        activations += sum(math.prod(output.shape) for _, output in calls if isinstance(output, torch.Tensor))
        output = calls[-1][1]
        parameters = sum(p.numel() for m in group.modules for p in m.parameters(recurse=True) if p.requires_grad)
        rows.append(SummaryRow(group.label.strip() if not group.label.startswith("  ") else group.label,
                               tuple(output.shape[1:]), parameters, counter.get_total_flops() / 1e6,
                               None if whole else min(field_side, image_size)))
    return rows, activations
