"""``cnnlab compare``: runs side by side, as a table, one picture of their curves, and a page.

The article's point, an MLP against a CNN, is one command: ``cnnlab compare runs/mlp runs/cnn``.
"""

from __future__ import annotations

import base64
import html
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text
from cnnlab.models.files import MODEL_FILE, SPEC_ARCHITECTURE, read_model_info, tensor_shapes
from cnnlab.reporting.report import RunRecord

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # batch norm's statistics, not parameters
COLUMNS = ["run", "model", "parameters", "epochs", "test acc", "train s"]


@dataclass
class ComparedRun:
    """One run's line of the table, and its curves."""

    name: str
    model: str
    parameters: int
    epochs: int
    test_accuracy: float
    train_seconds: float
    record: RunRecord

    def to_json(self) -> dict[str, Any]:
        return {"run": self.name, "model": self.model, "parameters": self.parameters, "epochs": self.epochs,
                "test_accuracy": self.test_accuracy, "train_seconds": self.train_seconds}

    def cells(self) -> list[str]:
        return [self.name, self.model, f"{self.parameters:,}", str(self.epochs), f"{100 * self.test_accuracy:.2f}%",
                f"{self.train_seconds:.1f}"]


def read_run(run: Path) -> ComparedRun:
    """A run directory's numbers, or a :class:`CnnlabError` saying what is missing."""
    if not (run / "metrics.json").is_file():
        raise CnnlabError(f"{run}: not a run directory (no metrics.json); give folders made by 'cnnlab train'")
    record = RunRecord.read(run)
    info = read_model_info(run / "model.json")
    shapes = tensor_shapes(run / MODEL_FILE)
    parameters = sum(math.prod(shape) for key, shape in shapes.items() if not key.endswith(BUFFERS))
    model = info.spec if info.architecture == SPEC_ARCHITECTURE else info.architecture
    return ComparedRun(run.name, model, parameters, len(record.history), record.metrics["test_accuracy"],
                       record.metrics.get("train_seconds", math.nan), record)


def compare_runs(runs: list[str | Path], out: str | Path | None = None) -> tuple[list[ComparedRun], Path]:
    """Read ``runs`` (a run that cannot be read is reported on stderr and left out), and write
    ``compare.png`` and ``compare.html`` into ``out`` (default: ``compare-A-vs-B`` beside the
    first run). Returns the runs read and the folder written."""
    read, faults = [], []
    for run in map(Path, runs):
        try:
            read.append(read_run(run))
        except CnnlabError as exc:
            faults.append(exc)
    if not read:  # nothing to compare: one line, the fault itself when one run was given
        raise faults[0] if len(faults) == 1 else CnnlabError(
            f"none of the {len(faults)} runs could be read (the first: {faults[0]}); give run directories made by "
            "'cnnlab train'")
    for fault in faults:
        print(f"error: {fault} (left out)", file=sys.stderr)
    folder = Path(out) if out else Path(runs[0]).parent / ("compare-" + "-vs-".join(r.name for r in read[:3]))
    from cnnlab.reporting import plots  # matplotlib loads only when pictures are drawn

    plots.compared_curves([(r.name, r.record.history, r.record.points) for r in read], folder / "compare.png")
    write_page(read, folder)
    return read, folder


def format_table(runs: list[ComparedRun]) -> str:
    """The table as ``cnnlab compare`` prints it (long specs cut to 40 characters)."""
    rows = [[c if len(c) <= 40 else c[:37] + "..." for c in r.cells()] for r in runs]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                    strict=True)))
             for row in [COLUMNS, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def write_page(runs: list[ComparedRun], folder: Path) -> Path:
    """``compare.html``: the table and the picture, self-contained."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r.cells()) + "</tr>" for r in runs)
    picture = base64.b64encode((folder / "compare.png").read_bytes()).decode()
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab: {html.escape(' vs '.join(r.name for r in runs))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
td,th{{padding:.2em .8em;text-align:left}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(' vs '.join(r.name for r in runs))}</h1>
<table><tr>{head}</tr>
{body}</table>
<img alt="training curves of each run, overlaid" src="data:image/png;base64,{picture}">
</body></html>
"""
    atomic_write_text(folder / "compare.html", page)
    return folder / "compare.html"
