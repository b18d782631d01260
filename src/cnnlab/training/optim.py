"""The optimizer, its learning-rate schedule, the weight average, and the loss: what one
training step is made of (cnnlab.training.loop runs the steps; cnnlab.training.lr_find sweeps them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cnnlab.training.config import DEFAULT_LR, TrainConfig


def average_weights(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """Trick 7: an exponential moving average of ``model``'s weights and batch-norm statistics,
    updated each step with ``decay`` (0: none). It averages out the last steps' noise;
    its own copy of the network, so the optimizer's weights are untouched."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

def training_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of logits ``(N, classes)``, or of an ensemble's ``(N, classes, members)``
    (cnnlab.models.registry.Ensemble): the members' mean loss, each member scored on its own."""
    return F.cross_entropy(logits, member_targets(logits, targets), label_smoothing=label_smoothing)

def member_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``targets`` ``(N,)`` as the loss takes them: repeated for each member of an ensemble's logits."""
    return targets[:, None].expand(-1, logits.shape[-1]) if logits.dim() == 3 else targets

def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """The argmax class ``(N,)``; for an ensemble's training output, of the members' summed logits."""
    return (logits.sum(-1) if logits.dim() == 3 else logits).argmax(1)

def make_optimizer_and_schedule(config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int,
                                groups: list[tuple[list[torch.nn.Parameter], float]] | None = None):
    """The optimizer and its per-step learning-rate schedule, peaking at ``config.lr``; with ``groups``
    (parameters and their fraction of that rate: a fine-tuning run's, cnnlab.training.start), one
    parameter group each, peaking at its own fraction."""
    lr = config.lr or DEFAULT_LR[config.optimizer]
    params = [{"params": part, "lr": lr * factor} for part, factor in groups] if groups else model.parameters()
    optimizer = make_optimizer(config.optimizer, params, lr)
    peaks = [lr * factor for _, factor in groups] if groups else lr
    return optimizer, make_schedule(config.schedule, optimizer, peaks, config.epochs, steps_per_epoch)

def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """adam (Adam), sgd (Nesterov momentum 0.9) or adadelta (as in pytorch/examples), over ``params``
    (a module's parameters, or parameter groups with their own rates)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)  # fused=True imports torch._dynamo: +2.5 s start-up
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.Adadelta(params, lr=lr)

def make_schedule(name: str, optimizer, lr: float | list[float], epochs: int, steps_per_epoch: int):
    """A per-step schedule: one-cycle (warm up then anneal), step (x0.7 each epoch) or constant."""
    if name == "onecycle":
        # Momentum cycles inversely to the learning rate, where the optimizer has one (not adadelta).
        has_momentum = "momentum" in optimizer.defaults or "betas" in optimizer.defaults
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch, cycle_momentum=has_momentum)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=steps_per_epoch, gamma=0.7)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
