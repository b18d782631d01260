"""How fast ``cnnlab read`` answers, and where the time goes: medians on this machine.

    python benchmarks/read_speed.py [--repeats 20]

Prints, against the reader's targets (one photographed digit <= 60 ms, a 4-digit number
<= 300 ms, the whole ``cnnlab read photo.jpg`` command <= 3 s):

    digit / number   one read of docs/examples/seven.jpg and number-4794.jpg in a warm process:
                     decoding, finding the ink, cutting it into digits, the network
    command          ``cnnlab read docs/examples/number-4794.jpg`` as a new process, and its parts,
                     timed inside one: starting Python, importing, loading the reader, reading
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.targets import Targets
from cnnlab.handwriting.digit import ink_of_photo, read_grey
from cnnlab.using.predictor import Predictor
from cnnlab.using.reader import READER, read

ROOT = Path(__file__).resolve().parents[1]
DIGIT, NUMBER = ROOT / "docs/examples/seven.jpg", ROOT / "docs/examples/number-4794.jpg"
TARGETS_MS = {"digit": 60, "number": 300, "command": 3000}
PARTS = """
import json, sys, time
started = time.perf_counter()
import cnnlab.cli
parsed = time.perf_counter()
from cnnlab.using.reader import load_reader, read
imported = time.perf_counter()
load_reader()
loaded = time.perf_counter()
read(sys.argv[1], progress=False)
done = time.perf_counter()
print(json.dumps({"importing cnnlab's command line (torch, numpy, PIL)": 1000 * (parsed - started),
                  "importing the reading code (scipy, the judge)": 1000 * (imported - parsed),
                  "loading the reader": 1000 * (loaded - imported),
                  "reading the photo": 1000 * (done - loaded)}))
"""


def median_ms(work: Callable[[], object], repeats: int) -> float:
    work()  # warm: first calls pay for lazy imports and allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def parts_ms(path: Path, repeats: int) -> dict[str, float]:
    """Where one read of ``path`` spends its time, each part measured on its own."""
    predictor = Predictor.load(READER)
    grey = read_grey(path)
    prepared = predictor.prepare(path, number=None)
    network_calls = []

    def counted(images):
        network_calls.append(len(images))
        return predictor.top_probability(images)

    predictor.prepare(path, number=None, ask=counted)
    return {
        "decode": median_ms(lambda: read_grey(path), repeats),
        "find the ink": median_ms(lambda: ink_of_photo(grey), repeats),
        "find the ink, cut it, judge the pieces": median_ms(lambda: predictor.prepare(path, number=None), repeats),
        "the network on the digits (5 shifts each), weighed by the sequence reader": median_ms(
            lambda: predictor.answer([prepared]), repeats),
        "pieces judged": sum(network_calls),
    }


def command_ms(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def check(targets: Targets, what: str, name: str, ms: float) -> None:
    targets.check(what, f"{ms:,.0f} ms", f"<= {TARGETS_MS[name]:,} ms", ms <= TARGETS_MS[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--results", default=None, help="a JSON file to write the figures to, for the docs")
    args = parser.parse_args()
    targets = Targets()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    digit = median_ms(lambda: read(DIGIT, progress=False), args.repeats)
    number = median_ms(lambda: read(NUMBER, progress=False), args.repeats)
    check(targets, f"one photographed digit ({DIGIT.name}, read() in a warm process)", "digit", digit)
    for part, value in parts_ms(DIGIT, args.repeats).items():
        targets.note(f"{DIGIT.name}: {part}", f"{value:.0f}" if part == "pieces judged" else f"{value:.1f} ms")
    check(targets, f"a 4-digit number ({NUMBER.name}, read() in a warm process)", "number", number)
    for part, value in parts_ms(NUMBER, args.repeats).items():
        targets.note(f"{NUMBER.name}: {part}", f"{value:.0f}" if part == "pieces judged" else f"{value:.1f} ms")
    cnnlab = shutil.which("cnnlab") or str(Path(sys.executable).with_name("cnnlab"))
    runs = max(3, args.repeats // 4)
    whole = command_ms([cnnlab, "read", str(NUMBER.relative_to(ROOT))], runs)
    check(targets, f"the whole command, cnnlab read {NUMBER.relative_to(ROOT)}", "command", whole)
    python = command_ms([sys.executable, "-c", "pass"], runs)
    parts = [json.loads(subprocess.run([sys.executable, "-c", PARTS, str(NUMBER)], check=True, capture_output=True,
                                       text=True, cwd=ROOT).stdout) for _ in range(runs)]
    targets.note("the command: starting Python", f"{python:.0f} ms")
    for part in parts[0]:
        targets.note(f"the command: {part}", f"{statistics.median(p[part] for p in parts):.0f} ms")
    targets.finish(args.results)


if __name__ == "__main__":
    main()
