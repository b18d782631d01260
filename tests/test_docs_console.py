"""Every console example in README.md and docs/ (a block whose lines start with ``$ cnnlab``) runs
here, and its output must have the form the page shows: the same lines and columns, with only the
numbers free to differ. So an example cannot go stale when an output changes. A block that trains a
network on the whole of MNIST is the slow tier's (CI runs it; conftest.py); the rest use one run
trained for them all.

A block preceded by ``<!-- output: abridged -->`` must run, and its first line keep its form; one
preceded by ``<!-- output: not checked (why) -->`` is left out, and says why on the page.
``cnnlab serve`` and the ``curl`` lines after it start the server and call it. A shown output
that starts with ``error:`` is a refusal: the command must exit 2 with that line on stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import docs_scratch_folder, free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "notes" not in p.parts)]
BLOCK = re.compile(r"(?:<!-- output: ([\w ]+)[^>]*-->\n)?```\n(\$ cnnlab .*?)```", re.DOTALL)


def console_blocks(page: Path) -> list[tuple[str, str]]:
    """``(mode, text)`` of each console block: mode is 'checked', 'abridged' or 'not checked'."""
    return [((mode or "checked").strip(), text) for mode, text in BLOCK.findall(page.read_text())]


def commands(text: str) -> list[tuple[str, str]]:
    """The ``(command, shown output)`` pairs of a block."""
    pairs, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("$ "):
            following = [j for j in range(i + 1, len(lines)) if lines[j].startswith("$ ")]
            pairs.append((line[2:], "\n".join(lines[i + 1: following[0] if following else len(lines)])))
    return pairs


def form(text: str) -> list[str]:
    """What must match: the lines with every number as 0 and runs of spaces as one."""
    text = re.sub(r"\b(\d+) threads?\b", r"\1 threads", text)  # 1 thread on a busy machine
    return [re.sub(r" +", " ", re.sub(r"\d+(?:[.,]\d+)*", "0", line)).rstrip() for line in text.strip().splitlines()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mnist_dir) -> Path:
    """``runs/fast-mnist-seed0`` as ``cnnlab train`` makes it, for the pages' other examples."""
    folder = tmp_path_factory.mktemp("tour")
    run_cli(["train"], folder, mnist_dir)
    return folder / "runs" / "fast-mnist-seed0"


def cli_env(mnist_dir: Path) -> dict[str, str]:
    """The commands' environment: the real MNIST, and no download."""
    return {**os.environ, "CNNLAB_DATA": str(mnist_dir), "CNNLAB_OFFLINE": "1"}


def run_cli(args: list[str], cwd: Path, mnist_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=cwd, env=cli_env(mnist_dir),
                          capture_output=True, text=True, timeout=600)


def scratch_folder(tmp_path: Path, trained_run: Path | None) -> Path:
    docs_scratch_folder(tmp_path)
    if trained_run is not None:
        shutil.copytree(trained_run, tmp_path / "runs" / "fast-mnist-seed0")
    return tmp_path


def trains(text: str) -> bool:
    """Whether a block trains a network (a ``cnnlab train`` that is not an example of a refusal): on
    the whole of MNIST, as the page shows it, that is the slow tier's work."""
    return any(command.split()[:2] == ["cnnlab", "train"] and not shown.startswith("error: ")
               for command, shown in commands(text))


CASES = [pytest.param(page, n, mode, text, marks=[pytest.mark.slow] if trains(text) else [],
                      id=f"{page.relative_to(ROOT)}-{n}")
         for page in PAGES for n, (mode, text) in enumerate(console_blocks(page))]


def test_the_pages_have_console_examples():
    blocks = [case.values for case in CASES]
    assert sum(mode == "checked" for *_, mode, _ in blocks) >= 8
    assert any("cnnlab serve" in text for page, *_, text in blocks if page.name == "README.md")
    quick = [text for *_, mode, text in blocks if mode == "checked" and not trains(text)]
    assert len(quick) >= 8  # the quick tier checks these; the slow tier, those that train as well


@pytest.mark.parametrize(("page", "number", "mode", "text"), CASES)
def test_console_example_runs_and_keeps_its_form(page, number, mode, text, tmp_path, request, mnist_dir):
    if mode == "not checked":
        pytest.skip("the page says why this example is not run")
    pairs = commands(text)
    training = any(shlex.split(c)[1] == "train" for c, _ in pairs if c.startswith("cnnlab"))
    folder = scratch_folder(tmp_path, None if training else request.getfixturevalue("trained_run"))
    if pairs[0][0].startswith("cnnlab serve"):
        return check_serve(pairs, folder, mnist_dir)
    for command, shown in pairs:
        done = run_cli(shlex.split(command)[1:], folder, mnist_dir)
        if shown.startswith("error: "):  # an example of a refusal: exit 2 and that one line on stderr
            assert (done.returncode, form(done.stderr)) == (2, form(shown)), f"{command}\n{done.stderr}"
            continue
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        printed, expected = form(done.stdout), form(shown)
        if mode == "abridged":
            assert printed[0].split(" ")[:2] == expected[0].split(" ")[:2], f"{command}\n{done.stdout}"
        else:
            assert printed == expected, f"{command} printed:\n{done.stdout}"


def check_serve(pairs: list[tuple[str, str]], folder: Path, mnist_dir: Path) -> None:
    """Start ``cnnlab serve`` on a free port; its first line and each curl answer's keys must be as shown."""
    import httpx2 as httpx

    (command, shown), *calls = pairs
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", *shlex.split(command)[1:], "--port", str(port)],
                              cwd=folder, env=cli_env(mnist_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", server, seconds=60)
        token = re.compile(r"token=[\w-]+")  # the server makes a new one at each start
        assert form(token.sub("token=", server.stdout.readline())) == form(token.sub("token=", shown))
        for call, answer in calls:
            upload = re.search(r"file=@(\S+)", call)[1]
            url = re.search(r"(http://\S+?)\"?$", call)[1].replace(":8000", f":{port}")
            with open(folder / upload, "rb") as image:
                reply = httpx.post(url, files={"file": image}, timeout=60)
            assert reply.status_code == 200
            shown_keys = set(re.findall(r'"([a-z_]+)": ?', answer))
            assert shown_keys and shown_keys == set(json.loads(reply.text)), call
    finally:
        server.terminate()
        server.wait(timeout=10)
