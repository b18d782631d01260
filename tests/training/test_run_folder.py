"""Run folders (cnnlab.training.run_folder): one writer at a time, only cnnlab's files, and a failed write
(a full disk) that keeps the last checkpoint and says how to go on, on the command line and in Python."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models.files import load_model
from cnnlab.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from cnnlab.training.loop import train
from cnnlab.training.run_folder import (
    LOCK_FILE,
    claim,
    first_run_folder,
    is_cnnlab_file,
    new_run_folder,
    unfinished_runs,
)
from tests.helpers import run_cli

TINY = ["--model", "conv8k3 maxpool dense16", "--epochs", "2", "--batch-size", "32", "--augment", "none",
        "--threads", "1"]
# Every write of a TINY run, in order: a checkpoint after each epoch, then the run's files.
WRITES = [(CHECKPOINT_FILE, 1), (CHECKPOINT_FILE, 2), *((name, 1) for name in (
    "model.safetensors", "model.json", "last.safetensors", "history.csv", "points.csv", "metrics.json", "config.json",
    "summary.txt", "curves.png", "confusion.png", "per_class.png", "samples.png", "mistakes.png", "why_wrong.png",
    "filters.png", "feature_maps.png", "report.html"))]
# Resumed after the fault: one that trains again, and the first and last of the files a finished run writes.
RESUMED = [(CHECKPOINT_FILE, 2), ("model.safetensors", 1), ("report.html", 1)]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A finished TINY run, to copy."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(dataset=data, out=run, model="conv8k3 maxpool dense16", epochs=2, batch_size=32, augment="none", threads=1,
          progress=False)
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def tiny(data: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--dataset", str(data), *TINY, "--out", str(out), *more]


def one_line(capsys, *args) -> str:
    """``cnnlab ARGS`` fails with exit code 2 and one line on stderr, no traceback; that line."""
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_second_writer_is_refused_naming_the_process_that_holds_the_folder(data, tmp_path, capsys):
    run = tmp_path / "run"
    with claim(run):
        err = one_line(capsys, *tiny(data, run))
        assert f"{run} is being written by another training (pid {os.getpid()} on " in err
        for more in (["--overwrite"], []):
            assert f"pid {os.getpid()}" in one_line(capsys, *tiny(data, run), *more)
        with pytest.raises(CnnlabError, match=f"pid {os.getpid()}"):
            train(dataset=data, out=run, overwrite=True, progress=False)
    assert not run.exists()  # a claim that wrote nothing takes away the folder it made


def test_a_lock_held_by_another_process_is_refused_and_taken_over_once_it_dies(data, finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    (run / "report.html").unlink()  # as if its last write failed: --resume writes its files
    hold = (f"import time\nfrom cnnlab.training.run_folder import claim\nwith claim({str(run)!r}, resuming=True):\n"
            "    print('held', flush=True)\n    time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (tiny(data, run), [*tiny(data, run), "--overwrite"], ["train", "--resume", run]):
            err = one_line(capsys, *args)
            assert f"{run} is being written by another training (pid {holder.pid} on " in err and "-c" in err, err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).is_file()  # killed: its lock file stays, the flock gone with the process
    code, out, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and "Finishing" in out, err
    assert f'"pid": {os.getpid()}' in (run / LOCK_FILE).read_text() and (run / "report.html").is_file()


def test_a_folder_with_files_cnnlab_did_not_write_is_refused_and_left_as_it_was(data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    own = {"config.json": '{"learning_rate": 0.1}\n', "summary.txt": "my notes\n", "report.html": "<p>mine</p>\n"}
    for name, text in own.items():
        (mine / name).write_text(text)
    for more in ([], ["--overwrite"]):
        assert "holds files that are not a cnnlab run's (config.json)" in one_line(capsys, *tiny(data, mine), *more)
    (mine / "notes.md").write_text("mine\n")
    assert "holds files cnnlab did not write (notes.md)" in one_line(capsys, *tiny(data, mine), "--overwrite")
    with pytest.raises(CnnlabError, match="cnnlab did not write"):
        train(dataset=data, out=mine, overwrite=True, progress=False)
    (mine / "notes.md").unlink()
    assert {p.name: p.read_text() for p in mine.iterdir()} == own
    file = tmp_path / "file"
    file.write_text("x")
    assert "exists and is not a folder" in one_line(capsys, *tiny(data, file))


def test_python_refuses_a_run_unless_overwrite_which_replaces_the_whole_old_run(data, finished, tmp_path):
    run = copy_of(finished, tmp_path)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(CnnlabError, match=r"already holds a trained model: .*overwrite=True"):
        train(dataset=data, out=run, epochs=1, progress=False)
    (run / "model.onnx").write_bytes(b"an export of the old model")  # cnnlab export writes it into the run
    (run / ".model.json.k3j2x9a1.tmp").write_bytes(b"a write cut short")  # left by a killed process
    with pytest.raises(CnnlabError, match="missing: no such folder or file"):  # fails after the claim, before any write
        train(dataset=str(tmp_path / "missing"), out=run, overwrite=True, progress=False)

    def ctrl_c(_point):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:  # stopped during its first epoch
        train(dataset=data, out=run, epochs=1, threads=1, overwrite=True, progress=False, on_point=ctrl_c)
    assert not stopped.value.resumable  # the checkpoint there is the old run's
    assert (run / "model.safetensors").read_bytes() == before and (run / "model.onnx").is_file()
    result = train(dataset=data, out=run, model="mlp", epochs=1, batch_size=32, threads=1, overwrite=True,
                   progress=False)
    assert result.info.architecture == "mlp" and load_model(run)[1].architecture == "mlp"
    assert not (run / "model.onnx").exists() and not (run / ".model.json.k3j2x9a1.tmp").exists()
    assert len(load_checkpoint(run)["history"]) == 1


def test_a_run_made_before_there_were_locks_is_still_cnnlab_s(data, finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    (run / LOCK_FILE).unlink()
    assert "already holds a trained model" in one_line(capsys, *tiny(data, run))
    code, _, err = run_cli(capsys, *tiny(data, run), "--overwrite")
    assert code == 0, err


def test_an_unfinished_run_points_to_resume_and_a_new_folder_has_the_library_s_name(data, tmp_path, capsys):
    run = tmp_path / "part"

    def stop(row, *_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as stopped:
        train(dataset=data, out=run, model="mlp", epochs=2, threads=1, progress=False, on_epoch=stop)
    assert stopped.value.resumable
    assert f"continue it with 'cnnlab train --resume {run}'" in one_line(capsys, *tiny(data, run))
    (tmp_path / "runs" / "fast-mnist-seed0").mkdir(parents=True)
    assert new_run_folder("fast", "mnist", 0, root=tmp_path / "runs").name == "fast-mnist-seed0-2"
    assert new_run_folder("fast", str(data), 3, "mlp", tmp_path / "runs").name == f"mlp-{data.name}-seed3"
    assert new_run_folder("fast", "mnist", 0, "conv8k3 dense10", tmp_path / "runs").name == "spec-mnist-seed0"


def test_temporary_files_of_a_cut_write_count_as_cnnlab_s_and_nothing_else_does():
    assert is_cnnlab_file(".checkpoint.pt.a1_b2c3d.tmp") and is_cnnlab_file("why_wrong.png")
    assert not is_cnnlab_file(".notes.md.a1_b2c3d.tmp") and not is_cnnlab_file("checkpoint.pt.bak")


def test_the_writes_of_a_run_are_the_ones_the_full_disk_test_fails(data, tmp_path, capsys, monkeypatch):
    written = []

    def record(path) -> bool:
        written.append(Path(path).name)
        return False  # the disk never fills

    fail_at_write(monkeypatch, record)
    code, _, err = run_cli(capsys, *tiny(data, tmp_path / "run"))
    assert code == 0, err
    assert [(name, written[: i + 1].count(name)) for i, name in enumerate(written)] == WRITES


@pytest.mark.parametrize(("name", "nth"), WRITES, ids=[f"{name}-{nth}" for name, nth in WRITES])
def test_a_full_disk_at_each_write_is_one_line_keeps_the_last_checkpoint_and_resumes(data, tmp_path, capsys,
                                                                                   monkeypatch, name, nth):
    run, seen = tmp_path / "run", []

    def full_here(path) -> bool:
        seen.append(Path(path).name)
        return seen.count(name) == nth and Path(path).name == name

    undo = fail_at_write(monkeypatch, full_here)
    err = one_line(capsys, *tiny(data, run))
    assert f"could not write {run / name}: No space left on device" in err and "free some space" in err
    assert not list(run.glob(".*.tmp"))  # the cut write's temporary file is gone
    epochs = 0 if (name, nth) == (CHECKPOINT_FILE, 1) else 1 if name == CHECKPOINT_FILE else 2
    if not epochs:
        assert "nothing is saved yet" in err and not (run / CHECKPOINT_FILE).exists()
        return
    assert f"resume with: cnnlab train --resume {run}" in err
    assert len(load_checkpoint(run)["history"]) == epochs  # the last good checkpoint, whole
    if (name, nth) not in RESUMED:
        return
    undo()
    code, out, err = run_cli(capsys, "train", "--resume", run)
    assert code == 0 and ("Resuming" if epochs == 1 else "Finishing") in out, err
    assert (run / "report.html").is_file() and load_model(run)[1].class_names == ["0", "1", "2"]


def fail_at_write(monkeypatch, full: callable):
    """Every file cnnlab writes goes through cnnlab.files.atomic_write_bytes; where ``full(path)``,
    the disk is full as that write syncs its data. Returns a function that empties the disk again."""
    import cnnlab.files

    real = cnnlab.files.atomic_write_bytes

    def write(path, data) -> None:
        if not full(path):
            return real(path, data)
        with pytest.MonkeyPatch.context() as disk:
            disk.setattr(os, "fsync", no_space)
            return real(path, data)

    modules = [m for m in list(sys.modules.values()) if getattr(m, "atomic_write_bytes", None) is real]
    for module in modules:
        monkeypatch.setattr(module, "atomic_write_bytes", write)
    return lambda: [setattr(module, "atomic_write_bytes", real) for module in modules]


def no_space(_fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_spec_or_dataset_longer_than_a_file_name_is_named_without_a_traceback(tmp_path):
    spec = "conv8k3 dropout0.2 " * 20 + "dense10"  # 390 characters, and a '.' that looks like a suffix
    assert new_run_folder("fast", "mnist", 0, model=spec, root=tmp_path).name == "spec-mnist-seed0"
    assert new_run_folder("fast", "d" * 300, 0, root=tmp_path).name == f"fast-{'d' * 300}-seed0"


def test_resuming_a_locked_run_leaves_a_users_file_beside_it_be(tmp_path):
    """A note or a .DS_Store beside a run of cnnlab's does not stop --resume, report or export,
    which replace nothing; a new training into that folder is still refused."""
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).touch()
    (run / ".DS_Store").write_bytes(b"finder")
    with claim(run, resuming=True):
        pass
    assert (run / ".DS_Store").read_bytes() == b"finder"
    with pytest.raises(CnnlabError, match=r"holds files cnnlab did not write \(.DS_Store\)"), \
            claim(run, overwrite=True):
        pass


def test_a_resume_read_before_another_training_went_on_is_refused_under_the_lock(finished, data, tmp_path):
    """--resume reads the checkpoint before it takes the lock; under the lock it checks the run still
    stands where it read it, so it never goes on from a stale epoch over another training's work."""
    from cnnlab.training.checkpoint import resumable

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "report.html").unlink()  # its epochs done, its files not all written: resumable
    state, config = resumable(run)
    stale = {**state, "history": state["history"][:1]}  # as read while the other training was at epoch 1
    before = (run / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(CnnlabError, match="another training went on with this run while this one read it"):
        train(config, data, progress=False, resume=stale)
    assert (run / CHECKPOINT_FILE).read_bytes() == before and not (run / "report.html").exists()


def test_the_unfinished_runs_of_a_name_are_found_for_the_note_train_prints(tmp_path):
    first = first_run_folder("fast", "mnist", 0, root=tmp_path)
    for name, files in {"fast-mnist-seed0": ["model.safetensors", "checkpoint.pt"], "fast-mnist-seed0-2": [],
                        "fast-mnist-seed0-3": ["checkpoint.pt"], "fast-mnist-seed0-10": ["checkpoint.pt"],
                        "fast-mnist-seed0-old": ["checkpoint.pt"], "fast-mnist-seed01": ["checkpoint.pt"]}.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_bytes(b"")
    assert unfinished_runs(first) == [tmp_path / "fast-mnist-seed0-3", tmp_path / "fast-mnist-seed0-10"]
    assert new_run_folder("fast", "mnist", 0, root=tmp_path).name == "fast-mnist-seed0-4"


def test_the_command_gives_the_prompt_back_while_a_child_holding_the_folder_draws_the_pictures(data, tmp_path):
    """`cnnlab train` as a command: the result and model first; the pictures and report.html come from a child
    that holds the run's lock, so a writer that comes next waits for it, and then finds them all."""
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "cnnlab", *tiny(data, run)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"Saved to {run}/ (its pictures and report.html follow in a few seconds)" in done.stdout
    assert (run / "model.safetensors").is_file() and (run / "metrics.json").is_file()
    with claim(run, resuming=True):  # waits while the child draws
        drawn = {p.name for p in run.iterdir()}
    assert {"curves.png", "confusion.png", "mistakes.png", "why_wrong.png", "report.html"} <= drawn
    assert not list(run.glob(".*.tmp"))


def test_pictures_none_writes_the_report_without_them(data, tmp_path, capsys):
    code, _, err = run_cli(capsys, *tiny(data, tmp_path / "run"), "--pictures", "none")
    assert code == 0, err
    assert (tmp_path / "run" / "report.html").is_file() and not list((tmp_path / "run").glob("*.png"))
    assert one_line(capsys, *tiny(data, tmp_path / "other"), "--pictures", "later").strip() == (
        "error: --pictures must be one of now, after, none, got later")
