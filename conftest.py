"""Runs the Python blocks of README.md and the docs pages as tests (Sybil), each page in a fresh
folder that has the docs' example photos, so the blocks read and write files as a reader's would.

A block that cannot run on the test machine is preceded by ``<!-- skip: next -->``.
The notes (docs/notes/) are a record of experiments, not instructions: their blocks are not run.

The tiers: ``make test`` runs the quick tier; the slow tier (``@pytest.mark.slow``: full-size
trainings whose claim is an accuracy, several processes, the tutorial on the whole of MNIST) runs
as well on CI (``CI`` set) and with ``make test-all`` (``CNNLAB_TESTS=all``). ``-m`` chooses by hand.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from tests.helpers import EVERY_TIER, docs_scratch_folder


def pytest_report_header(config) -> str:
    if EVERY_TIER:
        return "tests: every tier, the slow one included (CI, or CNNLAB_TESTS=all)"
    return "tests: the quick tier; the slow tier runs on CI and with make test-all"


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker runs on cores of its own, and so do the processes it starts
    (the affinity is inherited): cnnlab's threads then count those cores alone, instead of two
    workers' PyTorch threads spinning against each other on the same ones."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if count <= len(cores):
        import torch

        own = cores[int(worker.removeprefix("gw")) :: count]
        os.sched_setaffinity(0, own)
        torch.set_num_threads(len(own))


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (make test): each file's tests on one worker (a page's docs blocks share
    their names), and the fuzz suite's files together, since one ledger counts them all."""
    from xdist.scheduler import LoadFileScheduling

    class ByFileFuzzTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/fuzz" if nodeid.startswith("tests/fuzz/") else super()._split_scope(nodeid)

    return ByFileFuzzTogether(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    """Leave the slow tier out unless every tier is asked for (or ``-m`` chooses)."""
    if EVERY_TIER or config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)


def enter_scratch_folder(namespace: dict) -> None:
    folder = docs_scratch_folder(Path(tempfile.mkdtemp(prefix="cnnlab-docs-")))
    namespace["__scratch__"] = (folder, os.getcwd(), os.environ.get("CNNLAB_OFFLINE"))
    os.chdir(folder)
    os.environ["CNNLAB_OFFLINE"] = "1"  # as in every test: a missing dataset is an error, not a download


def leave_scratch_folder(namespace: dict) -> None:
    folder, cwd, offline = namespace.pop("__scratch__")
    os.chdir(cwd)
    if offline is None:
        os.environ.pop("CNNLAB_OFFLINE", None)
    else:
        os.environ["CNNLAB_OFFLINE"] = offline
    shutil.rmtree(folder, ignore_errors=True)


pytest_collect_file = Sybil(
    parsers=[SkipParser(), PythonCodeBlockParser()],
    patterns=["README.md", "docs/*.md", "docs/*/*.md"],
    excludes=["docs/notes/*.md"],
    setup=enter_scratch_folder,
    teardown=leave_scratch_folder,
    name="docs",
).pytest()
