"""The documentation: the README's shape, the tutorial notebook run top to bottom, every command
documented with examples, and tables that come from results files, not from a keyboard.

The Python blocks of README.md and docs/ run through Sybil (the repository's conftest.py), and
their console blocks through tests/test_docs_console.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import nbformat
import pytest
import typer

from cnnlab.cli import app, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
USER_PAGES = [ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "notes" not in p.parts)]
# A commit hash: 7-40 hex characters with at least one digit and one letter, standing alone.
COMMIT_HASH = re.compile(r"(?<![\w.-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])")


def load_docs_module(name: str):
    """``docs/NAME.py`` (the site's hooks, the notebook runner), which is not a package."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_front_door_of_at_most_150_lines():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for part in ("make run", "make test", "cnnlab train", "cnnlab predict", "cnnlab serve", "licen"):
        assert part in text.lower(), part


def test_no_commit_hashes_outside_the_notes():
    assert COMMIT_HASH.search("on a clean clone of a6024d2, ") and not COMMIT_HASH.search("seed 4096, 0.1307, 1e-4")
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in USER_PAGES}
    # the notebook's images are base64 that may hold hex-looking runs: check what a reader reads
    texts["docs/tutorial.ipynb"] = "\n".join(c.source for c in nbformat.read(DOCS / "tutorial.ipynb", 4).cells)
    found = {name: COMMIT_HASH.findall(text) for name, text in texts.items()}
    assert {name: hits for name, hits in found.items() if hits} == {}


def commands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", commands())
def test_every_command_has_a_docs_section_and_examples_in_its_help(name, capsys):
    heading = re.compile(rf"^#+ .*`cnnlab {name}\b", re.MULTILINE)
    pages = [p.relative_to(ROOT) for p in USER_PAGES if "reference" not in p.parts and heading.search(p.read_text())]
    assert pages, f"no docs page has a section headed `cnnlab {name}`"
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    summary = text.split("\n\n")[1].strip()
    assert summary.endswith(".") and len(summary) <= 70 and "\n" not in summary, summary
    assert "Examples:" in text and f"    cnnlab {name}" in text


def test_top_level_help_lists_commands_whole_and_shows_examples(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples:" in text and "    cnnlab train" in text and "..." not in text.split("Commands:")[1]


def test_the_command_reference_lists_every_command_in_helps_order():
    listed = re.findall(r"^    :command: click_(\S+)$", (DOCS / "reference" / "cli.md").read_text(), re.MULTILINE)
    assert [name.replace("_", "-") for name in listed] == list(typer.main.get_command(app).commands)  # --help's


def test_reproduce_help_says_how_long_a_full_run_takes(capsys):
    assert main(["reproduce", "--help"]) == 0
    assert re.search(r"full run takes about [\d-]+ minutes on a 2-core", " ".join(capsys.readouterr().out.split()))


def test_performance_page_and_readme_tables_come_from_the_results_files():
    hooks = load_docs_module("hooks")
    page = (DOCS / "performance.md").read_text()
    markers = hooks.MARKER.findall(page)
    assert len(markers) >= 3
    rendered = hooks.render(page, DOCS)
    assert "<!--" not in rendered
    for _kind, path in markers:
        results = json.loads((DOCS / path).read_text())
        assert {"date", "machine", "command", "results"} <= set(results)
        assert f"by `{results['command']}`" in rendered
    assert hooks.headline_table(DOCS) in (ROOT / "README.md").read_text()


# The quick tier runs the tutorial on MNIST's first 6,000 images of each split: these calls, and only
# these, get a limit (each must still be in the notebook).
ON_SMALL_DATA = {'cnnlab.load_dataset("mnist")': 'cnnlab.load_dataset("mnist", limit=6000)',
                 'cnnlab.train(preset="fast", ': 'cnnlab.train(preset="fast", limit=6000, '}


def run_tutorial(folder: Path, monkeypatch, mnist_dir: Path, small: bool = False) -> str:
    """The reader's notebook, as the site shows it (or ``small``: on a tenth of MNIST), run in a
    fresh ``folder``; the text of its outputs."""
    monkeypatch.setenv("CNNLAB_DATA", str(mnist_dir))
    notebook = nbformat.read(DOCS / "tutorial.ipynb", 4)
    for old, new in ON_SMALL_DATA.items() if small else ():
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and old in cell.source]
        assert cells, f"the notebook no longer calls {old}: update ON_SMALL_DATA"
        for cell in cells:
            cell.source = cell.source.replace(old, new)
    started = time.perf_counter()
    load_docs_module("run_tutorial").execute(notebook, folder)
    print(f"tutorial notebook: {time.perf_counter() - started:.0f} s")
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    pictures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pictures >= 8, f"the notebook showed {pictures} pictures"
    bars = [o["data"]["text/plain"] for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert any(bar.startswith("Epoch 1/") for bar in bars), "no progress bar showed in Jupyter"
    return "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def test_the_tutorial_notebook_runs_top_to_bottom_and_keeps_its_five_promises(tmp_path, monkeypatch, mnist_dir):
    """On a tenth of MNIST: every cell runs, and it shows what each promise needs (the claims about
    accuracy are the slow tier's, on the whole of it)."""
    text = run_tutorial(tmp_path, monkeypatch, mnist_dir, small=True)
    assert text.count("Total: ") >= 2  # construct: the two summaries
    assert re.search(r"^MLP test error: [\d.]+%$", text, re.MULTILINE)  # train
    assert "Confusion matrix (rows: true class, columns: predicted):" in text  # evaluate, as text
    assert "suggested peak learning rate:" in text and "tutorial-strong" in text  # improve
    assert re.search(r"^answer: \d \([\d.]+%\)$", text, re.MULTILINE)  # interpret: explain
    runs = tmp_path / "runs"
    for picture in ("cnn/confusion.png", "tutorial-fast/feature_maps.png", "tutorial-fast/mistakes.png"):
        assert (runs / picture).is_file(), picture
    assert (tmp_path / "explanations" / "digit.png").is_file()


@pytest.mark.slow
def test_the_tutorial_on_the_whole_of_mnist_makes_the_article_s_point(tmp_path, monkeypatch, mnist_dir):
    text = run_tutorial(tmp_path, monkeypatch, mnist_dir)
    errors = {name: float(value) for name, value in re.findall(r"^(.*?epochs?)\s+test error\s+([\d.]+)%", text,
                                                                 re.MULTILINE)}
    assert len(errors) == 4, text
    mlp, printed, described, fast = errors.values()
    assert printed > mlp > described > fast  # the article's point, its fix, and what comes next


def test_the_reliability_page_comes_from_the_fuzz_suites_results_and_they_show_no_failure():
    hooks = load_docs_module("hooks")
    page = (DOCS / "reliability.md").read_text()
    assert hooks.MARKER.findall(page) == [("reliability", "results/reliability.json")]
    results = json.loads((DOCS / "results" / "reliability.json").read_text())
    rendered = hooks.render(page, DOCS)
    assert "<!--" not in rendered and f"by `{results['command']}`" in rendered
    assert {t["target"] for t in results["targets"]} >= {"model.json", "config.json", "checkpoint.pt", "layer specs",
                                                          "API: predict and explain", "API: train", "run folders"}
    failures = ("traceback", "5xx", "wrong answer", "file lost", "over bound")
    assert results["totals"]["tried"] > 1000 and not any(results["totals"][f] for f in failures)
