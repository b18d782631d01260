"""The ``cnnlab`` commands for studying data and models: ``show``, ``info``, ``models``, ``summary``,
``lr-find``, ``compare``, ``reproduce`` and ``bench``; registered on the app of cnnlab.cli_app when
cnnlab.cli loads, after its own (the order of ``--help``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnlab.cli_app import (
    DataDirOpt,
    DatasetOpt,
    GreyOpt,
    ImageSizeOpt,
    JsonOpt,
    command,
    square_side,
)
from cnnlab.errors import CnnlabError, require
from cnnlab.files import free_folder


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
    chosen = every_class_in_turn(labels, count)  # a folder's images come class by class: the first 32 are one
    images, labels = images[chosen], labels[chosen]
    title = f"{ds.name}: {len(chosen)} {split} images, each class in turn"
    if augment:
        warps = [augment_uint8(images, augment, seed + i) for i in range(3)]
        images, labels = torch.cat([images, *warps]), labels.repeat(4)
        title += f", then 3 rows of '{augment}' augmentation of each"
    plots.sample_grid(images, labels, ds.class_names, out, title, columns=min(count, 8) if not augment else count)
    print(f"Wrote {out}")


def every_class_in_turn(labels, count: int):
    """Indices of ``count`` images (fewer if there are not as many): the first of each class in turn,
    then the second of each, and so on."""
    import torch

    per_class = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
    rounds = min(max(len(m) for m in per_class), count)  # each round takes at least one image
    order = [members[i] for i in range(rounds) for members in per_class if i < len(members)]
    return torch.stack(order[:count])


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
    from cnnlab.training.config import memory_shortfall
    from cnnlab.training.system import free_memory

    require(image_size >= 1 and channels >= 1 and classes >= 1, "--image-size, --channels and --classes must be "
            "at least 1")
    require(batch_size is None or batch_size >= 1, f"--batch-size must be at least 1, got {batch_size}")
    require(bool(model.strip()), "give the network to describe: a name from 'cnnlab models', a layer spec such as "
            "'conv32k3 maxpool dense128', a spec file or a run folder")
    table = summary(model, classes, channels, image_size, batch_size)
    if as_json:
        print(json.dumps(table.to_dict()))
        return
    print(table)
    free = free_memory()
    if free is not None and (problem := memory_shortfall(table, free)):
        print(f"Too large to train on this machine: it {problem}")


@command("lr-find")
def lr_find_command(
    model: Annotated[Optional[str], typer.Option(help="A name from 'cnnlab models', a layer spec or a spec file "
                                                 "[default: the preset's]")] = None,
    preset: Annotated[str, typer.Option(help="The settings to sweep with: fast, accurate, best or reader")] = "fast",
    dataset: DatasetOpt = "mnist",
    optimizer: Annotated[Optional[str], typer.Option(help="adam, sgd or adadelta [default: the preset's]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step [default: the preset's]")] = None,
    steps: Annotated[int, typer.Option(help="The most steps of the sweep")] = 200,
    start: Annotated[float, typer.Option(help="The first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option(help="The last learning rate")] = 10.0,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images")] = None,
    image_size: ImageSizeOpt = None,
    grey: GreyOpt = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads [default: every core no other cnnlab "
                                                   "training uses]")] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    data_dir: DataDirOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for lr_find.png and lr_find.json "
                                                "[default: new runs/lr-find-MODEL-DATASET]")] = None,
) -> None:
    from cnnlab.files import write_json
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.lr_find import lr_find

    chosen = dict(model=model, optimizer=optimizer, batch_size=batch_size, limit=limit, threads=threads,
                  image_size=square_side(image_size), grey=grey, fit_small_data=batch_size is None,
                  data_dir=str(data_dir) if data_dir else None)
    config = TrainConfig.from_preset(preset, dataset=dataset, seed=seed,
                                     **{k: v for k, v in chosen.items() if v is not None})
    found = lr_find(config, start=start, end=end, steps=steps)
    from cnnlab.training.run_folder import data_label, model_label

    out = out or free_folder(Path("runs") / f"lr-find-{model_label(config.model)}-{data_label(dataset)}")
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
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for every recipe [default: every core no "
                                                                 "other cnnlab training uses]")] = None,
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
