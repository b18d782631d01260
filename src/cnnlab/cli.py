"""The ``cnnlab`` command: a thin layer over the library, one function per command."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.exceptions import TyperException

from cnnlab.cli_help import APP, COMMANDS
from cnnlab.errors import CnnlabError, require

if TYPE_CHECKING:
    from cnnlab.training.loop import TrainResult

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, help=APP)


def command(name: str) -> Callable:
    """``@app.command(name)`` with its help text, summary and examples, from cnnlab.cli_help."""
    return app.command(name, help=COMMANDS[name])

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="mnist, fashion-mnist, kmnist, or a path")]
DataDirOpt = Annotated[Optional[Path], typer.Option(help="Dataset folder [default: $CNNLAB_DATA or ~/.cache/cnnlab]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text")]


PRESET_DEFAULT = "[default: from --preset]"


@command("train")
def train_command(
    preset: Annotated[str, typer.Option(help="Starting settings: fast, accurate or best")] = "fast",
    model: Annotated[Optional[str], typer.Option(help=f"A name from 'cnnlab models', a layer spec ('conv32k3 maxpool "
                                                     f"dense128') or a file holding one {PRESET_DEFAULT}")] = None,
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
    augment: Annotated[Optional[str], typer.Option(help=f"Random warps: none, light, strong (digits), crop-flip "
                                                   f"(clothing, photos) {PRESET_DEFAULT}")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help=f"Test-time augmentation {PRESET_DEFAULT}")] = (
        None),
    patience: Annotated[Optional[int], typer.Option(help="Stop when val_loss has not improved for N epochs, and keep "
                                                    "the best epoch's weights [default: train every epoch]")] = None,
    ema: Annotated[Optional[float], typer.Option(help=f"Keep a moving average of the weights with this per-step "
                                                  f"decay (e.g. 0.999), 0 for none {PRESET_DEFAULT}")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images of each split")] = None,
    image_size: Annotated[Optional[str], typer.Option(help="Resize images to N x N pixels (N or NxN, 8 to 512) "
                                                      "[default: the dataset's own; a folder: its median, at most "
                                                      "64]")] = None,
    grey: Annotated[bool, typer.Option(help="Train on grey images (one channel) even if the data has colour")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads [default: one per free core]")] = None,
    data_dir: DataDirOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory [default: new runs/PRESET-DATASET-seedS]")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory's files")] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run directory after its last finished "
                                                   "epoch, with its own settings")] = None,
) -> None:
    from cnnlab.training.checkpoint import CHECKPOINT_FILE
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.loop import resume_training, train

    if resume is not None:
        return interruptible(lambda: resume_training(resume), resume)

    chosen = dict(model=model, epochs=epochs, batch_size=batch_size, lr=learning_rate(lr), optimizer=optimizer,
                  schedule=schedule,
                  label_smoothing=label_smoothing, augment=augment, tta=tta, ema=ema, patience=patience,
                  val_split=val_split, limit=limit, image_size=square_side(image_size), grey=grey or None,
                  threads=threads, data_dir=str(data_dir) if data_dir else None)
    config = TrainConfig.from_preset(preset, dataset=dataset, seed=seed, device=device,
                                     **{k: v for k, v in chosen.items() if v is not None})
    dataset_label = Path(dataset).stem if Path(dataset).exists() else dataset
    name = run_label(model) if model else preset
    out = out or new_run_dir(Path("runs") / f"{name}-{dataset_label}-seed{seed}")
    if (out / "model.safetensors").exists() and not overwrite:
        raise CnnlabError(f"{out} already holds a trained model: pass --overwrite or choose another --out")
    if (out / CHECKPOINT_FILE).exists() and not overwrite:
        raise CnnlabError(f"{out} holds an unfinished run: continue it with 'cnnlab train --resume {out}', "
                          "or pass --overwrite to start again")
    config.out = str(out)
    interruptible(lambda: train(config), out)


def square_side(text: str | None) -> int | None:
    """``--image-size``: ``64`` or ``64x64`` -> 64. cnnlab's networks take square images."""
    if text is None:
        return None
    sides = text.lower().split("x")
    if len(sides) > 2 or not all(side.strip().isdigit() for side in sides):
        raise CnnlabError(f"--image-size must be a number of pixels such as 64 (or 64x64), got '{text}'")
    if len(set(map(int, sides))) > 1:
        raise CnnlabError(f"--image-size {text}: cnnlab's networks take square images; give one side, e.g. "
                          f"--image-size {max(map(int, sides))} (images of another shape are padded to a square, "
                          "keeping their aspect)")
    return int(sides[0])


def learning_rate(text: str | None) -> float | str | None:
    """``--lr``: a number, or 'auto'."""
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise CnnlabError(f"--lr must be a number (e.g. 0.003) or 'auto', got '{text}'") from None


def run_label(model: str) -> str:
    """A run directory's name for ``--model``: a registry name, a spec file's stem, or 'spec'."""
    from cnnlab.models.registry import MODELS

    if model in MODELS:
        return model
    return Path(model).stem if Path(model).is_file() else "spec"


def interruptible(run: Callable[[], TrainResult], out: Path) -> None:
    """Run a training; on Ctrl-C, say how to continue it (cnnlab.train() checkpoints every epoch, and
    where the epoch stood on Ctrl-C). A run that ended near chance exits non-zero, its files written."""
    from cnnlab.training.checkpoint import CHECKPOINT_FILE

    try:
        result = run()
    except KeyboardInterrupt:
        if (out / CHECKPOINT_FILE).exists():
            raise CnnlabError(f"interrupted; the training so far is saved. Resume with: cnnlab train --resume {out}"
                              ) from None
        raise CnnlabError("interrupted before the first epoch finished; nothing to resume") from None
    if result.warning:
        raise CnnlabError(f"{result.warning} (the run is saved in {out})")


def new_run_dir(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``... : the first that does not exist yet."""
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


@command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="Run directory or model.safetensors")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="[default: the model's own]")] = None,
    data_dir: DataDirOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N test images")] = None,
    tta: Annotated[bool, typer.Option(help="Test-time augmentation: average 5 one-pixel shifts (5x the work)")] = False,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.reporting.metrics import evaluate

    metrics = evaluate(model, dataset, data_dir, limit, tta)
    if as_json:
        print(json.dumps(metrics))
        return
    print(f"Test error: {100 * metrics['test_error']:.2f}% (accuracy {100 * metrics['test_accuracy']:.2f}%), "
          f"loss {metrics['test_loss']:.4f}")
    print("Per-class accuracy: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics["per_class_accuracy"].items()))


@command("predict")
def predict_command(
    model: Annotated[Path, typer.Argument(help="Run directory or model.safetensors")],
    paths: Annotated[list[Path], typer.Argument(help="Images, folders of images, or pixel CSV files")],
    number: Annotated[bool, typer.Option("--number", help="Read each image as a number of several digits")] = False,
    min_confidence: Annotated[float, typer.Option(help="Mark answers below this probability uncertain")] = 0.0,
    save_preprocessed: Annotated[Optional[Path], typer.Option(help="Folder for the 28x28 inputs the network saw")] = (
        None),
    top: Annotated[int, typer.Option(help="How many candidate labels to list")] = 3,
    tta: Annotated[bool, typer.Option(help="Average each answer over 5 one-pixel shifts of the image")] = True,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.predict import predict_files

    if top < 1:
        raise CnnlabError(f"--top must be at least 1, got {top}")
    if not 0 <= min_confidence <= 1:
        raise CnnlabError(f"--min-confidence must be a probability in [0, 1], got {min_confidence}")
    results = predict_files(model, list(paths), top, number, min_confidence, save_preprocessed, tta=tta)
    for p in results:
        print(json.dumps(p.to_json()) if as_json else p.to_text())
    failed = [p for p in results if p.error]
    if failed:
        detail = f": {failed[0].path}: {failed[0].error}" if len(failed) == 1 else " (see above)"
        raise CnnlabError(f"{len(failed)} of {len(results)} images got no answer{detail}")


@command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="Run directory made by 'cnnlab train'")],
    data_dir: DataDirOpt = None,
) -> None:
    from cnnlab.reporting.report import rebuild

    print(f"Wrote {rebuild(run, data_dir=data_dir)}")


@command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="Run directory (or its model.safetensors)")],
    file_format: Annotated[str, typer.Option("--format", help="Only onnx so far")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Folder for model.onnx and model.json [default: the run]")] = None,
) -> None:
    from cnnlab.export import FORMATS, export_onnx

    require(file_format in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got '{file_format}'")
    print(f"Wrote {export_onnx(model, out)} (input: normalised images (N, 1, H, W); see model.json)")


@command("serve")
def serve_command(
    model: Annotated[Path, typer.Argument(help="Run directory (or its model.safetensors)")],
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body accepted, in megabytes")] = 5.0,
) -> None:
    from cnnlab.serving.serve import serve

    require(1 <= port <= 65535, f"--port must be 1-65535, got {port}")
    require(max_upload_mb > 0, f"--max-upload-mb must be positive, got {max_upload_mb}")
    serve(model, host, port, max_upload_mb)


@command("show")
def show_command(
    dataset: DatasetOpt = "mnist",
    data_dir: DataDirOpt = None,
    count: Annotated[int, typer.Option(help="How many images")] = 32,
    split: Annotated[str, typer.Option(help="train or test")] = "train",
    augment: Annotated[Optional[str], typer.Option(help="Add 3 rows of random warps: light or strong")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the warps")] = 0,
    out: Annotated[Path, typer.Option(help="PNG file to write")] = Path("samples.png"),
) -> None:
    import torch

    from cnnlab.data import load_dataset
    from cnnlab.reporting import plots
    from cnnlab.training.augment import augment_uint8, get_level

    if count < 1 or split not in ("train", "test"):
        raise CnnlabError("--count must be at least 1 and --split train or test")
    if augment is not None:
        get_level(augment)
    ds = load_dataset(dataset, data_dir=data_dir)
    images, labels = ds.splits()[split]
    images, labels = images[:count], labels[:count]
    title = f"{ds.name}: first {count} {split} images"
    if augment:
        warps = [augment_uint8(images, augment, seed + i) for i in range(3)]
        images, labels = torch.cat([images, *warps]), labels.repeat(4)
        title += f", then 3 rows of '{augment}' augmentation of each"
    plots.sample_grid(images, labels, ds.class_names, out, title, columns=min(count, 8) if not augment else count)
    print(f"Wrote {out}")


@command("info")
def info_command(dataset: DatasetOpt = "mnist", data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    from cnnlab.data import describe, load_dataset

    facts = describe(load_dataset(dataset, data_dir=data_dir))
    if as_json:
        print(json.dumps(facts))
        return
    height, width = facts["image_shape"][:2]
    colour = "" if facts["channels"] == 1 else " RGB" if facts["channels"] == 3 else f" {facts['channels']} channels"
    print(f"{facts['name']}: {facts['num_classes']} classes, images {height}x{width}{colour}")
    for split, s in facts["splits"].items():
        print(f"  {split:<5} {s['count']:>6} images, pixel mean {s['pixel_mean']:.4f} std {s['pixel_std']:.4f}")
        print("        per class: " + ", ".join(f"{k} {v}" for k, v in s["class_counts"].items()))


@command("models")
def models_command(as_json: JsonOpt = False) -> None:
    from cnnlab.models.registry import MODELS, build_model, count_parameters, flops_per_image

    rows = []
    for name, spec in MODELS.items():
        model = build_model(name)
        rows.append({"name": name, "parameters": count_parameters(model), "flops": flops_per_image(model),
                     "description": spec.description, "spec": spec.spec})
    if as_json:
        print(json.dumps(rows))
        return
    print(f"{'model':<21}{'params':>9}{'MFLOPs':>8}  description")
    for r in rows:
        print(f"{r['name']:<21}{r['parameters']:>9,}{r['flops'] / 1e6:>8.2f}  {r['description']}")
    print("\nAs layer specs ('--model' takes a spec of your own too; docs/reference/layers.md):")
    for r in rows:
        print(f"  {r['name']:<20}{r['spec'] or '(a class: no spec can say it)'}")


@command("summary")
def summary_command(
    model: Annotated[str, typer.Argument(help="A registry name, a layer spec, a spec file or a run directory")],
    image_size: Annotated[int, typer.Option(help="Side of the square input images (a run: its own)")] = 28,
    channels: Annotated[int, typer.Option(help="Channels of the input images (a run: its own)")] = 1,
    classes: Annotated[int, typer.Option(help="Classes, the output layer's size (a run: its own)")] = 10,
    batch_size: Annotated[Optional[int], typer.Option(help="For the memory estimate [default: the run's, or 128]")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.models.summary import summary

    require(image_size >= 1 and channels >= 1 and classes >= 1, "--image-size, --channels and --classes must be "
            "at least 1")
    table = summary(model, classes, channels, image_size, batch_size)
    print(json.dumps(table.to_dict()) if as_json else table)


@command("lr-find")
def lr_find_command(
    model: Annotated[Optional[str], typer.Option(help="A name from 'cnnlab models', a layer spec or a spec file "
                                                 "[default: the preset's]")] = None,
    preset: Annotated[str, typer.Option(help="The settings to sweep with: fast, accurate or best")] = "fast",
    dataset: DatasetOpt = "mnist",
    optimizer: Annotated[Optional[str], typer.Option(help="adam, sgd or adadelta [default: the preset's]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step [default: the preset's]")] = None,
    steps: Annotated[int, typer.Option(help="The most steps of the sweep")] = 200,
    start: Annotated[float, typer.Option(help="The first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option(help="The last learning rate")] = 10.0,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads [default: one per free core]")] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    data_dir: DataDirOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for lr_find.png and lr_find.json "
                                                "[default: new runs/lr-find-MODEL-DATASET]")] = None,
) -> None:
    from cnnlab.files import write_json
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.lr_find import lr_find

    chosen = dict(model=model, optimizer=optimizer, batch_size=batch_size, limit=limit, threads=threads,
                  data_dir=str(data_dir) if data_dir else None)
    config = TrainConfig.from_preset(preset, dataset=dataset, seed=seed, **{k: v for k, v in chosen.items() if v})
    found = lr_find(config, start=start, end=end, steps=steps)
    dataset_label = Path(dataset).stem if Path(dataset).exists() else dataset
    out = out or new_run_dir(Path("runs") / f"lr-find-{run_label(config.model)}-{dataset_label}")
    found.plot(out / "lr_find.png")
    write_json(out / "lr_find.json", found.to_dict())
    print(found.describe())
    print(f"Wrote {out / 'lr_find.png'}; train with it: cnnlab train --lr {found.suggestion:.2g}"
          + (f" --model {shlex.quote(model)}" if model else "") + "  (or --lr auto)")


@command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories made by 'cnnlab train'")],
    out: Annotated[Optional[Path], typer.Option(help="Folder for compare.png and compare.html "
                                                "[default: compare-A-vs-B beside the first run]")] = None,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.reporting.compare import compare_runs, format_table

    compared, folder = compare_runs(runs, out)
    if as_json:
        print(json.dumps([r.to_json() for r in compared]))
    else:
        print(format_table(compared))
        print(f"Wrote {folder / 'compare.png'} and {folder / 'compare.html'}")
    if len(compared) < len(runs):
        raise CnnlabError(f"{len(runs) - len(compared)} of {len(runs)} runs were left out (see above)")


@command("reproduce")
def reproduce_command(
    what: Annotated[str, typer.Argument(help="What to reproduce: 'article'")],
    data_dir: DataDirOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    epochs: Annotated[Optional[int], typer.Option(help="Override the article's 10 epochs (quick look)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also save each model's run directory here")] = None,
    as_json: JsonOpt = False,
) -> None:
    from cnnlab.reproduce import format_table, reproduce_article

    if what != "article":
        raise CnnlabError(f"unknown reproduction '{what}': use 'cnnlab reproduce article'")
    if epochs is not None and epochs < 1:
        raise CnnlabError(f"--epochs must be at least 1, got {epochs}")
    rows = reproduce_article(data_dir, epochs, seed, out)
    print(json.dumps([r.to_json() for r in rows]) if as_json else format_table(rows))


@command("bench")
def bench_command(
    inference: Annotated[bool, typer.Option("--inference", help="Measure prediction speed of every model")] = False,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="With --inference: this model (a name or a "
                                                        "layer spec; repeat for several) [default: the registry]")]
    = None,
    recipes: Annotated[Optional[str], typer.Option(help="Comma-separated recipes [default: all]")] = None,
    peer_epochs: Annotated[Optional[int], typer.Option(help="Cap the peers' epochs (rows say so)")] = None,
    seed: Annotated[int, typer.Option(help="First seed: presets run seeds SEED, SEED+1..., peers SEED")] = 1,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per preset [default: each preset's own, 5 or 3]")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for every recipe [default: free cores]")] = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="mnist or fashion-mnist (the presets take "
                                                                 "their settings for it)")] = "mnist",
    data_dir: DataDirOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for bench.json and the PNG")] = Path("bench"),
) -> None:
    from cnnlab import bench
    from cnnlab.files import write_json

    given = {"--dataset": dataset if dataset != "mnist" else None, "--recipes": recipes, "--peer-epochs": peer_epochs,
             "--seed": seed if seed != 1 else None, "--seeds": seeds, "--threads": threads}
    command = " ".join(["cnnlab bench", *(["--inference"] if inference else []),
                        *(f"--model {shlex.quote(m)}" for m in model or []),
                        *(f"{flag} {value}" for flag, value in given.items() if value is not None)])
    if inference:
        rows = bench.inference_speed(model)
        print(bench.format_inference(rows))
        write_json(out / "inference.json", bench.results_file(command, rows))
        print(f"Wrote {out / 'inference.json'}")
        return
    names = [n.strip() for n in recipes.split(",")] if recipes else None
    unknown = [n for n in names or [] if n not in bench.RECIPES]
    if unknown:
        raise CnnlabError(f"unknown recipe '{unknown[0]}': use some of {', '.join(bench.RECIPES)}")
    if peer_epochs is not None and peer_epochs < 1:
        raise CnnlabError(f"--peer-epochs must be at least 1, got {peer_epochs}")
    if seeds is not None and seeds < 1:
        raise CnnlabError(f"--seeds must be at least 1, got {seeds}")
    if dataset not in bench.BENCH_DATASETS:
        raise CnnlabError(f"--dataset must be one of {', '.join(bench.BENCH_DATASETS)}, got '{dataset}'")
    from cnnlab.data import load_dataset

    curves = bench.run_bench(load_dataset(dataset, data_dir=data_dir), names, peer_epochs, seed, threads, seeds)
    kind = bench.BENCH_DATASETS[dataset]
    print(bench.format_bench(curves, kind))
    write_json(out / "bench.json", bench.results_file(command, [c.to_json() for c in curves], dataset))
    bench.plot_curves(curves, out / "bench.png", dataset)
    print(f"Wrote {out / 'bench.json'} and {out / 'bench.png'}")


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
    """``click_command``: the click object behind the typer app, for the docs' command reference
    (mkdocs-click); built on demand, not on every start of the command."""
    if name == "click_command":
        return typer.main.get_command(app)
    raise AttributeError(f"module 'cnnlab.cli' has no attribute '{name}'")


def run() -> None:
    """The ``cnnlab`` command: :func:`main`, then leave the process without Python's teardown.

    Tearing the interpreter down after torch (and ``torch._dynamo``, which ``torch.optim``
    imports) took 0.4-1 s here, a tenth of a ``cnnlab train --preset fast``. By the time
    ``main`` returns every file is written, atomically, and closed, so only the output streams
    need flushing. In-process callers (tests, notebooks) use :func:`main`, which returns.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
