"""How long preparing one image for a model takes, by kind of input, and where the time goes.

    python benchmarks/preprocess_speed.py [--repeats 400] [--baseline REV] [--out FILE]
                                          [--save-outputs FILE | --check-outputs FILE] [--variety 300]

Times, in one process, the median of many calls of ``digit_to_mnist(read_grey(image bytes))`` for

    drawn 28x28      an MNIST test digit saved as a 28x28 grey PNG
    canvas 280x280   black strokes on white, as serve's drawing pad sends them (RGB PNG)
    photo 900 px     a photo of a digit (tests/photolike.py's render_photo) scaled to 900 px wide, JPEG
    page 900 px      a digit small on a photographed page, 900 px wide, JPEG: the writing is looked at again
    plain 900 px     the photo prepared for a non-digit model (32x32 RGB: reduced_for, to_rgb, fit_square)

each kind cycling through ``--inputs`` different images, and prints where the time goes (cProfile,
the functions of cnnlab.handwriting.digit and cnnlab.data.images, ms per image).

``--baseline REV`` loads digit.py and images.py as they were at git revision REV into the same
process: every kind is timed for both, alternately, so the ratio holds on a busy machine, and the
outputs of both are compared on ``--variety`` varied inputs (digits, drawings, photos, numbers,
each cut into its blobs). ``--save-outputs`` / ``--check-outputs`` keep or compare the outputs of the
code as it is now (including cnnlab.handwriting.number's) in an .npz file.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import pstats
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnlab.data import images as images_module
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.handwriting import digit as digit_module
from cnnlab.handwriting.number import number_to_mnist
from tests.photolike import (
    number_in_marker,
    number_on_a_page,
    number_written_differently,
    photographed_number,
    render_photo,
)

ROOT = Path(__file__).resolve().parents[1]
PLAIN_SIDE = 32


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def drawn_canvas(rng: np.random.Generator, mode: str = "RGB") -> bytes:
    """A 280x280 canvas with a few black strokes on white (benchmarks/serve_load.py's drawn_digit);
    ``mode`` RGBA: on a transparent canvas instead."""
    canvas = Image.new(mode, (280, 280), "white" if mode == "RGB" else (0, 0, 0, 0))
    pen = ImageDraw.Draw(canvas)
    points = [tuple(rng.integers(40, 240, 2).tolist()) for _ in range(int(rng.integers(2, 6)))]
    pen.line(points, fill="black", width=20, joint="curve")
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG")
    return buffer.getvalue()


def to_width(photo: bytes, width: int, rng: np.random.Generator) -> bytes:
    """A photo scaled to ``width`` pixels wide, saved again as a phone saves it (JPEG 80-95)."""
    image = Image.open(io.BytesIO(photo))
    height = round(image.height * width / image.width)
    return jpeg(image.resize((width, height), Image.Resampling.BICUBIC), int(rng.integers(80, 96)))


def phone_photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A photo of one digit, the digit filling much of it, 900 px wide."""
    return to_width(render_photo(digit, rng, int(rng.integers(250, 500))), 900, rng)


def page_photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One digit written small on a photographed page, 900 px wide."""
    return to_width(number_on_a_page([digit], rng), 900, rng)


def timing_inputs(digits: np.ndarray, count: int, rng: np.random.Generator) -> dict[str, list[bytes]]:
    """``count`` images of each timed kind."""
    picks = [digits[i] for i in rng.choice(len(digits), count, replace=False)]
    return {"drawn 28x28": [png(d) for d in picks],
            "canvas 280x280": [drawn_canvas(rng) for _ in picks],
            "photo 900 px": [phone_photo(d, rng) for d in picks],
            "page 900 px": [page_photo(d, rng) for d in picks],
            "plain 900 px": [phone_photo(d, rng) for d in picks]}


def variety(digits: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """``count`` varied inputs, named: each kind of :func:`timing_inputs` and more (inverted and
    transparent drawings, photos of 20-300 px as the handwriting benchmark makes, numbers made four ways)."""
    makers: dict[str, Callable[[], bytes]] = {
        "mnist": lambda: png(one()),
        "mnist-inverted": lambda: png(255 - one()),
        "canvas": lambda: drawn_canvas(rng),
        "canvas-transparent": lambda: drawn_canvas(rng, "RGBA"),
        "render": lambda: render_photo(one(), rng),
        "phone": lambda: phone_photo(one(), rng),
        "page": lambda: page_photo(one(), rng),
        "number-photographed": lambda: photographed_number(several(), rng),
        "number-differently": lambda: number_written_differently(several(), rng),
        "number-on-page": lambda: number_on_a_page(several(), rng),
        "number-marker": lambda: number_in_marker(several(), rng),
    }

    def one() -> np.ndarray:
        return digits[int(rng.integers(len(digits)))]

    def several() -> list[np.ndarray]:
        return [digits[i] for i in rng.choice(len(digits), int(rng.integers(2, 6)), replace=False)]

    names = list(makers)
    return [(f"{names[i % len(names)]}-{i}", makers[names[i % len(names)]]()) for i in range(count)]


def load_baseline(revision: str) -> tuple[types.ModuleType, types.ModuleType]:
    """cnnlab.handwriting.digit and cnnlab.data.images as they were at ``revision``, as separate modules."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout

    def module(name: str, text: str) -> types.ModuleType:
        spec = importlib.util.spec_from_loader(name, loader=None)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        exec(compile(text, f"{revision}:{name}", "exec"), loaded.__dict__)
        return loaded

    images = module("baseline_images", source("src/cnnlab/data/images.py"))
    digit_text = source("src/cnnlab/handwriting/digit.py").replace("cnnlab.data.images", "baseline_images")
    return module("baseline_digit", digit_text), images


def digit_step(digit: types.ModuleType) -> Callable[[bytes], np.ndarray]:
    return lambda data: digit.digit_to_mnist(digit.read_grey(data))


def plain_step(images: types.ModuleType) -> Callable[[bytes], np.ndarray]:
    return lambda data: images.fit_square(images.to_rgb(images.reduced_for(images.decode(data), PLAIN_SIDE)),
                                          PLAIN_SIDE)


def steps(digit: types.ModuleType, images: types.ModuleType) -> dict[str, Callable[[bytes], np.ndarray]]:
    """What is timed for each kind of input."""
    return {kind: plain_step(images) if kind.startswith("plain") else digit_step(digit)
            for kind in ("drawn 28x28", "canvas 280x280", "photo 900 px", "page 900 px", "plain 900 px")}


def median_ms(runs: dict[str, Callable[[bytes], object]], inputs: list[bytes], repeats: int) -> dict[str, float]:
    """Median ms per call of each of ``runs``, the runs alternating call by call over ``inputs``."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for data in inputs:  # warm
        for run in runs.values():
            run(data)
    for i in range(repeats):
        data = inputs[i % len(inputs)]
        for name, run in runs.items():
            started = time.perf_counter()
            run(data)
            times[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in times.items()}


def breakdown(run: Callable[[bytes], object], inputs: list[bytes], repeats: int,
              files: tuple[str, ...]) -> dict[str, float]:
    """ms per call (cumulative, under cProfile) of each function defined in ``files`` and of the
    scipy, numpy and Pillow calls they make, largest first."""
    profile = cProfile.Profile()
    profile.enable()
    for i in range(repeats):
        run(inputs[i % len(inputs)])
    profile.disable()
    figures = {}
    for (path, line, name), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():
        if path.endswith(files) or (path == "~" and "numpy" not in name and "built-in" in name) \
                or "scipy/ndimage" in path or "PIL/Image.py" in path:
            figures[f"{Path(path).name}:{line}({name})"] = 1000 * cumulative / repeats
    return dict(sorted(figures.items(), key=lambda item: -item[1])[:25])


def outputs_of(digit: types.ModuleType, images: types.ModuleType, data: bytes, with_number: bool = False
               ) -> dict[str, np.ndarray]:
    """Every uint8 output made from ``data``: the digit, each blob as a digit, the plain 28 grey and
    32 RGB images, and (``with_number``) cnnlab.handwriting.number's digits; an error as its message."""
    found: dict[str, np.ndarray] = {}

    def keep(key: str, make: Callable[[], np.ndarray]) -> None:
        try:
            found[key] = np.asarray(make())
        except CnnlabError as error:
            found[key] = np.frombuffer(f"{type(error).__name__}: {error}".encode(), np.uint8)

    grey = digit.read_grey(data)
    keep("digit", lambda: digit.digit_to_mnist(grey))
    keep("blobs", lambda: blobs(digit, grey))
    keep("plain-grey", lambda: images.fit_square(images.to_grey(images.reduced_for(images.decode(data), 28)), 28))
    keep("plain-rgb", lambda: plain_step(images)(data))
    if with_number:
        keep("number", lambda: np.stack(number_to_mnist(grey)))
    return found


def blobs(digit: types.ModuleType, grey: np.ndarray) -> np.ndarray:
    ink, labels, count = digit.ink_of_photo(grey)
    return np.stack([digit.to_mnist(ink, labels == i) for i in range(1, count + 1)])


def compare(named: list[tuple[str, bytes]], new: Callable[[bytes], dict], old: Callable[[bytes], dict]) -> list[str]:
    """The names (and output) where ``new`` and ``old`` differ."""
    differing = []
    for name, data in named:
        mine, theirs = new(data), old(data)
        differing += [f"{name}:{key}" for key in sorted(set(mine) | set(theirs))
                      if key not in mine or key not in theirs or not np.array_equal(mine[key], theirs[key])]
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=400, help="timed calls per kind (and per version)")
    parser.add_argument("--inputs", type=int, default=40, help="different images per kind")
    parser.add_argument("--variety", type=int, default=300, help="varied inputs whose outputs are compared")
    parser.add_argument("--baseline", help="a git revision to time and compare against, in this process")
    parser.add_argument("--save-outputs", help="an .npz file to keep the outputs in")
    parser.add_argument("--check-outputs", help="an .npz file of outputs to compare with")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "test-artifacts/preprocess-speed.json"))
    args = parser.parse_args()
    digits = load_dataset("mnist", data_dir=args.data_dir, val_split=0.0).test_images.numpy()
    rng = np.random.default_rng(args.seed)
    results: dict = {"repeats": args.repeats, "inputs": args.inputs, "baseline": args.baseline, "kinds": {}}
    baseline = load_baseline(args.baseline) if args.baseline else None
    if baseline or args.save_outputs or args.check_outputs:
        results["outputs"] = check_outputs(args, digits, baseline)
    current = steps(digit_module, images_module)
    old = steps(*baseline) if baseline else {}
    for kind, inputs in timing_inputs(digits, args.inputs, rng).items():
        runs = {"now": current[kind], **({"baseline": old[kind]} if baseline else {})}
        figures = median_ms(runs, inputs, args.repeats)
        if baseline:
            figures["ratio"] = figures["baseline"] / figures["now"]
        line = ", ".join(f"{k} {v:.3f} ms" if k != "ratio" else f"{v:.2f}x as fast" for k, v in figures.items())
        print(f"{kind}: {line} (median of {args.repeats})", flush=True)
        results["kinds"][kind] = {"median_ms": figures}
        if not args.no_profile:
            profile = breakdown(current[kind], inputs, max(50, args.repeats // 4), ("digit.py", "images.py"))
            results["kinds"][kind]["profile_ms"] = profile
            for name, ms in list(profile.items())[:12]:
                print(f"    {ms:7.3f} ms  {name}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def check_outputs(args: argparse.Namespace, digits: np.ndarray, baseline: tuple | None) -> dict:
    """Compare (or save) the outputs on ``--variety`` varied inputs; exits with 1 when any differ."""
    named = variety(digits, args.variety, np.random.default_rng(args.seed + 1))
    report: dict = {"inputs": len(named)}
    started = time.perf_counter()
    if baseline:
        differing = compare(named, lambda d: outputs_of(digit_module, images_module, d),
                            lambda d: outputs_of(*baseline, d))
        report["differing from the baseline"] = differing
        print(f"outputs on {len(named)} varied inputs: {len(differing)} differ from {args.baseline}'s {differing[:10]}")
    if args.save_outputs or args.check_outputs:
        now = {f"{name}|{key}": value for name, data in named
               for key, value in outputs_of(digit_module, images_module, data, with_number=True).items()}
        if args.save_outputs:
            np.savez_compressed(args.save_outputs, **now)
            print(f"saved {len(now)} outputs of {len(named)} inputs to {args.save_outputs}")
        if args.check_outputs:
            kept = dict(np.load(args.check_outputs))
            differing = sorted(k for k in set(kept) | set(now)
                               if k not in kept or k not in now or not np.array_equal(kept[k], now[k]))
            report["differing from the saved outputs"] = differing
            print(f"outputs: {len(differing)} of {len(now)} differ from {args.check_outputs} {differing[:10]}")
    print(f"    (compared in {time.perf_counter() - started:.1f} s)")
    if any(report.get(key) for key in ("differing from the baseline", "differing from the saved outputs")):
        print("OUTPUTS DIFFER", file=sys.stderr)
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
