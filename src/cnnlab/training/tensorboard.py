"""``--log tensorboard``: a run's training written for TensorBoard, as Keras' TensorBoard callback
writes it (the optional extra ``pip install 'cnnlab[tensorboard]'``).

    per step     loss, accuracy (of the batch) and learning rate         step/loss, step/accuracy, step/lr
    per epoch    loss, accuracy, val_loss, val_accuracy, learning rate   epoch/...
    once         sample training images, the test confusion matrix, the hyperparameters with the
                 final metrics (TensorBoard's HPARAMS tab)

The event files go into the run folder itself (``events.out.tfevents.*``), written by the training
alone, so ``tensorboard --logdir runs`` shows every run as one of its runs.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError

EVENT_FILES = "events.out.tfevents."  # the start of every event file's name
LOGGERS = ("none", "tensorboard")  # TrainConfig.log
SAMPLE_IMAGES = 32


class TensorBoardLog:
    """One run's TensorBoard writer (``torch.utils.tensorboard.SummaryWriter``) and its step count."""

    def __init__(self, folder: str | Path, steps_done: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CnnlabError("--log tensorboard needs TensorBoard: pip install 'cnnlab[tensorboard]' "
                              "(or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(folder))
        self.step_count = steps_done

    def step(self, loss: torch.Tensor, accuracy: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """One training step's loss, the batch's accuracy (as the training loop counted its hits) and
        the learning rate (of the last parameter group: a fine-tuning run's output layer)."""
        self.step_count += 1
        self.writer.add_scalar("step/loss", float(loss), self.step_count)
        self.writer.add_scalar("step/accuracy", float(accuracy), self.step_count)
        self.writer.add_scalar("step/lr", optimizer.param_groups[-1]["lr"], self.step_count)

    def epoch(self, row: dict[str, float], optimizer: torch.optim.Optimizer) -> None:
        """An epoch's row of ``history.csv`` and the learning rate it ended at."""
        epoch = int(row["epoch"])
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in row:
                self.writer.add_scalar(f"epoch/{key}", row[key], epoch)
        self.writer.add_scalar("epoch/lr", optimizer.param_groups[-1]["lr"], epoch)
        self.writer.flush()

    def samples(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
        """The first training images (uint8 ``(N, H, W)`` or ``(N, H, W, 3)``), their classes in the tag's text."""
        shown = images[:SAMPLE_IMAGES]
        batch = shown.unsqueeze(-1) if shown.dim() == 3 else shown
        names = ", ".join(class_names[int(k)] for k in labels[:SAMPLE_IMAGES])
        self.writer.add_images("samples/training images", batch, 0, dataformats="NHWC")
        self.writer.add_text("samples/their classes", names, 0)

    def finish(self, config: Any, metrics: dict[str, Any], class_names: list[str]) -> None:
        """The test confusion matrix as a picture, the hyperparameters with the final metrics; closed."""
        from cnnlab.reporting import plots  # matplotlib loads only here

        buffer = plots.confusion_matrix(metrics["confusion_matrix"], class_names, io.BytesIO(),
                                        f"Confusion matrix, test error {100 * metrics['test_error']:.2f}%")
        from PIL import Image

        picture = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        self.writer.add_image("test/confusion matrix", picture, 0, dataformats="HWC")
        settings = {k: v if isinstance(v, int | float | str | bool) else str(v)
                    for k, v in asdict(config).items() if k not in ("out", "data_dir", "pictures", "log")}
        final = {f"hparam/{k}": float(metrics[k]) for k in ("test_accuracy", "test_error") if k in metrics}
        self.writer.add_hparams(settings, final, run_name=".")
        self.writer.close()
