"""The page's Train tab: one training at a time, in a process of its own, watched as it runs.

The training is ``cnnlab.train`` in a child process (``python -m cnnlab.serving.training_job``: it
shares no thread, lock or memory with the server), with one thread fewer than the machine has
cores, so the server keeps a core for answering predictions. The child sends its events as JSON
lines on its stdout:

    {"type": "line", "text": ...}        each line ``cnnlab train`` prints (the epoch lines among them)
    {"type": "point", "epoch": ...}      a point of the curves, about every 0.25 s (cnnlab.training.curves)
    {"type": "epoch", "row": ..., "filters": <PNG>}   an epoch's history row and its first-layer filters
    {"type": "done", "run": ..., "test_accuracy": ...}
    {"type": "stopped", "run": ..., "epochs_done": ..., "checkpoint": ...}   Stop: after the step under way
    {"type": "failed", "error": ...}

The server keeps every event of the current job, so a page that connects late (or again) sees the
whole run; a client that goes away takes nothing with it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.data.download import OFFLINE_ENV
from cnnlab.errors import CnnlabError
from cnnlab.files import parse_json

MAX_EPOCHS = 50  # the page is for runs one watches


@dataclass
class TrainRequest:
    """What the Train tab sends: a preset, optionally a model (a registry name or a layer spec), the
    epochs and a limit on the training images (for quick runs)."""

    preset: str = "fast"
    model: str | None = None
    epochs: int | None = None
    limit: int | None = None

    def settings(self, dataset: str, shape: tuple[int, int, int] = (10, 1, 28)) -> dict[str, Any]:
        """The keyword options for ``cnnlab.train`` on ``dataset``, whose images and classes are
        ``shape`` (classes, channels, side), checked: a :class:`CnnlabError` names the bad one. A
        spec is planned for that shape (no weights allocated), so one that does not fit is refused here,
        as is a network whose training would need more memory than this machine has free (training on
        a GPU, the training's own process checks the GPU's)."""
        import torch

        from cnnlab.models.layers import plan
        from cnnlab.models.registry import MODELS, model_spec, spec_file
        from cnnlab.training.config import TrainConfig, check_memory
        from cnnlab.training.system import select_device

        if self.model and self.model not in MODELS and spec_file(self.model):  # the page opens no server files
            raise CnnlabError(f"model '{self.model}': the page takes a registry name or a layer spec, not a file")
        if self.epochs is not None and not 1 <= self.epochs <= MAX_EPOCHS:
            raise CnnlabError(f"epochs must be between 1 and {MAX_EPOCHS}, got {self.epochs}")
        if self.limit is not None and self.limit < 100:
            raise CnnlabError(f"limit must be at least 100 training images, got {self.limit}")
        options = {"preset": self.preset, "dataset": dataset,
                   **{k: v for k, v in (("model", self.model), ("epochs", self.epochs), ("limit", self.limit))
                      if v not in (None, "")}}
        config = TrainConfig.from_preset(self.preset, **{k: v for k, v in options.items() if k != "preset"})
        config.validate()
        if spec := model_spec(config.model):
            plan(spec, *shape)
        if select_device(config.device).type == "cpu":  # a GPU's free memory is asked in the training's own
            check_memory(config, shape, torch.device("cpu"))  # process: asking here would start CUDA in the server
        return options


@dataclass
class TrainingJob:
    """One training run of the page: its settings, its run directory, its events so far, and its state
    (``running``, ``done``, ``stopped`` or ``failed``)."""

    settings: dict[str, Any]
    out: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    state: str = "running"
    stopping: bool = False
    process: Any = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, event: dict[str, Any]) -> None:
        with self.changed:
            self.events.append(event)
            if event["type"] in ("done", "stopped", "failed"):
                self.state = event["type"]
            self.changed.notify_all()

    def stop(self) -> None:
        """Ask the child, once, to stop after the step under way (as Ctrl-C does): its checkpoint is
        kept. A second Ctrl-C would stop it at once, so a second Stop sends nothing."""
        if self.state == "running" and not self.stopping and self.process is not None and self.process.poll() is None:
            self.stopping = True
            self.process.send_signal(signal.SIGINT)

    def end(self, seconds: float = 10.0) -> None:
        """When the server shuts down: stop the training, and kill it if it has not ended in ``seconds``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stop()
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def wait(self, seen: int, timeout: float) -> list[dict[str, Any]]:
        """The events after the first ``seen``, waiting up to ``timeout`` seconds for one."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) > seen or self.state != "running", timeout)
            return self.events[seen:]

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "settings": self.settings, "run": str(self.out), "events": len(self.events)}


def start_job(settings: dict[str, Any], out: Path, on_done: Callable[[TrainingJob], None]) -> TrainingJob:
    """Start ``cnnlab.train(**settings)`` writing to ``out`` in a child process; a thread passes its
    events to the job, and calls ``on_done(job)`` when the run is saved, before the page hears of it."""
    threads = max(1, (os.cpu_count() or 1) - 1)
    job = TrainingJob(settings, out)
    # Offline: a training started from the page uses the data on this machine and never downloads.
    job.process = subprocess.Popen([sys.executable, "-m", "cnnlab.serving.training_job", json.dumps(settings),
                                    str(out), str(threads)], stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, OFFLINE_ENV: "1"})

    threading.Thread(target=relay, args=(job, on_done), daemon=True, name="cnnlab-train-relay").start()
    return job


def relay(job: TrainingJob, on_done: Callable[[TrainingJob], None]) -> None:
    """Pass the child's events to ``job`` until it ends. Whatever happens here, the job ends with
    one of done, stopped or failed, and the child is waited for, so no page waits for ever."""
    try:
        for line in job.process.stdout:
            event = _event(line)
            if event["type"] == "done":
                try:
                    on_done(job)
                except CnnlabError as exc:
                    event = {"type": "failed", "error": f"the run was saved, but its model cannot be served: {exc}"}
            job.add(event)
            if job.state != "running":
                break
    except (OSError, ValueError) as exc:  # the pipe broke, or the child wrote bytes that are not text
        job.add({"type": "failed", "error": f"lost the training process's output ({exc})"})
    finally:
        code = job.process.wait()
        if job.state == "running":
            job.add({"type": "failed", "error": f"the training process ended (exit code {code}) without a result"})


def _event(line: str) -> dict[str, Any]:
    """One line of the child's stdout as an event; anything but an event object is a printed line."""
    try:
        event = parse_json(line, "the training's output")
    except CnnlabError:
        event = None
    return event if isinstance(event, dict) and "type" in event else {"type": "line", "text": line.rstrip()}


class _Lines(io.TextIOBase):
    """stdout in the child: each printed line becomes a ``line`` event."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit, self.pending = emit, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.emit({"type": "line", "text": line})
        return len(text)


def train_in_child(settings: dict[str, Any], out: str, threads: int) -> None:
    """The child process: train, sending lines, points, epochs and the end as JSON lines on stdout."""
    events = sys.stdout
    # Below the server's own processes: a page's training takes the cores the requests leave, so
    # the answers' latency hardly moves while it runs.
    os.nice(10)
    if hasattr(os, "SCHED_IDLE"):  # Linux: run only on a core nothing else wants (the threads made later too)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    def emit(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    sys.stdout = _Lines(emit)
    from cnnlab.training.loop import train

    def on_epoch(row, model, _to_input) -> None:
        emit({"type": "epoch", "row": row, "filters": filters_png(model)})

    try:
        result = train(**settings, out=out, threads=threads, progress=False, on_epoch=on_epoch,
                       on_point=lambda row: emit({"type": "point", **row}))
        emit({"type": "done", "run": out, "test_accuracy": result.metrics["test_accuracy"]})
    except KeyboardInterrupt:
        saved = (Path(out) / "checkpoint.pt").is_file()
        emit({"type": "stopped", "run": out, "epochs_done": _epochs_done(Path(out)) if saved else 0,
              "checkpoint": saved})
    except CnnlabError as exc:
        emit({"type": "failed", "error": str(exc)})
    except Exception as exc:
        emit({"type": "failed", "error": f"{type(exc).__name__}: {exc}"})


def _epochs_done(out: Path) -> int:
    from cnnlab.training.checkpoint import load_checkpoint

    try:
        return len(load_checkpoint(out)["history"])
    except CnnlabError:
        return 0


def filters_png(model) -> str | None:
    """The first conv layer's kernels as a base64 PNG (cnnlab.reporting.plots.conv_filters), or None."""
    from cnnlab.models.attribution import first_conv
    from cnnlab.reporting.plots import conv_filters

    first = first_conv(model)
    if first is None:
        return None
    buffer = io.BytesIO()
    conv_filters(first.weight, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


if __name__ == "__main__":  # python -m cnnlab.serving.training_job SETTINGS_JSON OUT THREADS (start_job runs it)
    train_in_child(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
