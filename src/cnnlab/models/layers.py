"""The layer language: a network in one line of text, checked before anything is built.

    conv32k5-same maxpool dropout0.2 dense128        the article's CNN (805,066 parameters)
    dense784                                         the article's MLP

A spec is layers separated by spaces or new lines; in a file, ``#`` starts a comment. Each layer
is a kind, then its size, then options: ``conv32k5s2-same-gelu`` is a convolution of 32 filters,
kernel 5, stride 2, 'same' padding, GELU. The words are Keras' (``dense``, ``dropout``,
``maxpool``, ``batchnorm``), with short forms (``fc``, ``drop``, ``pool``, ``bn``). What the
data decides is left out: the input's channels and size, the Flatten before the first dense
layer that follows a map, and the output layer (a dense layer of the dataset's class count,
added at the end unless the spec ends with a bare ``dense``). ``init=glorot`` starts the weights
as Keras does. docs/reference/layers.md has the table of every kind, its options and defaults.

:func:`plan` reads a spec and works out every layer's output shape and parameters with plain
arithmetic, so a spec that does not fit its input, or that would pass the parameter budget, is
refused with the layer's position and text before one tensor is allocated. :func:`build_spec`
then makes the network: one ``nn.Sequential`` whose modules are exactly the layers written.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from cnnlab.errors import CnnlabError

MAX_LAYERS = 500
MAX_PARAMETERS = 100_000_000  # a spec whose weights pass this is refused before anything is allocated
MAX_MAP_VALUES = 50_000_000  # one layer's output values per image (200 MB of float32)
MAX_SPEC_CHARACTERS = 100_000
MAX_LAYER_NUMBER = 1_000_000  # a size, kernel, stride or padding; the budgets and the memory check bound the rest
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
ALIASES = {"fc": "dense", "drop": "dropout", "pool": "maxpool", "bn": "batchnorm", "globalavgpool": "gap",
           "residual": "res"}
TOKEN = re.compile(r"(?P<kind>[a-z]+)(?P<size>\d+(?:\.\d+)?)?(?P<options>(?:[a-z]\d+)*)(?P<flags>(?:-[a-z]+)*)")
OPTION = re.compile(r"([a-z])(\d+)")
SETTINGS = {"init": ("default", "glorot")}


class SpecError(CnnlabError):
    """A spec that cannot be read or does not fit its input; the message names the layer."""


@dataclass(frozen=True)
class Kind:
    """One kind of layer: its size's meaning, its options and flags, and their defaults."""

    size: str  # what the number after the kind is, "" if it takes none
    needs_size: bool = False
    default_size: float | None = None
    options: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # letter -> (meaning, default)
    flags: tuple[str, ...] = ()
    summary: str = ""


ACTIVATION_FLAGS = (*ACTIVATIONS, "linear")
KINDS: dict[str, Kind] = {
    "conv": Kind("filters", True, None, {"k": ("kernel", 3), "s": ("stride", 1), "p": ("padding", 0)},
                 ("same", "valid", "nobias", *ACTIVATION_FLAGS), "2D convolution (Keras Conv2D), then ReLU"),
    "maxpool": Kind("pool size", False, 2, {"s": ("stride", None)}, (), "max pooling (MaxPooling2D)"),
    "avgpool": Kind("pool size", False, 2, {"s": ("stride", None)}, (), "average pooling (AveragePooling2D)"),
    "gap": Kind("", summary="global average pooling to one value per channel (GlobalAveragePooling2D)"),
    "batchnorm": Kind("", summary="batch normalization over channels (BatchNormalization)"),
    "dropout": Kind("rate", True, summary="zero this fraction of values in training (Dropout)"),
    "dense": Kind("units", False, None, {}, ("nobias", *ACTIVATION_FLAGS),
                  "fully connected layer (Dense), then ReLU; a bare last one is the output"),
    "flatten": Kind("", summary="a map to a vector (Flatten); implied before a dense layer"),
    "res": Kind("filters", True, None, {"s": ("stride", 1)}, (),
                "residual block: two 3x3 conv+batchnorm, ReLU, plus the input (1x1 conv if it must change)"),
    "crop": Kind("pixels", True, summary="drop this many pixels from each edge (cnn-fast's border crop)"),
    **{name: Kind("", summary=f"{name} activation") for name in ACTIVATIONS},
    "softmax": Kind("", summary="the output as probabilities (Keras' softmax): only last, after the output layer; "
                                "cnnlab's loss and answers apply it, so it adds no layer"),
}


@dataclass(frozen=True)
class Layer:
    """One layer as written: its 1-based ``position``, its ``text``, and what it says."""

    position: int
    text: str
    kind: str
    size: float | None
    options: dict[str, int]
    flags: tuple[str, ...]

    def fail(self, problem: str) -> SpecError:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."  # a line, however long the word
        return SpecError(f"layer {self.position} '{text}': {problem}")

    @property
    def activation(self) -> str:
        chosen = [f for f in self.flags if f in ACTIVATION_FLAGS]
        return chosen[-1] if chosen else "relu"


@dataclass
class Spec:
    """A parsed spec: its layers and settings (``init``)."""

    text: str
    layers: list[Layer]
    settings: dict[str, str]


def read_spec_text(text: str) -> str:
    """A spec file's or option's text as one line: comments dropped, whitespace collapsed."""
    if len(text) > MAX_SPEC_CHARACTERS:
        raise SpecError(f"the spec is {len(text):,} characters long; cnnlab reads at most {MAX_SPEC_CHARACTERS:,}")
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return " ".join(" ".join(lines).replace(",", " ").split())


def parse(text: str) -> Spec:
    """Read a spec into its layers, or raise :class:`SpecError` naming the first bad layer."""
    line = read_spec_text(text)
    tokens = line.split()
    if not tokens:
        raise SpecError("the spec is empty: give layers such as 'conv32k5-same maxpool dropout0.2 dense128'")
    settings = {name: allowed[0] for name, allowed in SETTINGS.items()}
    layers = []
    for token in tokens:
        if "=" in token:
            _setting(token, settings)
            continue
        layers.append(_layer(len(layers) + 1, token))
        if len(layers) > MAX_LAYERS:
            raise SpecError(f"the spec has {len([t for t in tokens if '=' not in t]):,} layers; "
                            f"cnnlab builds at most {MAX_LAYERS}")
    return Spec(line, layers, settings)


def _setting(token: str, settings: dict[str, str]) -> None:
    name, _, value = token.partition("=")
    if name not in SETTINGS or value not in SETTINGS[name]:
        known = ", ".join(f"{n}={'|'.join(v)}" for n, v in SETTINGS.items())
        raise SpecError(f"'{token}' is not a setting; the settings are {known}")
    settings[name] = value


def _layer(position: int, token: str) -> Layer:
    text = token
    match = TOKEN.fullmatch(token.lower())
    kind = ALIASES.get(match["kind"], match["kind"]) if match else ""
    if not match or kind not in KINDS:
        word = match["kind"] if match else token
        close = difflib.get_close_matches(word, [*KINDS, *ALIASES], n=1, cutoff=0.6)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise SpecError(f"layer {position} '{text}': unknown kind '{word}'; {guess}use one of {', '.join(KINDS)} "
                        "(e.g. conv32k3, maxpool, dense128)")
    spec = KINDS[kind]
    layer = Layer(position, text, kind, None, {}, tuple(f for f in match["flags"].split("-") if f))
    size = match["size"]
    if size is None and spec.needs_size:
        raise layer.fail(f"give its {spec.size}, e.g. {kind}{'0.25' if kind == 'dropout' else '32'}")
    if size is not None and not spec.size:
        raise layer.fail(f"{kind} takes no number; write '{kind}'")
    options = dict(OPTION.findall(match["options"]))
    for letter in options:
        if letter not in spec.options:
            allowed = ", ".join(f"{k}N ({v[0]})" for k, v in spec.options.items()) or "none"
            raise layer.fail(f"'{letter}' is not an option of {kind}; its options are {allowed}")
    for flag in layer.flags:
        if flag not in spec.flags:
            allowed = ", ".join(f"-{f}" for f in spec.flags) or "none"
            raise layer.fail(f"'-{flag}' is not a flag of {kind}; its flags are {allowed}")
    for number in [size or "", *options.values()]:
        if float(number or 0) > MAX_LAYER_NUMBER:  # float: any count of digits reads (int stops at 4,300)
            raise layer.fail(f"a number is too large; a layer's numbers are at most {MAX_LAYER_NUMBER:,}")
    value = float(size) if size is not None else spec.default_size
    if value is not None and kind != "dropout":
        if value != int(value) or value < 1:
            raise layer.fail(f"its {spec.size} must be a whole number of at least 1, got {size}")
        value = int(value)
    if kind == "dropout" and not 0 <= value < 1:
        raise layer.fail(f"the dropout rate must be in [0, 1), got {size}")
    numbers = {spec.options[k][0]: int(v) for k, v in options.items()}
    if any(v < 1 for name, v in numbers.items() if name != "padding"):
        raise layer.fail("kernel and stride must be at least 1")
    if "same" in layer.flags and "valid" in layer.flags:
        raise layer.fail("choose one of -same and -valid")
    return Layer(position, text, kind, value, numbers, layer.flags)


@dataclass
class Step:
    """One layer's place in a planned network: its output shape and parameters, and how to make it."""

    layer: Layer | None  # None: a part the spec implies (Flatten, the output layer)
    shape: tuple[int, ...]  # per image: (channels, height, width) for a map, (features,) for a vector
    parameters: int
    make: Callable[[], list[nn.Module]]


def plan(spec: Spec | str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> list[Step]:
    """Every layer's output shape and parameter count for one input, by arithmetic alone.

    Raises :class:`SpecError` at the first layer that does not fit its input, or when the
    weights would pass :data:`MAX_PARAMETERS`, before anything is allocated.
    """
    spec = parse(spec) if isinstance(spec, str) else spec
    shape: tuple[int, ...] = (in_channels, image_size, image_size)
    steps: list[Step] = []
    layers = without_softmax(spec.layers, num_classes)
    output_given = bool(layers) and is_output(layers[-1], num_classes)
    for index, layer in enumerate(layers):
        if layer.kind == "dense" and layer.size is None and index != len(layers) - 1:
            raise layer.fail("only the last dense layer may leave out its units (it is the output layer); "
                             "give a number, e.g. dense128")
        if layer.kind == "dense" and len(shape) == 3:
            steps.append(_flatten(shape))
            shape = steps[-1].shape
        output = output_given and index == len(layers) - 1
        # Keras' way: 'conv32k3 relu' is one ReLU, the word's; a conv or dense layer has its own only otherwise.
        followed = index + 1 < len(layers) and layers[index + 1].kind in ACTIVATIONS and not _activation_written(layer)
        step = _plan_layer(replace(layer, flags=(*layer.flags, "linear")) if followed else layer, shape, num_classes,
                           output)
        steps.append(step)
        shape = step.shape
        _check_budget(steps, layer)
    if not output_given:
        if len(shape) == 3:
            steps.append(_flatten(shape))
            shape = steps[-1].shape
        steps.append(_dense_step(None, shape[0], num_classes, "linear", True))
        _check_budget(steps, None)
    return steps


def is_output(layer: Layer, num_classes: int) -> bool:
    """Whether ``layer``, the spec's last (a ``softmax`` after it aside), is the output layer: a bare
    ``dense``, or ``dense<classes>`` with no activation written (Keras' last ``Dense(10)``)."""
    if layer.kind != "dense":
        return False
    return layer.size is None or (layer.size == num_classes and not _activation_written(layer))


def without_softmax(layers: list[Layer], num_classes: int) -> list[Layer]:
    """``layers`` without a last ``softmax``, which must follow the output layer and nothing else."""
    for layer in layers[:-1]:
        if layer.kind == "softmax":
            raise layer.fail("softmax may only be the last word, after the output layer (e.g. 'dense10 softmax')")
    if not layers or layers[-1].kind != "softmax":
        return layers
    if len(layers) == 1 or not is_output(layers[-2], num_classes):
        raise layers[-1].fail(f"softmax must follow the output layer: dense{num_classes} (the {num_classes} "
                              "classes, no activation) or a bare dense")
    return layers[:-1]


def first_format(text: str, num_classes: int) -> str:
    """A spec as model.json's first format meant it, written so that it reads the same today: there a
    last ``dense<classes>`` was a hidden layer with ReLU (the output layer came after it), and a conv
    or dense layer kept its ReLU when an activation word followed it."""
    words = text.split()
    try:
        layers = [(i, _layer(1, word)) for i, word in enumerate(words) if "=" not in word]
    except SpecError:
        return text  # the build that follows names the problem
    for (i, layer), following in zip(layers, [*layers[1:], None], strict=True):
        hidden_output = following is None and layer.kind == "dense" and layer.size == num_classes
        before_activation = following is not None and following[1].kind in ACTIVATIONS
        if layer.kind in ("conv", "dense") and layer.size is not None and (hidden_output or before_activation) \
                and not _activation_written(layer):
            words[i] += "-relu"
    return " ".join(words)


def _activation_written(layer: Layer) -> bool:
    return bool(set(layer.flags) & set(ACTIVATION_FLAGS))


def _check_budget(steps: list[Step], layer: Layer | None) -> None:
    total = sum(step.parameters for step in steps)
    where = f"at layer {layer.position} '{layer.text}'" if layer else "with its output layer"
    if total > MAX_PARAMETERS:
        raise SpecError(f"the network reaches {total:,} parameters {where}, over cnnlab's budget of "
                        f"{MAX_PARAMETERS:,}; use fewer filters or units, or pool before dense layers")
    values = math.prod(steps[-1].shape)
    if values > MAX_MAP_VALUES:
        raise SpecError(f"the output {where} holds {values:,} values per image, over cnnlab's budget of "
                        f"{MAX_MAP_VALUES:,}; use fewer filters, a stride or a pool first")


def _flatten(shape: tuple[int, ...]) -> Step:
    return Step(None, (math.prod(shape),), 0, lambda: [nn.Flatten()])


def _dense_step(layer: Layer | None, features: int, units: int, activation: str, bias: bool) -> Step:
    def make() -> list[nn.Module]:
        return [nn.Linear(features, units, bias=bias), *_activation(activation)]

    return Step(layer, (units,), features * units + (units if bias else 0), make)


def _activation(name: str) -> list[nn.Module]:
    return [] if name == "linear" else [ACTIVATIONS[name]()]


def _plan_layer(layer: Layer, shape: tuple[int, ...], num_classes: int, output: bool = False) -> Step:
    kind = layer.kind
    if kind in ("dropout", *ACTIVATIONS):
        make = (lambda: [nn.Dropout(layer.size)]) if kind == "dropout" else (lambda: [ACTIVATIONS[kind]()])
        return Step(layer, shape, 0, make)
    if kind == "dense":
        units = num_classes if layer.size is None else int(layer.size)
        activation = "linear" if output else layer.activation
        return _dense_step(layer, shape[0], units, activation, "nobias" not in layer.flags)
    if kind == "batchnorm":
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return Step(layer, shape, 2 * shape[0], lambda: [norm(shape[0])])
    if kind == "flatten":
        return Step(layer, (math.prod(shape),), 0, lambda: [nn.Flatten()])
    if len(shape) != 3:
        raise layer.fail(f"{kind} needs a map, but its input is a vector of {shape[0]} (after a dense layer, "
                         "gap or flatten); put map layers before them")
    return MAP_LAYERS[kind](layer, shape)


def _out_side(layer: Layer, side: int, window: int, stride: int, padding: int, fix: str) -> int:
    if side + 2 * padding < window:
        raise layer.fail(f"its input is {side}x{side}, smaller than its {window}x{window} window; {fix}")
    return (side + 2 * padding - window) // stride + 1


def _conv(layer: Layer, shape: tuple[int, ...]) -> Step:
    channels, side = shape[0], shape[1]
    filters, kernel, stride = int(layer.size), layer.options.get("kernel", 3), layer.options.get("stride", 1)
    padding = layer.options.get("padding", 0)
    if "same" in layer.flags:
        if kernel % 2 == 0:
            raise layer.fail(f"-same padding needs an odd kernel, got {kernel}; use k{kernel + 1} or p{kernel // 2}")
        padding = (kernel - 1) // 2
    out = _out_side(layer, side, kernel, stride, padding, "use padding (-same), a smaller kernel, or remove a pool")
    bias = "nobias" not in layer.flags

    def make() -> list[nn.Module]:
        conv = nn.Conv2d(channels, filters, kernel, stride=stride, padding=padding, bias=bias)
        return [conv, *_activation(layer.activation)]

    return Step(layer, (filters, out, out), channels * filters * kernel * kernel + (filters if bias else 0), make)


def _pool(layer: Layer, shape: tuple[int, ...]) -> Step:
    size = int(layer.size)
    stride = layer.options.get("stride") or size
    out = _out_side(layer, shape[1], size, stride, 0, "remove a pool or use padding")
    pool = nn.MaxPool2d if layer.kind == "maxpool" else nn.AvgPool2d
    return Step(layer, (shape[0], out, out), 0, lambda: [pool(size, stride=stride)])


def _gap(layer: Layer, shape: tuple[int, ...]) -> Step:
    return Step(layer, (shape[0],), 0, lambda: [nn.AdaptiveAvgPool2d(1), nn.Flatten()])


def _crop(layer: Layer, shape: tuple[int, ...]) -> Step:
    pixels, side = int(layer.size), shape[1]
    if side - 2 * pixels < 1:
        raise layer.fail(f"its input is {side}x{side}; cropping {pixels} from each edge leaves nothing")
    return Step(layer, (shape[0], side - 2 * pixels, side - 2 * pixels), 0, lambda: [CropBorder(pixels)])


def _residual(layer: Layer, shape: tuple[int, ...]) -> Step:
    channels, side = shape[0], shape[1]
    filters, stride = int(layer.size), layer.options.get("stride", 1)
    out = _out_side(layer, side, 3, stride, 1, "remove a pool or a stride before it")
    projects = stride != 1 or channels != filters
    parameters = 9 * channels * filters + 9 * filters * filters + 4 * filters
    parameters += (channels * filters + 2 * filters) if projects else 0
    return Step(layer, (filters, out, out), parameters, lambda: [Residual(channels, filters, stride)])


MAP_LAYERS: dict[str, Callable[[Layer, tuple[int, ...]], Step]] = {
    "conv": _conv, "maxpool": _pool, "avgpool": _pool, "gap": _gap, "crop": _crop, "res": _residual,
}


class CropBorder(nn.Module):
    """Drop ``pixels`` from each edge: MNIST centres each digit's 20x20 box in a 28x28 frame, so
    the outer 2 pixels are nearly always empty and cost convolution work for nothing."""

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.pixels = pixels

    def forward(self, x):
        p = self.pixels
        return x[:, :, p:-p, p:-p]


class Residual(nn.Module):
    """A ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv and BN
    where the channels or the size change), then ReLU."""

    def __init__(self, channels: int, filters: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, filters, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(filters), nn.ReLU(),
            nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters),
        )
        self.shortcut = (nn.Sequential(nn.Conv2d(channels, filters, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(filters))
                         if stride != 1 or channels != filters else nn.Identity())

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu()


def keras_init(model: nn.Module) -> nn.Module:
    """Initialise as Keras does: Glorot-uniform weights, zero biases (the article used Keras)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def build_spec(spec: Spec | str, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Sequential:
    """The network a spec describes, checked by :func:`plan` first: an ``nn.Sequential`` taking
    ``(N, in_channels, image_size, image_size)`` and returning logits ``(N, num_classes)``."""
    spec = parse(spec) if isinstance(spec, str) else spec
    steps = plan(spec, num_classes, in_channels, image_size)
    model = nn.Sequential(*(module for step in steps for module in step.make()))
    return keras_init(model) if spec.settings["init"] == "glorot" else model
