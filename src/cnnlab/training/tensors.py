"""The data a run trains on: loaded or given, split for validation, normalised once and put on
the device as one tensor per split (trick 1 of cnnlab.training.loop)."""

from __future__ import annotations

import torch

from cnnlab.data import Dataset, load_dataset, reshape_images, split_validation
from cnnlab.models.inference import Stats, to_input
from cnnlab.training.config import TrainConfig, is_users
from cnnlab.training.start import Start


def on_device(data: Dataset, mean: Stats, std: Stats, device: torch.device):
    """Trick 1: ``((train_x, train_y), (val_x, val_y))``, normalised once, each split one tensor on the device."""
    return ((to_input(data.train_images, mean, std, device), data.train_labels.to(device)),
            (to_input(data.val_images, mean, std, device), data.val_labels.to(device)))

def prepare_data(config: TrainConfig, dataset: Dataset | None, start: Start | None = None) -> Dataset:
    """The dataset to train on: the one given (split for validation if it has no such part, and
    resized or made grey as the config asks), else loaded. A run fine-tuned from ``start`` reads a
    folder of images as that run's images are read: in its channels, and for an MNIST digit model
    by finding each photo's ink (cnnlab.handwriting.digit.folder_reader); they are then of its kind."""
    channels = start.info.in_channels if start else 1 if config.grey else None
    if dataset is not None:
        dataset = reshape_images(dataset, config.image_size, channels)
        return split_validation(dataset, config.val_split, config.seed)
    from cnnlab.handwriting.digit import folder_reader  # scipy loads only where a folder is read

    like_start = start is not None and is_users(config.dataset)  # a folder or file, read as the start's images
    reader = folder_reader(start.info) if like_start else None
    data = load_dataset(config.dataset, config.data_dir, config.val_split, config.limit, config.seed,
                        config.image_size, channels=channels, read_image=reader)
    if like_start:
        data.kind = start.info.kind
    return data


def pixel_stats(images: torch.Tensor) -> tuple[Stats, Stats]:
    """Mean and standard deviation of the pixels scaled to 0-1: numbers for grey images ``(N, H, W)``
    (MNIST: 0.1307, 0.3081), lists of one per channel for colour ``(N, H, W, C)``."""
    if images.ndim == 3:
        x = images.float().div_(255)
        return x.mean().item(), max(x.std().item(), 1e-6)
    x = images.reshape(-1, images.shape[-1]).float().div_(255)
    return x.mean(0).tolist(), x.std(0).clamp(min=1e-6).tolist()
