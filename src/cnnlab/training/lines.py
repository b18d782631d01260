"""What a training prints: its first line, the note on what its loss is, and a line an epoch,
as Keras' ``fit`` does (cnnlab.training.loop prints them)."""

from __future__ import annotations

import torch

from cnnlab.data import Dataset
from cnnlab.models.registry import count_parameters, flops_per_image
from cnnlab.training.config import TrainConfig
from cnnlab.training.distributed import World
from cnnlab.training.system import threads_label


def start_line(config: TrainConfig, model: torch.nn.Module, data: Dataset, device: torch.device, threads: int,
               world: World) -> str:
    """The run's first line: the network, its size and cost, the data, and where it runs."""
    name = config.model if " " not in config.model else repr(config.model)  # a spec, quoted
    return (f"Training {name} ({count_parameters(model):,} parameters, "
            f"{flops_per_image(model, data.image_size, data.channels) / 1e6:.2f} MFLOPs an image) on {data.name}"
            f"{image_shape(data)}: "
            f"{len(data.train_labels):,} train / {len(data.val_labels):,} val images, {device}, "
            f"{threads_label(threads)}"
            + (f" in each of {world.size} processes (batch {config.batch_size} each)" if world.size > 1 else ""))


def image_shape(data: Dataset) -> str:
    """`` (32x32 RGB)``: the images' size and colour, said when they are not MNIST's 28x28 grey."""
    colour = "grey" if data.channels == 1 else "RGB" if data.channels == 3 else f"{data.channels} channels"
    size = f"{data.image_size}x{data.image_size}"
    return "" if (size, colour) == ("28x28", "grey") else f" ({size} {colour})"


def loss_note(config: TrainConfig) -> str | None:
    """What the printed training loss is, when it is not the plain cross-entropy val_loss is."""
    what = " and ".join(([f"label-smoothed ({config.label_smoothing:g})"] if config.label_smoothing else []) +
                        ([f"taken on '{config.augment}'-augmented batches"] if config.augment != "none" else []))
    return (f"(loss is {what}, averaged over the epoch, so it runs above val_loss; history.csv's train_ce "
            "is its plain cross-entropy)") if what else None


def epoch_line(row: dict[str, float], epochs: int, threads: int) -> str:
    """The Keras-style summary of one epoch."""
    parts = [f"Epoch {row['epoch']}/{epochs}", f"loss: {row['loss']:.4f}", f"accuracy: {row['accuracy']:.4f}"]
    if "val_loss" in row:
        parts += [f"val_loss: {row['val_loss']:.4f}", f"val_accuracy: {row['val_accuracy']:.4f}"]
    parts.append(f"{row['seconds']:.1f}s ({threads_label(threads)})")
    return " - ".join(parts)
