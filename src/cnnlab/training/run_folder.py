"""A run folder has one writer at a time, holds only what cnnlab writes, and keeps its last good state.

    runs/fast-mnist-seed0/
        cnnlab.lock        the writer's lock; it names the process holding it, and marks the folder as a run
        checkpoint.pt      after every epoch (cnnlab.training.checkpoint)
        model.safetensors, model.json, history.csv, ... report.html    at the end (cnnlab.reporting.report)

As git's ``index.lock``: a training claims the folder before its data loads, and holds it until
its last file is written; a second training, ``--resume`` or ``--overwrite`` into it meanwhile is
refused, naming the process that holds it. The lock is ``fcntl.flock`` on ``cnnlab.lock``, which
the operating system lets go of when its process ends, however it ends: a lock left by a dead
process is simply taken. The file stays, and says the folder is a cnnlab run.

A training goes into a new or empty folder, or into a cnnlab run's: every file in it is one cnnlab
writes there, and ``cnnlab.lock`` (or, in a run made before there was one, a cnnlab
``config.json`` or ``checkpoint.pt``) says cnnlab wrote them. A folder with anything else is the
user's, and is refused. A folder holding a run is refused too, unless the training resumes it or
overwrites it; overwriting removes the old run's files just before the new run's first write, so
a training that fails before it has anything to save leaves the old run as it was.

As Keras' BackupAndRestore: every file is written atomically (cnnlab.files), so a write that fails
(a full disk) leaves the last good checkpoint in place, and ends in one line saying how to go on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.files import free_folder, names_a_path, parse_json, read_json
from cnnlab.models.files import MODEL_FILE
from cnnlab.models.registry import MODELS, spec_file
from cnnlab.reporting.report import RUN_FILES
from cnnlab.training.checkpoint import CHECKPOINT_FILE, CONFIG_NEEDS, TrainingParts, load_checkpoint, save_checkpoint
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import World, gather
from cnnlab.training.tensorboard import EVENT_FILES

try:
    import fcntl
except ImportError:  # Windows: no flock; a run folder is not locked there
    fcntl = None

LOCK_FILE = "cnnlab.lock"
DRAWING = "drawing the run's pictures, after its training"  # the lock holder's command while it does
WAIT_FOR_DRAWING_S = 120  # how long a claim waits for that holder to let go
# Every name cnnlab writes into a run folder: the training's, and `cnnlab export`'s model.onnx beside them.
CNNLAB_FILES = frozenset({LOCK_FILE, CHECKPOINT_FILE, *RUN_FILES, "model.onnx"})
OVERWRITE = "--overwrite (overwrite=True in Python)"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or a callback's KeyboardInterrupt) stopped a training that writes a run folder;
    ``resumable``: whether the folder now holds this training's checkpoint to resume from."""

    def __init__(self, resumable: bool) -> None:
        super().__init__("interrupted")
        self.resumable = resumable


@dataclass
class RunFolder:
    """A run folder claimed by this process, its lock held (:func:`claim`); every write to it goes
    through :meth:`write`."""

    path: Path
    lock: int | None  # the lock file's descriptor (None where there is no flock)
    made: bool  # the claim made the folder...
    lock_made: bool  # ...or at least its lock file: both go again if nothing is written
    stale: list[Path] = field(default_factory=list)  # an overwritten run's files, removed before the first write
    written: bool = False

    def write(self, files: Callable[[Path], Any]) -> Any:
        """``files(path)`` writes into the folder, and what it returns is returned: first the
        overwritten run's files go; a failed write (a full disk) is one line saying what to do, the
        last checkpoint kept."""
        try:
            self.written = True
            for old in self.stale:
                old.unlink(missing_ok=True)
            self.stale = []
            return files(self.path)
        except OSError as exc:
            raise CnnlabError(write_failure(self.path, exc)) from None

    def write_later(self, files: Callable[[Path], None], last: Callable[[Path], None]) -> None:
        """``files(path)``, then ``last(path)``, written by a child process that goes on holding the
        lock after this one lets go and returns: the command's prompt comes back while the child
        draws (the run's pictures, then report.html as ``last``).

        Forked, so the child has the trained network and test set in memory; it runs torch on one
        thread (OpenMP's thread pool does not survive a fork), in its own session so a Ctrl-C at the
        prompt does not reach it, and with its output closed, so a pipe (``cnnlab train | tee``) ends
        with the command. Should ``files`` fail, ``last`` is still written (a report of what there is).
        Where there is no fork or flock, both are written now.
        """
        if fcntl is None or self.lock is None or not hasattr(os, "fork"):
            self.write(files)
            return self.write(last)
        say_who_holds(self.lock, self.path, DRAWING)  # from now on: a claim that comes meanwhile waits
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            self.written = True
            return
        try:
            os.setsid()
            quiet = os.open(os.devnull, os.O_RDWR)
            for stream in (0, 1, 2):
                os.dup2(quiet, stream)
            say_who_holds(self.lock, self.path, DRAWING)  # the child's own pid
            torch.set_num_threads(1)
            with contextlib.suppress(Exception):
                self.write(files)
            self.write(last)
        finally:
            os._exit(0)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.write(lambda path: save_checkpoint(path, state))

    @property
    def resumable(self) -> bool:
        """Whether the folder holds this training's checkpoint (not an overwritten run's)."""
        return not self.stale and (self.path / CHECKPOINT_FILE).is_file()

    def release(self) -> None:
        """Let go of the lock; a claim that wrote nothing takes away the lock file and folder it made."""
        if not self.written:
            with contextlib.suppress(OSError):
                if self.lock_made:
                    (self.path / LOCK_FILE).unlink()  # while still held: a waiter checks it locked the file in place
                if self.made:
                    self.path.rmdir()
        if self.lock is not None:
            os.close(self.lock)  # closing it lets go of the flock


@contextlib.contextmanager
def claim(out: str | Path | None, overwrite: bool = False, resuming: bool = False) -> Iterator[RunFolder | None]:
    """The run folder ``out`` for one training, locked while inside (None for ``out=None``: no
    files). Refused with a :class:`CnnlabError`: a folder with files cnnlab did not write, one
    another process is writing, and one holding a run unless ``resuming`` it or ``overwrite``."""
    if out is None:
        yield None
        return
    folder = open_run_folder(Path(out), overwrite, resuming)
    try:
        yield folder
    except KeyboardInterrupt as stop:
        raise Interrupted(folder.resumable) from stop
    finally:
        folder.release()


def open_run_folder(path: Path, overwrite: bool, resuming: bool) -> RunFolder:
    """:func:`claim`'s folder: checked as cnnlab's, made if new, locked, then checked for a run."""
    check_is_cnnlab_run(path, resuming)
    made = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot make the run folder {path}: {exc.strerror or exc}; choose another --out") from None
    lock_made = not (path / LOCK_FILE).exists()
    folder = RunFolder(path, take_lock(path), made, lock_made)
    try:
        folder.stale = files_to_replace(path, overwrite, resuming)
        if folder.lock is not None:
            say_who_holds(folder.lock, path)
    except BaseException:
        folder.release()
        raise
    return folder


def check_is_cnnlab_run(path: Path, resuming: bool = False) -> None:
    """Refuse a ``path`` that is not a folder, or holds anything cnnlab does not write into a run;
    ``resuming`` a run of cnnlab's (its lock file there), files of the user's beside it are left be:
    nothing is replaced then (a note, a .DS_Store)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise CnnlabError(f"{path} exists and is not a folder; give --out a new or empty folder")
    entries = sorted(path.iterdir())
    if resuming and (path / LOCK_FILE).is_file():
        return
    for entry in entries:
        if is_cnnlab_file(entry.name) and entry.is_file() and not entry.is_symlink():
            continue
        if entry.is_symlink() or entry.exists():  # not a writer's temporary file, renamed meanwhile
            raise CnnlabError(
                f"{path} holds files cnnlab did not write ({entry.name}); cnnlab writes only into a new or empty "
                f"folder or a run of its own: choose another --out, or move {entry.name} out of it")
    names = [entry.name for entry in entries if entry.name != LOCK_FILE]
    if names and len(names) == len(entries) and not made_before_locks(path):
        raise CnnlabError(f"{path} holds files that are not a cnnlab run's ({names[0]}); cnnlab writes only into a "
                          "new or empty folder or a run of its own: choose another --out")


def is_cnnlab_file(name: str) -> bool:
    """Whether ``name`` is a file cnnlab writes into a run folder, or one's temporary file left by a
    process killed as it wrote it (``.model.json.k3j2_x9a.tmp``, cnnlab.files.atomic_write_bytes)."""
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1 : -len(".tmp")].rpartition(".")[0]
    return name in CNNLAB_FILES or name.startswith(EVENT_FILES)  # --log tensorboard's


def made_before_locks(path: Path) -> bool:
    """Whether a folder without ``cnnlab.lock`` is a run that cnnlab made before there was one:
    its ``config.json`` or ``checkpoint.pt`` is cnnlab's."""
    with contextlib.suppress(CnnlabError):
        if (path / "config.json").is_file():
            config = read_json(path / "config.json")
            return isinstance(config, dict) and all(key in config for key in CONFIG_NEEDS)
        if (path / CHECKPOINT_FILE).is_file():
            return bool(load_checkpoint(path))
    return False


def files_to_replace(path: Path, overwrite: bool, resuming: bool) -> list[Path]:
    """The files of the run in ``path`` that a new training replaces (none when resuming it), or
    a :class:`CnnlabError` when it holds a run and ``overwrite`` is not given."""
    old = sorted(entry for entry in path.iterdir() if entry.name != LOCK_FILE)
    if resuming or not old:
        return []
    if overwrite:
        return old
    if (path / MODEL_FILE).exists():
        raise CnnlabError(f"{path} already holds a trained model: choose another --out, or replace it with {OVERWRITE}")
    if (path / CHECKPOINT_FILE).exists():
        raise CnnlabError(f"{path} holds an unfinished run: continue it with 'cnnlab train --resume {path}', or "
                          f"pass {OVERWRITE} to start again")
    raise CnnlabError(f"{path} holds part of a cnnlab run ({old[0].name}): choose another --out, or replace it "
                      f"with {OVERWRITE}")


def take_lock(folder: Path) -> int | None:
    """The descriptor of ``folder``'s lock file, locked by this process (None where there is no flock);
    a :class:`CnnlabError` naming the process that holds it."""
    if fcntl is None:
        return None
    path = folder / LOCK_FILE
    for _ in range(3):
        try:
            lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise CnnlabError(write_failure(folder, exc, path)) from None
        try:
            lock_or_wait_for_drawing(lock)
        except BlockingIOError:
            holder = holder_of(lock)
            os.close(lock)
            raise CnnlabError(f"{folder} is being written by another training ({holder}); wait for it to end, or "
                              "train into another folder (--out)") from None
        except OSError as exc:
            os.close(lock)
            raise CnnlabError(f"cannot lock {path}: {exc.strerror or exc}; train into a folder on a local disk"
                              ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(lock), os.stat(path)):
                return lock
        os.close(lock)  # its holder took the file away as it let go: lock the one there now
    raise CnnlabError(f"cannot lock {path}: it keeps being replaced; is another program writing {folder}?")


def lock_or_wait_for_drawing(lock: int) -> None:
    """Lock ``lock``, waiting while its holder draws a finished run's pictures (seconds); any other
    holder is a training: BlockingIOError at once."""
    waited_until = time.monotonic() + WAIT_FOR_DRAWING_S
    while True:
        try:
            return fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if DRAWING not in holder_of(lock) or time.monotonic() > waited_until:
                raise
            time.sleep(0.05)


@dataclass
class Holder:
    """Who holds a run folder's lock: written into ``cnnlab.lock`` for the message of whoever is refused."""

    pid: int
    host: str
    command: str
    started: str

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started}: {self.command}"


def say_who_holds(lock: int, folder: Path, doing: str | None = None) -> None:
    """Write this process into the lock file it holds (in place: a new file would be a new, unheld lock),
    with what it is ``doing`` (default: its command line)."""
    command = doing or shlex.join([program_name(), *sys.argv[1:]])
    holder = Holder(os.getpid(), socket.gethostname(), command[:200], time.strftime("%Y-%m-%d %H:%M:%S"))
    try:
        os.ftruncate(lock, 0)
        os.pwrite(lock, (json.dumps(asdict(holder)) + "\n").encode(), 0)
    except OSError as exc:
        raise CnnlabError(write_failure(folder, exc, folder / LOCK_FILE)) from None


def program_name() -> str:
    """This process's program as one would type it: ``cnnlab``, ``python -m cnnlab``, ``script.py``."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    return f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name


def holder_of(lock: int) -> str:
    """Who holds the lock, as the file says; a holder that has not written itself yet is taking it now."""
    with contextlib.suppress(OSError, CnnlabError, TypeError, ValueError):
        return str(Holder(**parse_json(os.pread(lock, 4096, 0), LOCK_FILE)))
    return "a process taking it at this moment"


def write_failure(run: Path, exc: OSError, target: Path | None = None) -> str:
    """The one line for a write into ``run`` that failed: what, why, and how to go on."""
    where = target or exc.filename or run
    reason = exc.strerror or str(exc)
    fix = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else
           "make it writable" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "fix that")
    if (run / CHECKPOINT_FILE).is_file():
        return f"could not write {where}: {reason}; the last checkpoint is kept: {fix} and resume with: " \
               f"cnnlab train --resume {run}"
    return f"could not write {where}: {reason}; nothing is saved yet: {fix} and train again"


def save_progress(folder: RunFolder | None, config: TrainConfig, parts: TrainingParts, history: list[dict[str, float]],
                  threads: int, world: World) -> None:
    """The checkpoint after each epoch, or at a step boundary on Ctrl-C (``parts.ongoing`` set), so
    a crash loses at most the epoch under way. Every rank gives its random generators' states;
    rank 0, which holds the ``folder``, writes the file."""
    if not config.out:
        return
    generators = gather(parts.generator_states(), world)
    if folder is not None:
        folder.save_checkpoint(parts.state(history, {**asdict(config), "threads": threads}, generators))


def new_run_folder(preset: str, dataset: str, seed: int, model: str | None = None, root: str | Path = "runs") -> Path:
    """A new run's folder under ``root``: ``PRESET-DATASET-seedS``, or ``MODEL-DATASET-seedS`` for a
    chosen ``model`` (a registry name, a spec file's stem, or ``spec``), then ``-2``, ``-3``...: the
    first that does not exist yet. A folder or file of data is named by its stem."""
    return free_folder(first_run_folder(preset, dataset, seed, model, root))


def first_run_folder(preset: str, dataset: str, seed: int, model: str | None = None, root: str | Path = "runs"
                     ) -> Path:
    """The name :func:`new_run_folder` starts from, before ``-2``, ``-3``..."""
    label, data = model_label(model) if model else preset, data_label(dataset)
    return Path(root) / f"{label}-{data}-seed{seed}"


def unfinished_runs(first: Path) -> list[Path]:
    """The runs named after ``first`` (it, then ``-2``, ``-3``...) that hold a checkpoint and no model:
    trainings that were interrupted, which ``cnnlab train --resume`` continues."""
    named = [first, *(p for p in first.parent.glob(f"{first.name}-*") if p.name[len(first.name) + 1:].isdigit())]
    return sorted((p for p in named if (p / CHECKPOINT_FILE).is_file() and not (p / MODEL_FILE).is_file()),
                  key=lambda p: (len(p.name), p.name))


def model_label(model: str) -> str:
    """A model in a folder's name: a registry name, ``timm-`` and a backbone's architecture, a spec
    file's stem, or ``spec``."""
    if model.startswith("timm:"):
        return "timm-" + model.removeprefix("timm:").split(".")[0]
    return model if model in MODELS else spec.stem if (spec := spec_file(model)) else "spec"


def data_label(dataset: str) -> str:
    """A dataset in a folder's name: its name, or a folder's or file's stem."""
    return Path(dataset).stem if names_a_path(dataset) else dataset
