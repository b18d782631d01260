"""How long the ``cnnlab`` command takes as a whole, as a user waits for it: medians on this machine.

    python benchmarks/command_speed.py [--repeats 5] [--results docs/results/command_speed.json]

Prints, against issue 41's targets:

    cnnlab --help                   a new process, to the end of the help text          <= 0.3 s
    cnnlab predict RUN photo        a new process, one photo, the default model        <= 1.2 s
    cnnlab train (whole / loop)     the whole command, to the prompt, over its own      <= 1.5x
                                    training loop (metrics.json's train_seconds)

and, without targets, where the time goes: starting Python and importing torch alone (the floor
of any command that runs a network), scipy's image code, the time to a training's first epoch.

Each command is a new process, as a user starts it, with Python's bytecode cache on (a user's
Python writes it on the first run; this machine's PYTHONDONTWRITEBYTECODE is left out) and warmed
by one run first. Run it with nothing else running: two jobs at once halve each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.targets import Targets
from cnnlab.training.run_folder import claim

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "docs/examples/seven.jpg"
CNNLAB = [sys.executable, "-m", "cnnlab"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(command: list[str]) -> float:
    """Seconds from starting ``command`` to its exit; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return seconds


def median_wall(command: list[str], repeats: int) -> float:
    wall(command)  # warm: bytecode written, files in the page cache
    return statistics.median(wall(command) for _ in range(repeats))


def train_once(folder: Path) -> tuple[float, float, float]:
    """``(whole, loop, to first epoch)`` seconds of one ``cnnlab train`` (the README's default model)."""
    run = folder / "run"
    started = time.perf_counter()
    process = subprocess.Popen([*CNNLAB, "train", "--out", str(run)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    first_epoch = None
    for line in process.stdout:  # ends with the command: the pictures' child has its output closed
        if first_epoch is None and line.startswith("Epoch 1/"):
            first_epoch = time.perf_counter() - started
    code = process.wait()
    whole = time.perf_counter() - started
    if code or first_epoch is None:
        raise SystemExit("cnnlab train failed")
    with claim(run, resuming=True):  # the pictures' child is done before the next measurement
        loop = json.loads((run / "metrics.json").read_text())["train_seconds"]
    return whole, loop, first_epoch - loop  # one epoch: its line comes as it ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", help="write the figures to this JSON file (docs/results/command_speed.json)")
    args = parser.parse_args()
    targets = Targets()

    with tempfile.TemporaryDirectory() as scratch:
        trainings = [train_once(Path(scratch) / f"t{i}") for i in range(max(3, args.repeats // 2 + 1))]
        whole = statistics.median(t[0] for t in trainings)
        loop = statistics.median(t[1] for t in trainings)
        before = statistics.median(t[2] for t in trainings)
        run = Path(scratch) / "t0" / "run"
        help_s = median_wall([*CNNLAB, "--help"], args.repeats)
        predict_s = median_wall([*CNNLAB, "predict", str(run), str(PHOTO)], args.repeats)
        torch_s = median_wall([sys.executable, "-c", "import torch"], args.repeats)
        scipy_s = median_wall([sys.executable, "-c", "import scipy.ndimage"], args.repeats)
        python_s = median_wall([sys.executable, "-c", "pass"], args.repeats)

    print(f"medians of {args.repeats} runs ({len(trainings)} trainings), each a new process")
    targets.check("cnnlab --help", f"{help_s:.2f} s", "<= 0.3 s", help_s <= 0.3)
    targets.check("cnnlab predict RUN photo", f"{predict_s:.2f} s", "<= 1.2 s", predict_s <= 1.2)
    targets.check("cnnlab train, whole over its loop", f"{whole / loop:.2f}x ({whole:.1f} s for {loop:.1f} s)",
                  "<= 1.5x", whole / loop <= 1.5)
    targets.note("cnnlab train: from the start to the first epoch's training", f"{before:.2f} s")
    targets.note("python -c 'import torch' (the floor of any command that runs a network)", f"{torch_s:.2f} s")
    targets.note("python -c 'import scipy.ndimage' (a photo's preprocessing)", f"{scipy_s:.2f} s")
    targets.note("python -c pass (starting Python)", f"{python_s:.2f} s")
    targets.finish(args.results)


if __name__ == "__main__":
    main()
