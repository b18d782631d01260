"""The ``cnnlab`` command: a thin layer over the library, one function per command."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.exceptions import TyperException

from cnnlab.cli_app import (
    PRESET_DEFAULT,
    DataDirOpt,
    DatasetOpt,
    GreyOpt,
    ImageSizeOpt,
    JsonOpt,
    app,
    command,
    square_side,
)
from cnnlab.errors import CnnlabError, require

if TYPE_CHECKING:
    from cnnlab.training.loop import TrainResult

# Whether this process is the cnnlab command (run()), which ends when the command does: only then
# may `cnnlab train` leave its pictures to a child process (in Python, main() returns and goes on).
COMMAND = {"ends_process": False}


@command("train")
def train_command(
    preset: Annotated[str, typer.Option(help="Starting settings: fast, accurate, best or reader")] = "fast",
    model: Annotated[Optional[str], typer.Option(help=f"A name from 'cnnlab models', a layer spec ('conv32k3 maxpool "
                                                     f"dense128'), a file holding one, or timm:NAME, a pretrained "
                                                     f"backbone (pip install 'cnnlab[pretrained]') {PRESET_DEFAULT}")
                     ] = None,
    dataset: DatasetOpt = "mnist",
    epochs: Annotated[Optional[int], typer.Option(help=f"Passes over the training set {PRESET_DEFAULT}")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Images per training step {PRESET_DEFAULT}")] = None,
    lr: Annotated[Optional[str], typer.Option(help=f"Peak learning rate, or 'auto' for lr-find's suggestion "
                                              f"{PRESET_DEFAULT}")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=f"adam, sgd or adadelta {PRESET_DEFAULT}")] = None,
    schedule: Annotated[Optional[str], typer.Option(help=f"onecycle, step or constant {PRESET_DEFAULT}")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help=f"0 for hard targets {PRESET_DEFAULT}")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same machine, same numbers")] = 0,
    val_split: Annotated[Optional[float], typer.Option(help=f"Fraction of training images held out for validation "
                                                        f"{PRESET_DEFAULT}")] = None,
    augment: Annotated[Optional[str], typer.Option(help=f"Random warps: none, light, strong, handwriting (digits), "
                                                   f"crop-flip "
                                                   f"(clothing, photos) {PRESET_DEFAULT}")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help=f"Test-time augmentation {PRESET_DEFAULT}")] = (
        None),
    patience: Annotated[Optional[int], typer.Option(help="Stop when val_loss has not improved for N epochs, and keep "
                                                    "the best epoch's weights [default: train every epoch]")] = None,
    init: Annotated[Optional[Path], typer.Option(
        help="Start from this trained run: its layers that fit are loaded, the output layer is new when the classes "
             "differ, and its images' size and reading are kept (fine-tuning)")] = None,
    freeze: Annotated[bool, typer.Option(help="With --init: the loaded layers never learn, only the new ones "
                                         "[default: the new ones alone for the first epoch, then all, the loaded at "
                                         "lower learning rates]")] = False,
    log: Annotated[Optional[str], typer.Option(
        help="tensorboard: write the run for TensorBoard too (pip install 'cnnlab[tensorboard]'), into its folder "
             "[default: none]")] = None,
    keep: Annotated[Optional[str], typer.Option(
        help="The epoch saved as the model: best (lowest val_loss) or last; the other is saved beside it, as "
             "last.safetensors or best.safetensors")] = None,
    ema: Annotated[Optional[float], typer.Option(help=f"Keep a moving average of the weights with this per-step "
                                                  f"decay (e.g. 0.999), 0 for none {PRESET_DEFAULT}")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images of each split")] = None,
    image_size: ImageSizeOpt = None,
    grey: GreyOpt = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads [default: every core no other cnnlab "
                                                   "training uses]")] = None,
    data_dir: DataDirOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory [default: new runs/PRESET-DATASET-seedS]")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the cnnlab run that --out holds (never other files)")] = (
        False),
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run directory after its last finished "
                                                   "epoch, with its own settings")] = None,
    pictures: Annotated[Optional[str], typer.Option(
        help="When the run's pictures and report.html are drawn: after (by a background process, once the result "
             "is printed), now (before the command ends) or none [default: after; now where cnnlab.cli.main is "
             "called in Python]")] = None,
) -> None:
    from cnnlab.training.loop import resume_training, train
    from cnnlab.training.run_folder import first_run_folder, new_run_folder, unfinished_runs

    if resume is not None:
        return interruptible(lambda: resume_training(resume), resume)

    chosen = dict(model=model, epochs=epochs, batch_size=batch_size, lr=learning_rate(lr), optimizer=optimizer,
                  schedule=schedule,
                  label_smoothing=label_smoothing, augment=augment, tta=tta, ema=ema, patience=patience,
                  keep=keep, log=log, init=str(init) if init else None, freeze=freeze or None,
                  val_split=val_split, limit=limit, image_size=square_side(image_size), grey=grey or None,
                  fit_small_data=False if batch_size or epochs else None,  # the user's choice is kept as it is
                  threads=threads, data_dir=str(data_dir) if data_dir else None,
                  pictures=pictures or ("after" if COMMAND["ends_process"] else "now"))
    options = dict(preset=preset, dataset=dataset, seed=seed, device=device,
                   **{k: v for k, v in chosen.items() if v is not None})
    if out is None:
        out = new_run_folder(preset, dataset, seed, model)
        for unfinished in unfinished_runs(first_run_folder(preset, dataset, seed, model)):
            print(f"note: {unfinished} holds an unfinished training; continue it with: cnnlab train --resume "
                  f"{unfinished}", file=sys.stderr)
    interruptible(lambda: train(overwrite=overwrite, out=str(out), **options), out)  # the folder's guards are train()'s


def learning_rate(text: str | None) -> float | str | None:
    """``--lr``: a number, or 'auto'."""
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise CnnlabError(f"--lr must be a number (e.g. 0.003) or 'auto', got '{text}'") from None


def interruptible(run: Callable[[], TrainResult], out: Path) -> None:
    """Run a training; on Ctrl-C, say how to continue it (cnnlab.train() checkpoints every epoch, and
    where the epoch stood on Ctrl-C). A run that ended near chance exits non-zero, its files written."""
    from cnnlab.training.run_folder import Interrupted

    try:
        result = run()
    except KeyboardInterrupt as stop:
        if isinstance(stop, Interrupted) and stop.resumable:
            raise CnnlabError(f"interrupted; the training so far is saved. Resume with: cnnlab train --resume {out}"
                              ) from None
        raise CnnlabError("interrupted before the first epoch finished; nothing to resume") from None
    if result.warning:
        raise CnnlabError(f"{result.warning} (the run is saved in {out})")


@command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="Run directory or model.safetensors")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="[default: the model's own]")] = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N test images")] = None,
    tta: Annotated[bool, typer.Option(help="Test-time augmentation: average 5 one-pixel shifts (5x the work)")] = False,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.reporting.metrics import confusion_text, evaluate

    metrics = evaluate(model, dataset, data_dir, limit, tta)
    if as_json:
        print(json.dumps(metrics))
        return
    print(f"Test error: {100 * metrics['test_error']:.2f}% (accuracy {100 * metrics['test_accuracy']:.2f}%), "
          f"loss {metrics['test_loss']:.4f}")
    print("Per-class accuracy: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics["per_class_accuracy"].items()))
    print(confusion_text(metrics["confusion_matrix"], list(metrics["per_class_accuracy"])))


@command("predict")
def predict_command(
    model: Annotated[Path, typer.Argument(help="Run directory or model.safetensors")],
    paths: Annotated[list[Path], typer.Argument(help="Images, folders of images, or pixel CSV files")],
    number: Annotated[bool, typer.Option("--number", help="Read each image as a number of several digits")] = False,
    min_confidence: Annotated[float, typer.Option(help="Mark answers below this probability uncertain")] = 0.0,
    save_preprocessed: Annotated[Optional[Path], typer.Option(help="Folder for the inputs the network saw, as PNG")] = (
        None),
    top: Annotated[int, typer.Option(help="How many candidate labels to list")] = 3,
    tta: Annotated[bool, typer.Option(help="Average each answer over 5 one-pixel shifts of the image")] = True,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.using.predict import predict_files

    check_answer_options(top, min_confidence)
    results = predict_files(model, list(paths), top, number, min_confidence, save_preprocessed, tta=tta)
    for p in results:
        print(json.dumps(p.to_json()) if as_json else p.to_text())
    fail_if_unanswered(results, "answer")


@command("read")
def read_command(
    paths: Annotated[list[Path], typer.Argument(help="Photos or scans of handwriting, folders of them, or pixel CSVs")],
    digit: Annotated[bool, typer.Option("--digit", help="Read each image as one digit")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read each image as a number of several digits")] = False,
    min_confidence: Annotated[float, typer.Option(help="Mark answers below this probability uncertain")] = 0.0,
    save_preprocessed: Annotated[Optional[Path], typer.Option(help="Folder for the inputs the network saw, as PNG")] = (
        None),
    top: Annotated[int, typer.Option(help="How many candidate labels to list")] = 3,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.using.reader import read

    require(not (digit and number), "--digit and --number exclude each other: give one, or neither to let the "
            "reader decide")
    check_answer_options(top, min_confidence)
    results = read(list(paths), "digit" if digit else "number" if number else "auto", top, min_confidence,
                   save_preprocessed)
    for p in results:
        print(json.dumps(p.to_json()) if as_json else p.to_text())
    fail_if_unanswered(results, "answer")


def check_answer_options(top: int, min_confidence: float) -> None:
    """Refuse a ``--top`` or ``--min-confidence`` that cannot be meant."""
    require(top >= 1, f"--top must be at least 1, got {top}")
    require(0 <= min_confidence <= 1, f"--min-confidence must be a probability in [0, 1], got {min_confidence}")


@command("explain")
def explain_command(
    model: Annotated[Path, typer.Argument(help="Run directory or model.safetensors")],
    paths: Annotated[list[Path], typer.Argument(help="Images, folders of images, or pixel CSV files")],
    method: Annotated[list[str], typer.Option(help="saliency, integrated-gradients, occlusion, gradcam or all; "
                                              "repeat it or separate by commas")] = ["all"],  # noqa: B006
    target: Annotated[Optional[str], typer.Option(help="The class to explain (a name or an index) "
                                                  "[default: each image's answer]")] = None,
    out: Annotated[Path, typer.Option(help="Folder for one PNG per image")] = Path("explanations"),
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.using.explanation import explain

    methods = [name for given in method for name in given.split(",") if name.strip()]
    results = explain(model, list(paths), methods, target, out)
    for e in results:
        print(json.dumps(e.to_json()) if as_json else e.to_text())
    fail_if_unanswered(results, "explanation")


def fail_if_unanswered(results: list, what: str) -> None:
    """After every answer is printed: a non-zero exit naming the images that got none."""
    failed = [r for r in results if r.error]
    if failed:
        detail = f": {failed[0].path}: {failed[0].error}" if len(failed) == 1 else " (see above)"
        raise CnnlabError(f"{len(failed)} of {len(results)} images got no {what}{detail}")


@command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="Run directory made by 'cnnlab train'")],
    data_dir: DataDirOpt = None,
) -> None:
    from cnnlab.reporting.report import rebuild
    from cnnlab.training.run_folder import LOCK_FILE, claim

    # One writer: a training writing the run (it has a lock file) meanwhile refuses this.
    with claim(run, resuming=True) if (run / LOCK_FILE).is_file() else contextlib.nullcontext():
        print(f"Wrote {rebuild(run, data_dir=data_dir)}")


@command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="Run directory (or its model.safetensors)")],
    file_format: Annotated[str, typer.Option("--format", help="Only onnx so far")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Folder for model.onnx and model.json [default: the run]")] = None,
) -> None:
    from cnnlab.using.export import FORMATS, export_onnx

    require(file_format in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got '{file_format}'")
    from cnnlab.models.files import MODEL_META, read_model_info

    target = export_onnx(model, out)
    info = read_model_info(target.with_name(MODEL_META))
    print(f"Wrote {target} (input: normalised images (N, {info.in_channels}, {info.image_size}, {info.image_size}); "
          "see model.json)")


@command("serve")
def serve_command(
    model: Annotated[Optional[Path], typer.Argument(help="Run directory (or its model.safetensors) [default: the "
                                                   "handwriting reader that ships with cnnlab]")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body accepted, in megabytes")] = 5.0,
    runs: Annotated[Path, typer.Option(help="Folder for the runs the page's Train tab starts")] = Path("runs"),
    token: Annotated[Optional[str], typer.Option(envvar="CNNLAB_TOKEN", show_envvar=True, help=(
        "Token that starting and stopping a training need; prefer $CNNLAB_TOKEN, as other users of the machine "
        "see a command line [default: a new random one, printed in the URL]"))] = None,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Offer the Train tab and its routes")] = True,
    allowed_host: Annotated[Optional[list[str]], typer.Option(metavar="<name>", help=(
        "A name the server may be reached by besides localhost and --host (repeatable)"))] = None,
    header_timeout: Annotated[float, typer.Option(help="Seconds a request's headers may take to arrive")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a request's body may take to arrive")] = 60.0,
    workers: Annotated[Optional[int], typer.Option(help=(
        "Processes answering requests, each with its own model; the Train tab needs 1 [default: one per core]"))
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most images answered in one forward pass")] = 64,
    batch_wait_ms: Annotated[float, typer.Option(help=(
        "Milliseconds the first request waits for others to share its forward pass"))] = 2.0,
    max_queue: Annotated[int, typer.Option(help=(
        "Requests one worker holds at once; more get 503 with Retry-After"))] = 128,
    access_log: Annotated[Optional[str], typer.Option(help="One line per request on stderr: text or json")] = None,
    drain_seconds: Annotated[float, typer.Option(help="At shutdown, seconds the requests under way may take")
                             ] = 10.0,
) -> None:
    from cnnlab.serving.serve import ServeSettings, serve
    from cnnlab.using.reader import READER

    serve(model or READER, ServeSettings(
        host=host, port=port, max_upload_mb=max_upload_mb, runs=runs, token=token, train=train,
        allowed_hosts=tuple(allowed_host or ()), header_seconds=header_timeout, body_seconds=body_timeout,
        workers=workers, max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_queue=max_queue,
        access_log=access_log, drain_seconds=drain_seconds))


from cnnlab import cli_study  # noqa: E402, F401  (registers the commands for studying data and models, after these)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command; print any user error as one line and return non-zero."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = typer.main.get_command(app)
    try:
        # standalone_mode=False: errors come back to us instead of a multi-line usage box.
        code = command.main(args=args or ["--help"], prog_name="cnnlab", standalone_mode=False)
    except CnnlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TyperException as exc:  # bad command-line usage: unknown option, not a number...
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc) or "interrupted"
        print(f"error: {message}{hint}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2) or 2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def __getattr__(name: str):
    """``click_command``: the click object behind the typer app, and ``click_train`` (and so on) one
    command's, for the docs' command reference (mkdocs-click); built on demand, not on every start
    of the command."""
    if name == "click_command":
        return typer.main.get_command(app)
    if name.startswith("click_"):  # one command's click object: the reference lists them in --help's order
        commands = typer.main.get_command(app).commands
        if (wanted := name.removeprefix("click_").replace("_", "-")) in commands:
            return commands[wanted]
    raise AttributeError(f"module 'cnnlab.cli' has no attribute '{name}'")


def run() -> None:
    """The ``cnnlab`` command: :func:`main`, then leave the process without Python's teardown.

    Tearing the interpreter down after torch (and ``torch._dynamo``, which ``torch.optim``
    imports) took 0.4-1 s here, a tenth of a ``cnnlab train --preset fast``. By the time
    ``main`` returns every file is written, atomically, and closed, so only the output streams
    need flushing. In-process callers (tests, notebooks) use :func:`main`, which returns.
    """
    COMMAND["ends_process"] = True
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
