"""Training: one run, from its options to its run directory.

    config      TrainConfig, every option of a run
    presets     fast, accurate, best: the recipes behind --preset
    loop        train(): the whole story top to bottom, with the speed tricks named
    augment     random warps of each batch, on the tensors
    early_stopping  the kept epoch (--keep) and --patience
    start       fine-tuning: --init RUN, a timm backbone's pretrained start, --freeze
    tensorboard --log tensorboard's event files
    finish      a run's files, pictures and report.html, written by the folder's holder
    checkpoint  what --resume needs back, saved after every epoch
    run_folder  a run folder's one writer (its lock), what may be in it, and a failed write in one line
    distributed torchrun: one process per GPU or per CPU socket
    system      threads, device and memory of this machine
"""

from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import TrainResult, resume_training, train

__all__ = ["TrainConfig", "TrainResult", "resume_training", "train"]
