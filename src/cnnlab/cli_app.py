"""What every ``cnnlab`` command shares: the typer app, its ``@command`` decorator, the common
options and the run-directory names. The commands live in cnnlab.cli (training and using a
model) and cnnlab.cli_study (studying models: summary, lr-find, compare, reproduce, bench)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli_help import APP, COMMANDS
from cnnlab.errors import CnnlabError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, help=APP)


def command(name: str) -> Callable:
    """``@app.command(name)`` with its help text, summary and examples, from cnnlab.cli_help."""
    return app.command(name, help=COMMANDS[name])

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="mnist, fashion-mnist, kmnist, cifar10, cifar100, "
                                                                 "svhn, or a path")]
DataDirOpt = Annotated[Optional[Path], typer.Option(help="Dataset folder [default: $CNNLAB_DATA or ~/.cache/cnnlab]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text")]
ImageSizeOpt = Annotated[Optional[str], typer.Option(help="Resize images to N x N pixels (N or NxN, 8 to 512) "
                                                     "[default: the dataset's own; a folder: its median, at most 64]")]
GreyOpt = Annotated[bool, typer.Option(help="Use grey images (one channel) even if the data has colour")]


PRESET_DEFAULT = "[default: from --preset]"


def square_side(text: str | None) -> int | None:
    """``--image-size``: ``64`` or ``64x64`` -> 64. cnnlab's networks take square images."""
    if text is None:
        return None
    sides = text.lower().split("x")
    if len(sides) > 2 or not all(side.strip().isdigit() for side in sides):
        raise CnnlabError(f"--image-size must be a number of pixels such as 64 (or 64x64), got '{text}'")
    if len(set(map(int, sides))) > 1:
        raise CnnlabError(f"--image-size {text}: cnnlab's networks take square images; give one side, e.g. "
                          f"--image-size {max(map(int, sides))} (images of another shape are padded to a square, "
                          "keeping their aspect)")
    return int(sides[0])
