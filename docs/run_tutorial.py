"""Run the tutorial notebook top to bottom in a scratch folder and store its outputs in place.

    CNNLAB_DATA=../shared/data .venv/bin/python docs/run_tutorial.py

The site shows the stored outputs (mkdocs-jupyter does not execute it); the tests execute the
same notebook again (tests/test_docs.py), so its code cannot go stale.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent / "tutorial.ipynb"


def coalesce_streams(cell: nbformat.NotebookNode) -> None:
    """One output block per run of printed lines, as Jupyter shows them, not one per print."""
    merged = []
    for output in cell.get("outputs", []):
        previous = merged[-1] if merged else None
        if output.output_type == "stream" and previous is not None and previous.output_type == "stream" \
                and previous.name == output.name:
            previous.text += output.text
        else:
            merged.append(output)
    cell.outputs = merged


WIDGET = "application/vnd.jupyter.widget-view+json"


def without_progress_bars(notebook: nbformat.NotebookNode) -> None:
    """Take out the progress bars (tqdm's widgets, which Jupyter removes once each is done): a stored
    page would show each frozen at 0%."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    notebook.metadata.pop("widgets", None)


def execute(notebook: nbformat.NotebookNode, folder: str | Path) -> None:
    """Run every cell of ``notebook`` in place, with ``folder`` as its working directory and the
    folder its runs go to ($CNNLAB_TUTORIAL_DIR, which the kernel inherits)."""
    before = os.environ.get("CNNLAB_TUTORIAL_DIR")
    os.environ["CNNLAB_TUTORIAL_DIR"] = str(folder)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
                       ).execute()
    finally:
        if before is None:
            os.environ.pop("CNNLAB_TUTORIAL_DIR")
        else:
            os.environ["CNNLAB_TUTORIAL_DIR"] = before


def main(path: Path = NOTEBOOK) -> None:
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        execute(notebook, folder)
    without_progress_bars(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            coalesce_streams(cell)
    nbformat.write(notebook, path)
    print(f"Ran {path} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else NOTEBOOK)
