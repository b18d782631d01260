"""Fuzz: a training into a folder holding anything (a user's files, a run's, damaged ones, a folder
another training holds) trains or is refused in one line, and loses none of the files it should keep."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.training.run_folder import CNNLAB_FILES
from tests.fuzz.ledger import LEDGER, attempt, describe, fuzz

CNNLAB_NAMES = ["cnnlab.lock", "checkpoint.pt", "model.safetensors", "model.json", "config.json", "history.csv",
                "report.html", "summary.txt", ".model.json.x1y2.tmp"]
USER_NAMES = ["notes.txt", "photo.jpg", "config.yaml", "data", "Model.json", ".hidden"]


SPEC = "conv4k3 maxpool dense16"


@pytest.fixture(scope="module")
def small(mnist) -> Dataset:
    """300 MNIST images of each split: a training on them takes a second or two."""
    return Dataset("mnist", mnist.class_names, mnist.train_images[:300], mnist.train_labels[:300],
                   mnist.test_images[:300], mnist.test_labels[:300])


@pytest.fixture(scope="module")
def finished(small, tmp_path_factory) -> Path:
    """A finished run of a small network, to copy into folders as a user's earlier run."""
    from cnnlab import train

    folder = tmp_path_factory.mktemp("finished") / "run"
    train(model=SPEC, dataset=small, epochs=1, out=str(folder), progress=False, threads=1)
    return folder


def fingerprints(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in folder.iterdir()} if folder.is_dir() else {}


@given(names=st.lists(st.sampled_from(CNNLAB_NAMES + USER_NAMES), max_size=4, unique=True),
       contents=st.lists(st.binary(max_size=64), min_size=4, max_size=4), overwrite=st.booleans(),
       held=st.integers(0, 5), earlier=st.integers(0, 2))
@fuzz(examples=40)
def test_train_into_any_folder(small, finished, tmp_path_factory, names, contents, overwrite, held, earlier):
    from cnnlab import train
    from cnnlab.training.run_folder import claim

    describe("run folders", "cnnlab.train(out=FOLDER) and with overwrite=True into a folder holding any mix of "
             "cnnlab's file names and a user's, of any content, or one another training holds")
    folder = tmp_path_factory.mktemp("out") / "run"
    if earlier == 0:  # a finished run is there already, and perhaps more
        shutil.copytree(finished, folder)
    if names:
        folder.mkdir(exist_ok=True)
    for name, data in zip(names, contents, strict=False):
        (folder / name).mkdir() if name == "data" else (folder / name).write_bytes(data)
    before = fingerprints(folder)
    user = any(name in USER_NAMES for name in names)
    case = ("a user's files among them" if user else "a finished run" if earlier == 0 else
            "cnnlab's file names, any content" if names else "a new folder")
    case += ", overwrite" if overwrite else ""

    def training():
        return train(model=SPEC, dataset=small, epochs=1, out=str(folder),
                     overwrite=overwrite, progress=False, threads=1)

    with contextlib.ExitStack() as holding:
        if held == 0 and not user:
            with contextlib.suppress(CnnlabError):  # a folder no training could claim is tried as it is
                holding.enter_context(claim(folder, overwrite=True))  # this process holds it, as another would
                case = "a folder another training holds" + (", overwrite" if overwrite else "")
                before = fingerprints(folder)
        trained = attempt("run folders", case, training) is not None
    # Kept: every file a refused training found, and a user's always; the lock file says who holds it,
    # and an overwriting training replaces the run's own files.
    lost = [name for name, digest in before.items() if name != "cnnlab.lock" and fingerprints(folder).get(name)
            != digest and not (trained and overwrite and name in CNNLAB_FILES)]
    if lost:
        LEDGER.add("run folders", case, "file lost", f"{', '.join(lost)} changed or gone")
    assert not lost, f"{case}: {lost} changed or gone"
    assert not (trained and user), f"{case}: trained into a folder holding a user's files"
