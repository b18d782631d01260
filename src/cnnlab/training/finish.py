"""The end of a run's story (cnnlab.training.loop): its files, its pictures and report.html, and
``--log tensorboard``'s writer, each written by the run folder's holder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data import Dataset
from cnnlab.models.files import ModelInfo
from cnnlab.reporting.report import RunRecord, TestSet, write_html, write_pictures, write_run_files
from cnnlab.training.checkpoint import TrainingParts
from cnnlab.training.config import TrainConfig
from cnnlab.training.run_folder import RunFolder
from cnnlab.training.tensorboard import TensorBoardLog


@dataclass
class Finished:
    """A trained run's model and all that is written beside it: its description, its record, its
    test set (with the logits its metrics came from), and the weights of the epoch not kept (file
    name and weights; None without validation)."""

    trained: torch.nn.Module
    info: ModelInfo
    record: RunRecord
    test: TestSet
    other: tuple[str, dict[str, torch.Tensor]] | None


def save_run(folder: RunFolder, config: TrainConfig, device: torch.device, run: Finished) -> None:
    """The run's files, then its pictures and report.html: now, or by a child once the result is
    out (``config.pictures``)."""
    on_cpu = folder.write(lambda out: write_run_files(out, run.trained, run.info, run.record, device, run.other))

    def draw(out: Path) -> None:
        if config.pictures != "none":
            write_pictures(out, on_cpu, run.info, run.record, run.test)

    if config.pictures == "after":  # the result is out: a child draws, the prompt comes back now
        print(f"Saved to {config.out}/ (its pictures and report.html follow in a few seconds)")
        folder.write_later(draw, write_html)
    else:
        folder.write(draw)
        folder.write(write_html)
        print(f"Saved to {config.out}/")


def open_log(folder: RunFolder, parts: TrainingParts, data: Dataset, steps_done: int) -> None:
    """``--log tensorboard``'s writer, made by the run folder's holder as its other files are; the
    training images it starts with, on a run's first start."""
    parts.log = folder.write(lambda out: TensorBoardLog(out, steps_done))
    if not steps_done:
        parts.log.samples(data.train_images, data.train_labels, data.class_names)
