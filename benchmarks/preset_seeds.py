"""The presets' acceptance check, as a user runs it: the whole `cnnlab train` command per seed.

    python benchmarks/preset_seeds.py fast          # seeds 1-5
    python benchmarks/preset_seeds.py accurate 1 2  # chosen seeds

For each seed it runs `cnnlab train --preset P --seed S --out DIR` in a fresh process and prints
the test accuracy and training-loop seconds from metrics.json, and the wall time of the whole
command (Python start-up, imports, data, training, test, plots), then the medians.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_seed(preset: str, seed: int, folder: Path) -> dict:
    out = folder / f"{preset}-seed{seed}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--preset", preset, "--seed", str(seed),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"seed": seed, "test_accuracy": metrics["test_accuracy"], "train_seconds": metrics["train_seconds"],
            "command_seconds": wall}


def main() -> None:
    preset = sys.argv[1] if len(sys.argv) > 1 else "fast"
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3, 4, 5]
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for seed in seeds:
            rows.append(run_seed(preset, seed, Path(folder)))
            r = rows[-1]
            print(f"{preset} seed {seed}: test accuracy {100 * r['test_accuracy']:.2f}%, "
                  f"training loop {r['train_seconds']:.2f} s, whole command {r['command_seconds']:.2f} s", flush=True)
    print(f"{preset}: lowest test accuracy {100 * min(r['test_accuracy'] for r in rows):.2f}%, "
          f"median training loop {statistics.median(r['train_seconds'] for r in rows):.2f} s, "
          f"median whole command {statistics.median(r['command_seconds'] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
