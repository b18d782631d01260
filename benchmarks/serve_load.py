"""Load on `cnnlab serve` over loopback: many concurrent clients, a mix of good and bad requests,
once with the server idle and once while its Train tab trains.

    python benchmarks/serve_load.py runs/fast-mnist-seed0 [--requests 2000] [--clients 16]

Starts the server in its own process on a free port, then sends ``--requests`` POSTs to
/api/predict from ``--clients`` threads: drawn digits (PNG, as the page sends them), photos of
MNIST test digits (JPEG and PNG, some in number mode) and 5% malformed bodies (random bytes,
truncated images, bad JSON, bad base64). Then it starts a training (POST /api/train: the fast
preset for ``--train-epochs`` epochs) and, once its first curve point has arrived, sends the same
mix again; the training is stopped afterwards. For each phase it prints throughput, p50 and p99
latency, the count of each status code, and the server's resident memory before and after
(before the first: after ``--warm-up`` requests of the same mix, not counted), and the ratio of
the two p99s. Goals: no 5xx, memory growth under 50 MB, p99 while training at most 3x idle's.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnlab.data import load_dataset
from tests.photolike import compose_number, render_photo

OWNER_TOKEN = secrets.token_urlsafe(32)  # given to the server, which needs it to start and stop a training
OWNER = {"authorization": f"Bearer {OWNER_TOKEN}"}


def drawn_digit(rng: np.random.Generator) -> bytes:
    """A 280x280 canvas with a few black strokes, as the page's drawing pad sends it."""
    canvas = Image.new("RGB", (280, 280), "white")
    pen = ImageDraw.Draw(canvas)
    points = [tuple(rng.integers(40, 240, 2).tolist()) for _ in range(int(rng.integers(2, 6)))]
    pen.line(points, fill="black", width=20, joint="curve")
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG")
    return buffer.getvalue()


def malformed(rng: np.random.Generator, good: bytes) -> dict:
    kind = int(rng.integers(4))
    if kind == 0:
        return {"files": {"file": ("noise.png", rng.bytes(int(rng.integers(1, 5000))))}}
    if kind == 1:
        return {"files": {"file": ("cut.png", good[: len(good) // 3])}}
    if kind == 2:
        return {"content": b'{"image": ', "headers": {"content-type": "application/json"}}
    return {"json": {"image": "***not base64***"}}


def make_requests(count: int, seed: int, data_dir: str | None) -> list[tuple[str, dict]]:
    """``(query, httpx keyword arguments)`` for each request, in a fixed random mix."""
    rng = np.random.default_rng(seed)
    test = load_dataset("mnist", data_dir=data_dir, val_split=0.0)
    images = test.test_images.numpy()
    requests = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            requests.append(("", malformed(rng, drawn_digit(rng))))
        elif roll < 0.45:
            requests.append(("", {"files": {"file": ("drawing.png", drawn_digit(rng), "image/png")}}))
        elif roll < 0.85:
            photo = render_photo(images[int(rng.integers(len(images)))], rng)
            body = {"image": base64.b64encode(photo).decode()} if rng.random() < 0.5 else None
            requests.append(("", {"json": body} if body else {"files": {"file": ("photo.jpg", photo)}}))
        else:
            digits = [images[i] for i in rng.choice(len(images), int(rng.integers(3, 6)), replace=False)]
            photo = render_photo(compose_number(digits, rng), rng)
            requests.append(("?number=true", {"files": {"file": ("number.jpg", photo)}}))
    return requests


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: str, runs: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", model, "--port", str(port), "--runs", runs],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               env={**os.environ, "CNNLAB_TOKEN": OWNER_TOKEN})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def send_all(url: str, requests: list[tuple[str, dict]], pool: ThreadPoolExecutor) -> dict:
    """Send ``requests`` through ``pool``; their throughput, latency and status counts."""
    statuses, latencies = Counter(), []

    def send(item: tuple[str, dict]) -> None:
        query, kwargs = item
        with httpx.Client(base_url=url, timeout=60) as client:
            started = time.perf_counter()
            reply = client.post("/api/predict" + query, **kwargs)
            latencies.append(time.perf_counter() - started)
            statuses[reply.status_code] += 1
            if reply.status_code >= 500:
                print(f"{reply.status_code}: {reply.text[:200]}", file=sys.stderr)

    started = time.perf_counter()
    list(pool.map(send, requests))
    seconds = time.perf_counter() - started
    cut = statistics.quantiles(latencies, n=100)
    return {"requests": len(requests), "seconds": round(seconds, 2),
            "requests_per_second": round(len(requests) / seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1), "p99_ms": round(1000 * cut[98], 1),
            "status_counts": dict(sorted(statuses.items()))}


def start_training(url: str, epochs: int) -> None:
    """Start the Train tab's training and wait until it is really training (its first curve point)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        reply = client.post("/api/train", json={"preset": "fast", "epochs": epochs}, headers=OWNER)
        if reply.status_code != 202:
            raise SystemExit(f"could not start a training: {reply.status_code} {reply.text}")
        with client.stream("GET", "/api/train/events") as events:
            for line in events.iter_lines():
                if '"type": "point"' in line:
                    return
                if '"type": "failed"' in line:
                    raise SystemExit(f"the training failed: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-up", type=int, default=100, help="requests sent first, before memory is read")
    parser.add_argument("--train-epochs", type=int, default=30, help="long enough to outlast the second phase")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    requests = make_requests(args.requests, args.seed, args.data_dir)
    runs = tempfile.mkdtemp(prefix="cnnlab-load-runs-")
    process, url = start_server(args.model, runs)
    try:
        with ThreadPoolExecutor(args.clients) as pool:
            # Warm-up, not counted: lazy imports, first-use buffers and one malloc arena per worker
            # thread are allocated once; growth after this is what would pile up in a long run.
            send_all(url, make_requests(args.warm_up, args.seed + 1, args.data_dir), pool)
            before = resident_mb(process.pid)
            idle = send_all(url, requests, pool)
            idle_after = resident_mb(process.pid)
            start_training(url, args.train_epochs)
            training = send_all(url, requests, pool)
            training_after = resident_mb(process.pid)
            with httpx.Client(base_url=url, timeout=60) as client:
                still = client.get("/api/train").json()["state"]
                client.post("/api/train/stop", json={}, headers=OWNER)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(runs, ignore_errors=True)
    print(json.dumps({"clients": args.clients, "cores": os.cpu_count(),
                      "idle": {**idle, "server_mb_before": round(before, 1), "server_mb_after": round(idle_after, 1)},
                      "while_training": {**training, "training_still_running_at_the_end": still == "running",
                                         "server_mb_after": round(training_after, 1)},
                      "p99_ratio_training_to_idle": round(training["p99_ms"] / idle["p99_ms"], 2)}, indent=1))


if __name__ == "__main__":
    main()
