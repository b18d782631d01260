"""Training: the whole story of one run, top to bottom.

    config -> threads and seed -> data as one tensor -> model -> optimizer and schedule
           -> epochs (shuffle, step, validate, print) -> test -> run directory

The speed tricks, each measured on a 2-core CPU (docs/explanations/fast-training.md):

1. The whole dataset is one normalised float tensor, and a batch is a slice through a
   random permutation: 0.18 s an epoch of MNIST batches, against 7.61 s for a per-sample
   DataLoader (benchmarks/loader_cost.py).
2. channels_last memory format: oneDNN's fastest conv kernels, 1.45-2.2x per step here.
3. Batch norm plus a one-cycle learning rate: the ``fast`` preset is past 99% in one epoch.
   Its blocks pool before batch norm and ReLU, so those touch a quarter of the pixels.
4. No per-step host syncs: losses and hit counts accumulate as tensors, read once an epoch.
5. Threads: every core no other cnnlab training runs on (cnnlab.training.system); a thread sharing
   a busy core stalls every step.
6. Start-up: torch._dynamo, which torch.optim imports on first use, loads on a second thread
   while the data loads.
7. Weight averaging (``ema``): an exponential moving average of the weights, kept beside the
   optimizer's, is the network delivered; it costs one in-place lerp per step.
8. Memory: malloc keeps freed blocks for the next step instead of unmapping them, so a step
   does not page-fault its buffers in afresh (cnnlab.training.system): ``accurate`` is 8% faster.

The presets (cnnlab.training.presets) add the recipe: label smoothing, a small network for ``fast``,
augmentation for ``accurate`` and ``best``. On a GPU the data lives on the device and the
forward pass runs in bfloat16 autocast.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError, require
from cnnlab.models.files import INK, ModelInfo, architecture_of
from cnnlab.models.inference import Stats, background_of, images_logits, predict_logits, to_input
from cnnlab.models.registry import build_model
from cnnlab.reporting.metrics import chance_level_warning, classification_metrics, score
from cnnlab.reporting.report import RunRecord, TestSet
from cnnlab.training.augment import check_mirroring
from cnnlab.training.checkpoint import (
    CHECKPOINT_FILE,
    RunShape,
    StopRequested,
    TrainingParts,
    check_still_resumable,
    make_parts,
    resumable,
    resume_line,
    stop_between_steps,
)
from cnnlab.training.config import TrainConfig, check_memory, fit_to_small_data, is_users, resolve_config, users_data
from cnnlab.training.curves import MAX_EPOCHS, EpochPoints
from cnnlab.training.distributed import (
    SINGLE,
    World,
    cpu_threads,
    device_for,
    join,
    leave,
    shard,
    total,
    wrap,
)
from cnnlab.training.early_stopping import OTHER_FILE, BestEpoch
from cnnlab.training.finish import Finished, open_log, save_run
from cnnlab.training.lines import epoch_line, loss_note, start_line
from cnnlab.training.lr_find import choose_lr
from cnnlab.training.optim import (
    member_targets,
    predicted_labels,
    training_loss,
)
from cnnlab.training.run_folder import RunFolder, claim, save_progress
from cnnlab.training.start import HeadFirst, Start, starting_point
from cnnlab.training.system import keep_freed_memory, running_training, select_device, set_threads, start_import
from cnnlab.training.tensorboard import TensorBoardLog
from cnnlab.training.tensors import on_device, pixel_stats, prepare_data


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, its description, the history and metrics."""

    model: torch.nn.Module
    info: ModelInfo
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    out: Path | None
    warning: str | None = None  # a near-chance accuracy, said in plain words (cnnlab.reporting.metrics)
    points: list[dict[str, float]] = field(default_factory=list)  # a short run's curve points within epochs


@dataclass
class Session:
    """What the stages of one training share: its options, where it runs, its run folder and its hooks."""

    config: TrainConfig
    world: World
    device: torch.device
    threads: int
    folder: RunFolder | None  # the run folder rank 0 holds (cnnlab.training.run_folder); None: no files from here
    progress: bool | None
    on_epoch: Callable[[dict, torch.nn.Module, Callable], Any] | None = None
    on_point: Callable[[dict], None] | None = None
    start: Start | None = None  # the run this one is fine-tuned from (--init)
    chosen: frozenset[str] = frozenset()  # the options the caller set (a small folder's recipe leaves them)

    def say(self, *args: Any, **kwargs: Any) -> None:
        """Print, on rank 0 only: it speaks for all."""
        if self.world.main:
            print(*args, **kwargs)


def train(config: TrainConfig | None = None, dataset: Dataset | str | Path | None = None, progress: bool | None = None,
          on_epoch: Callable[[dict, torch.nn.Module, Callable], None] | None = None,
          resume: dict[str, Any] | None = None, on_point: Callable[[dict], None] | None = None,
          overwrite: bool = False, **options: Any) -> TrainResult:
    """Train a model and, if ``config.out`` is set, write its run directory.

    Args:
        config: the options; keyword ``options`` override its fields (``train(epochs=3)``);
            ``preset="accurate"`` among them starts from that preset instead of ``config``.
        dataset: an already loaded :class:`~cnnlab.data.Dataset`, or a dataset's name or path (as
            ``config.dataset``, which is loaded when this is not given).
        progress: show per-batch progress bars (default: when stderr is a terminal).
        on_epoch: called after each epoch's history row is complete, outside the timed loop,
            as ``on_epoch(row, model, to_model_input)``; ``to_model_input`` turns uint8
            images ``(N, H, W[, 3])`` into the model's normalised input (used by ``cnnlab bench``).
            Returning True stops training after that epoch; the run is scored and saved as usual.
        resume: a checkpoint (:func:`~cnnlab.training.checkpoint.load_checkpoint`) of this same configuration:
            training goes on after its last finished epoch, as if it had never stopped.
        on_point: called with each point of the learning curves as it is taken (a row of
            ``points.csv``), for watching a run live (``cnnlab serve``'s Train tab). With it, points
            are taken in runs of any length, and every :data:`~cnnlab.training.curves.WATCH_SECONDS` or so.
        overwrite: replace the run that ``config.out`` holds (``--overwrite``); without it such a
            folder is refused, finished or not.
    With ``config.out`` set, the folder is claimed first, and refused if it is not cnnlab's or another
    training writes it (cnnlab.training.run_folder); a checkpoint is written there after every epoch, and a
    failed write keeps the last one. Ctrl-C raises :class:`~cnnlab.training.run_folder.Interrupted`.
    """
    if isinstance(dataset, str | Path):  # a name or a path, as the command line takes it: loaded below
        options["dataset"], dataset = str(dataset), None
    kind = dataset.kind if dataset is not None else None  # loaded data knows its kind; data made in Python: images
    chosen = frozenset(k for k, v in options.items() if v is not None)
    start, kind = starting_point(config, options, kind, resuming=resume is not None)
    config, network = resolve_config(config, options, kind)
    started = time.perf_counter()
    device = select_device(config.device)
    world = join(device.type)  # torchrun's process group (cnnlab.training.distributed), or this process alone
    # One writer: rank 0 holds the run folder from before the data loads until its last file is written.
    with claim(config.out if world.main else None, overwrite, resuming=resume is not None) as folder:
        if resume is not None and folder is not None:
            check_still_resumable(folder.path, resume)  # read before the lock: another writer may have gone on
        threads = set_threads(config.threads or cpu_threads(world))
        session = Session(config, world, device_for(device, world), threads, folder, progress if world.main else False,
                          on_epoch, on_point, start, chosen)
        with running_training(threads):  # the next training's default leaves these cores to this one
            result = train_in(session, dataset, network, resume, started)
    leave(world)
    return result


def train_in(s: Session, dataset: Dataset | None, network: torch.nn.Module | None, resume: dict[str, Any] | None,
             started: float) -> TrainResult:
    """:func:`train` once its options are resolved and its folder claimed: data, network, epochs, test, files."""
    config, world, device = s.config, s.world, s.device
    keep_freed_memory()  # trick 8
    torch.manual_seed(config.seed)
    warm_up = start_import("torch._dynamo")  # trick 6
    data = prepare_data(config, dataset, s.start)
    if s.start is not None:  # the start's features expect its inputs: normalised as it was
        mean, std = s.start.info.mean, s.start.info.std
    else:
        mean, std = pixel_stats(data.train_images) if config.normalize else (0.0, 1.0)
    (train_x, train_y), (val_x, val_y) = on_device(data, mean, std, device)  # trick 1
    if resume is None and (note := fit_to_small_data(config, data, users_data(data), s.chosen)):
        s.say(note)
    check_mirroring(config.augment, data.kind, data.name)  # refused before any work on the data

    warm_up.join()
    check_memory(config, (data.num_classes, data.channels, data.image_size), device)  # before any network
    if config.lr == "auto":  # the learning-rate range test on the same data, then the same seed again
        s.say(choose_lr(config, data, network, s.progress))
    steps = -(-(len(train_y) // world.size) // config.batch_size)  # per epoch, on each rank
    require(not config.patience or len(val_y), "--patience needs validation images: set --val-split above 0")
    network = starting_network(s, data, network, resume)
    parts = make_parts(config, data, background_of(mean, std), device, world, steps, network, s.start)
    trained = parts.averaged.module if parts.averaged else parts.model  # the network this run delivers
    if config.epochs <= MAX_EPOCHS or s.on_point:  # a short run's curves get points during each epoch
        parts.points = EpochPoints(trained, val_x, val_y, steps, on_point=s.on_point)
    shape = RunShape(len(train_y), bool(len(val_y)), config.epochs, steps, config.batch_size)  # a checkpoint fits it
    history = parts.restore(resume, world.rank, f"{config.out}/{CHECKPOINT_FILE}", shape) if resume else []
    if resume:
        s.say(resume_line(config, history, parts.best))
    if config.log == "tensorboard" and s.folder is not None:
        done = len(history) * steps + (parts.ongoing or {}).get("next", 0) // config.batch_size  # steps taken
        open_log(s.folder, parts, data, done)
    s.say(start_line(config, parts.model, data, device, s.threads, world))
    if note := loss_note(config):
        s.say(note)
    train_seconds = fit(s, parts, ((train_x, train_y), (val_x, val_y)), history,
                        lambda images: to_input(images, mean, std, device))
    other = keep_epoch(s, parts.best, trained, history)

    info, logits, metrics = score_test(trained, config, data, data.source or data.name, (mean, std), device)
    metrics.update(train_seconds=train_seconds, total_seconds=time.perf_counter() - started, threads=s.threads,
                   tta=config.tta)
    info.test_accuracy = metrics["test_accuracy"]
    if s.start is not None and s.start.info.finds_ink() and is_users(config.dataset):
        info.preprocessing = INK  # its photos were read as the start's: predict reads them so too
    s.say(f"Test error: {100 * metrics['test_error']:.2f}% (accuracy {100 * metrics['test_accuracy']:.2f}%)")
    if parts.log is not None:
        s.folder.write(lambda _: parts.log.finish(config, metrics, info.class_names))
    if warning := chance_level_warning(metrics["test_accuracy"], data.num_classes, config.lr):
        s.say(f"warning: {warning}")  # the command line exits non-zero on it (cnnlab.cli)
    points = parts.points.rows if parts.points else []
    if s.folder is not None:
        started_from = {"started_from": s.start.record()} if s.start else {}
        record = RunRecord(history, metrics, {**asdict(config), "threads_used": s.threads, **started_from}, points)
        test = TestSet(data.test_images, data.test_labels, logits.cpu())
        save_run(s.folder, config, s.device, Finished(trained, info, record, test, other))
    return TrainResult(trained.eval(), info, history, metrics, Path(config.out) if config.out else None, warning,
                       points)


def starting_network(s: Session, data: Dataset, network: torch.nn.Module | None, resume: dict[str, Any] | None
                     ) -> torch.nn.Module | None:
    """The network with the start's weights in it (a run's, or a backbone's from the Hub; a resumed
    run's come from its checkpoint, so a backbone is not fetched again), saying which layers were
    loaded; ``network`` as it is when the run has no start."""
    if s.start is None:
        return network
    if network is None:
        pretrained = s.start.weights is None and resume is None
        network = build_model(s.config.model, data.num_classes, data.image_size, data.channels, pretrained)
    s.say(s.start.apply(network, data.class_names))
    return network


def keep_epoch(s: Session, best: BestEpoch | None, trained: torch.nn.Module, history: list[dict[str, float]]
               ) -> tuple[str, dict[str, torch.Tensor]] | None:
    """Leave the kept epoch's weights (``--keep``) in ``trained``, marked in ``history``, and say so;
    returns the other epoch's file name and weights, written beside the model (None without validation)."""
    if best is None:
        return None
    weights, line = best.deliver(trained, history, s.config.keep)
    if line:
        s.say(line)
    return OTHER_FILE[s.config.keep], weights


def fit(s: Session, parts: TrainingParts, data: tuple[tuple[torch.Tensor, torch.Tensor], ...],
        history: list[dict[str, float]], to_model_input: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Train the epochs after those in ``history`` (none after a resumed run that stopped early),
    each one checkpointed; returns the training seconds of all the run's epochs."""
    config, (train_data, (val_x, val_y)) = s.config, data
    trained = parts.averaged.module if parts.averaged else parts.model
    net = wrap(parts.model, s.world)  # under torchrun, DDP: gradients averaged across ranks
    last = len(history) if parts.best is not None and parts.best.stopped else config.epochs
    loop_started = time.perf_counter() - sum(row["seconds"] for row in history)
    with stop_between_steps(enabled=s.world.size == 1) as stop:  # Ctrl-C: checkpoint, then stop
        for epoch in range(len(history) + 1, last + 1):
            epoch_started = time.perf_counter()
            if parts.points is not None:
                parts.points.start(epoch)
            if isinstance(parts.scheduler, HeadFirst):  # a fine-tuning run's first epoch: the fresh layers alone
                parts.scheduler.begin_epoch(epoch)
            loss, cross_entropy, accuracy = run_epoch(s, net, parts, train_data, epoch, history, stop)
            row = {"epoch": epoch, "loss": loss, "train_ce": cross_entropy, "accuracy": accuracy,
                   **validate(trained, val_x, val_y)}
            probing = parts.points.seconds if parts.points is not None else 0.0  # not training time
            row["seconds"] = time.perf_counter() - epoch_started - probing
            loop_started += probing
            history.append(row)
            s.say(epoch_line(row, config.epochs, s.threads), flush=True)
            if parts.log is not None:
                parts.log.epoch(row, parts.optimizer)
            paused = time.perf_counter()
            stop_early = parts.best is not None and parts.best.update(row, trained, config.epochs)
            save_progress(s.folder, config, parts, history, s.threads, s.world)
            if s.on_epoch is not None and s.on_epoch(row, trained, to_model_input):
                stop_early = True  # the callback asked to stop, as Keras' model.stop_training: the run is saved
            loop_started += time.perf_counter() - paused  # checkpoints and the callback are not training time
            if stop_early:
                break
    return time.perf_counter() - loop_started


def score_test(trained: torch.nn.Module, config: TrainConfig, data: Dataset, source: str, stats: tuple[Stats, Stats],
               device: torch.device) -> tuple[ModelInfo, torch.Tensor, dict[str, Any]]:
    """The delivered network's description, its test logits (scored once: metrics and pictures)
    and its test metrics."""
    architecture, spec = architecture_of(config.model)
    info = ModelInfo(architecture, data.class_names, data.image_size, *stats, source, spec=spec,
                     in_channels=data.channels, kind=data.kind)
    logits = images_logits(trained, info, data.test_images, device, config.tta)
    return info, logits, classification_metrics(logits, data.test_labels, info.class_names)


def run_epoch(s: Session, net: torch.nn.Module, parts: TrainingParts, data: tuple[torch.Tensor, torch.Tensor],
              epoch: int, history: list[dict[str, float]], stop: threading.Event) -> tuple[float, float, float]:
    """:func:`train_one_epoch` with the run's parts, from where a resumed checkpoint stood if it
    stopped mid-epoch; on Ctrl-C, the checkpoint records where this epoch stands, then it stops."""
    ongoing, parts.ongoing = parts.ongoing, None  # a resumed position is used once
    config = s.config
    try:
        return train_one_epoch(net, parts.optimizer, parts.scheduler, *data, config.batch_size, parts.shuffler,
                               s.progress, f"Epoch {epoch}/{config.epochs}", parts.augmenter, config.label_smoothing,
                               parts.averaged, s.world, stop, ongoing, parts.points, parts.log)
    except StopRequested as where:
        parts.ongoing = where.ongoing
        save_progress(s.folder, config, parts, history, s.threads, s.world)
        raise KeyboardInterrupt from None


def resume_training(run: str | Path, dataset: Dataset | None = None, progress: bool | None = None,
                    model: torch.nn.Module | None = None) -> TrainResult:
    """Continue the run in directory ``run`` from its checkpoint, with the settings it was started
    with; the result is the same as if it had never stopped (same machine, same threads). A run
    whose epochs are all done but whose files are not all written (a full disk) gets them written.
    ``dataset``: the :class:`~cnnlab.data.Dataset` object, if the run was given one (not a name).
    ``model``: a fresh instance of the class, if the run trained a network of your own class."""
    state, config = resumable(run, own_class=model is not None)
    return train(config, dataset, progress=progress, resume=state, **({"model": model} if model else {}))


def train_one_epoch(model, optimizer, scheduler, x, y, batch_size, shuffler, progress, desc,
                    augmenter=None, label_smoothing: float = 0.0, averaged=None, world: World = SINGLE,
                    stop: threading.Event | None = None, ongoing: dict | None = None,
                    points: EpochPoints | None = None, log: TensorBoardLog | None = None) -> tuple[float, float, float]:
    """One pass over ``(x, y)`` in random order (this rank's shard of it, under torchrun), each
    batch warped by ``augmenter`` if given, and ``averaged`` (an AveragedModel) updated after each
    step; returns the epoch's mean loss (label-smoothed, as optimized), its plain cross-entropy and
    the accuracy of ``model`` on those batches, over all ranks. ``stop`` set: raise
    :class:`StopRequested` before the next step. ``ongoing``: go on from there. ``points``: record
    points of the curves during the epoch (cnnlab.training.curves). ``log``: each step's loss,
    accuracy and learning rate for TensorBoard (a sync a step, so only when asked)."""
    model.train()
    # On a GPU, bfloat16 autocast: tensor-core convs, no loss scaling needed. On a CPU without
    # bf16 units (this project's reference machine), float32 is faster, so it stays off.
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if x.device.type == "cuda" else contextlib.nullcontext()
    ongoing = ongoing or {"order": shard(torch.randperm(len(y), generator=shuffler), world), "next": 0,
                          "loss_sum": torch.zeros(()), "hits": torch.zeros((), dtype=torch.long)}
    order, loss_sum, hits = (ongoing[k].to(y.device) for k in ("order", "loss_sum", "hits"))
    ce_sum = ongoing.get("ce_sum", torch.zeros(())).to(y.device)
    first_bad = torch.full((), -1, device=y.device, dtype=torch.long)  # the first step with a nan/inf loss
    batches = range(ongoing["next"], len(order), batch_size)
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress if progress is not None else None,
               unit="batch")
    for i in bar:
        if stop is not None and stop.is_set():
            raise StopRequested({"order": order.cpu(), "next": i, "loss_sum": loss_sum.cpu(), "hits": hits.cpu(),
                                 "ce_sum": ce_sum.cpu()})
        index = order[i : i + batch_size]
        inputs, targets = x[index], y[index]
        if augmenter is not None:
            inputs = augmenter(inputs)
        with cast:
            logits = model(inputs)
            loss = training_loss(logits, targets, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        # Trick 4: accumulate on the device; .item() here would sync every step.
        batch_hits = (predicted_labels(logits) == targets).sum()
        loss_sum += loss.detach() * len(targets)
        ce_sum += F.cross_entropy(logits.detach().float(), member_targets(logits, targets)) * len(targets)
        hits += batch_hits
        if log is not None:
            log.step(loss.detach(), batch_hits / len(targets), optimizer)
        step = i // batch_size
        if points is not None:
            points.after_step(step, torch.stack([loss_sum, ce_sum, hits.float()]), i + len(targets))
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
        if (step % DIVERGENCE_CHECK_STEPS == 0 or i + batch_size >= len(order)) and int(first_bad) >= 0:
            raise CnnlabError(f"training diverged: the loss became nan or inf in {desc.lower()}, step "
                              f"{int(first_bad) + 1} of {len(batches)}; lower the learning rate (--lr) and train again")
    seen = total(torch.tensor([loss_sum.item(), ce_sum.item(), hits.item(), len(order)], dtype=torch.float64), world)
    return (seen[0] / seen[3]).item(), (seen[1] / seen[3]).item(), (seen[2] / seen[3]).item()


DIVERGENCE_CHECK_STEPS = 20  # read the device's divergence flag this often: a sync, so not every step


def validate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{"val_loss", "val_accuracy"}`` on the validation split, or nothing when it is empty."""
    if not len(y):
        return {}
    loss, accuracy = score(predict_logits(model, x), y)
    return {"val_loss": loss, "val_accuracy": accuracy}
