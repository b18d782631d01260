"""`cnnlab serve` under load over loopback, against its targets, in one run.

    export CNNLAB_DATA=/path/to/data                      # MNIST: the digits sent, and the training
    python benchmarks/serve_load.py --quick               # a smoke run of a minute or two (development)
    python benchmarks/serve_load.py [RUN] --out docs/results/serve_load.json   # the docs' measurement

RUN is the model served: a run folder, or ``reader`` for the handwriting reader that ships with
cnnlab (three wider networks: about nine times the network's time). Left out, it is the model the
README's ``make run`` trains (``cnnlab train --seed 0``: cnn-fast on MNIST, about ten seconds),
trained into a temporary folder first: the model the targets are set for. ``--workers N``,
``--max-batch N``, ``--batch-wait-ms F``, ``--max-queue N`` and ``--access-log text|json`` are
passed on to ``cnnlab serve`` when this checkout's has them (one it lacks is named and left out).
The results file goes to ``--out`` (test-artifacts/serve_load.json
when not given, which git ignores: only a quiet machine's full run belongs in docs/results/).

It starts the server (benchmarks/serve_load_tools.py: its own process, a free 127.0.0.1 port, the
token in $CNNLAB_TOKEN), waits for /healthz and /readyz, and sends each scenario's requests
(benchmarks/serve_load_bodies.py) over ``--clients`` keep-alive connections with the first load
generator this machine has: wrk (``apt-get install wrk``), ab, or Python client processes
(``--generator`` chooses). Scenarios: GET /healthz (the HTTP floor), a drawn 28x28 digit, a
280x280 canvas, a 900-px phone photo and the old mix with 5% malformed bodies, each POSTed to
/api/predict as ``{"image": "<base64>"}`` (the mix also as uploads); the server's resident memory
(all its processes) before and after those (topped up with drawn digits to 10,000 requests when
``--seconds`` cut them short; a --quick run does not check it). Then a second server with ``--workers 1`` (the only
one with the Train tab): the drawn digit idle, then while a Train-tab training runs. It prints
each scenario's requests/s (and its share of /healthz's), p50 and p99, status counts, the
server's and the generator's CPU, and each target as met or missed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.bench import results_file
from cnnlab.data import load_dataset
from cnnlab.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.*, and tests.photolike, which renders the photos
from benchmarks.serve_load_bodies import Request, scenario_requests  # noqa: E402
from benchmarks.serve_load_tools import (  # noqa: E402
    GENERATORS,
    PASSED_ON,
    Server,
    generator_version,
    pick_generator,
    serve_options,
)

COUNTS = {"healthz": 20000, "digit28": 4000, "canvas280": 3000, "photo900": 1500, "mixed": 1500,
          "idle": 2000, "training": 2000}  # the four predict scenarios: the 10,000 that memory is read around
QUICK = {"healthz": 1000, "digit28": 300, "canvas280": 200, "photo900": 60, "mixed": 200, "idle": 200, "training": 200}
WHAT = {"healthz": "GET /healthz (the HTTP floor)", "digit28": "drawn digit, 28x28 PNG",
        "canvas280": "280x280 canvas drawing, PNG", "photo900": "phone photo, 900-px-wide JPEG",
        "mixed": "mix: photos, drawings, numbers, 5% malformed",
        "idle": "drawn 28x28, --workers 1 server, idle", "training": "drawn 28x28, --workers 1, while training"}
MEMORY_REQUESTS, MEMORY_BOUND_MB = 10_000, 50
TOKEN = secrets.token_urlsafe(32)  # the server's, which starting and stopping a training need


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="run folder served, or 'reader' (default: make run's model, "
                        "trained first)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=120, help="the most one scenario may take")
    parser.add_argument("--generator", choices=["auto", *GENERATORS], default="auto")
    parser.add_argument("--variety", type=int, default=64, help="different images per scenario, sent round-robin")
    parser.add_argument("--train-epochs", type=int, default=30, help="long enough to outlast its scenario")
    parser.add_argument("--out", default=str(ROOT / "test-artifacts" / "serve_load.json"), help="results file")
    parser.add_argument("--seed", type=int, default=0)
    for option in PASSED_ON:
        parser.add_argument(option, default=None, metavar="VALUE", help="passed on to cnnlab serve")
    return parser.parse_args()


def server_options(args: argparse.Namespace, has: set[str], workers: str | None = None) -> list[str]:
    """The pass-through options that were given (``--workers`` as ``workers`` when that is given) and
    that this checkout's ``cnnlab serve`` has."""
    options = []
    for option in PASSED_ON:
        value = workers if option == "--workers" and workers else getattr(args, option[2:].replace("-", "_"))
        if value is not None and option in has:
            options += [option, str(value)]
        elif value is not None and workers is None:
            print(f"note: this cnnlab serve has no {option}; left out", flush=True)
    return options


def measure(run, server: Server, name: str, requests: list[Request], count: int) -> dict:
    """One scenario: the generator's figures, the server's CPU meanwhile, printed on one line.

    It starts a second after the last: the workers have answered what they had and wait for
    connections together (a worker busy with the last photo takes none, and the 16 connections
    on one of two workers would double their wait)."""
    time.sleep(1)
    cpu = server.cpu_seconds()
    got = run(server, requests, count)
    got = {"scenario": name, "what": WHAT[name], **got,
           "server_cpu_percent": round(100 * (server.cpu_seconds() - cpu) / got["seconds"], 1)}
    print(f"{got['what']:<46} {got['requests_per_second']:>8,.1f} req/s  p50 {got['p50_ms']:>6.1f} ms  "
          f"p99 {got['p99_ms']:>6.1f} ms  {got['status_counts']}  5xx {got['5xx']}  "
          f"server CPU {got['server_cpu_percent']:.0f}%  generator CPU {got['generator_cpu_percent']:.0f}%", flush=True)
    return got


def post(server: Server, path: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(server.url + path, json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def start_training(server: Server, epochs: int) -> None:
    """Start the Train tab's training and wait until it really trains (its first curve point)."""
    status, text = post(server, "/api/train", {"preset": "fast", "epochs": epochs})
    if status != 202:
        raise SystemExit(f"could not start a training: {status} {text}")
    with urllib.request.urlopen(server.url + "/api/train/events", timeout=600) as events:
        for line in events:
            if b'"type": "point"' in line:
                return
            if b'"type": "failed"' in line:
                raise SystemExit(f"the training failed: {line.decode()}")
    raise SystemExit("the training's events ended before its first point")


def main_server(args, has: set[str], run, requests: dict, counts: dict) -> tuple[list[dict], dict, list[str]]:
    """The server as asked: a warm-up, /healthz, then the predict scenarios with memory read around
    them (topped up with drawn digits to 10,000 requests in a full run: the time bound may cut them)."""
    server = Server(args.model, server_options(args, has), TOKEN)
    try:
        run(server, requests["mixed"] + requests["photo900"], min(500, counts["mixed"]))  # warm-up, not counted
        print(f"server: {' '.join(server.command)}  ({len(server.processes())} processes)", flush=True)
        floor = measure(run, server, "healthz", requests["healthz"], counts["healthz"])
        before = server.resident_mb()
        scenarios = [floor] + [measure(run, server, name, requests[name], counts[name])
                               for name in ("digit28", "canvas280", "photo900", "mixed")]
        sent = sum(s["requests"] for s in scenarios[1:])
        if not args.quick and sent < MEMORY_REQUESTS:
            print(f"topping up with {MEMORY_REQUESTS - sent:,} drawn digits for the memory reading", flush=True)
            sent += run(server, requests["digit28"], MEMORY_REQUESTS - sent, seconds=600)["requests"]
        after = server.resident_mb()
        memory = {"before_mb": round(before, 1), "after_mb": round(after, 1), "growth_mb": round(after - before, 1),
                  "requests": sent, "processes": len(server.processes())}
        print(f"server memory: {before:,.0f} MB before, {after:,.0f} MB after {sent:,} requests, "
              f"over {memory['processes']} processes", flush=True)
    finally:
        server.stop()
    for scenario in scenarios[1:]:
        scenario["share_of_healthz"] = round(scenario["requests_per_second"] / floor["requests_per_second"], 3)
    return scenarios, memory, server.command


def training_server(args, has: set[str], run, requests: list[Request], counts: dict) -> tuple[list[dict], list[str]]:
    """A ``--workers 1`` server: the drawn digit idle, then while its Train tab trains."""
    server = Server(args.model, server_options(args, has, workers="1"), TOKEN)
    try:
        print(f"server: {' '.join(server.command)}", flush=True)
        run(server, requests, 200)  # warm-up, not counted
        idle = measure(run, server, "idle", requests, counts["idle"])
        start_training(server, args.train_epochs)
        training = measure(run, server, "training", requests, counts["training"])
        with urllib.request.urlopen(server.url + "/api/train", timeout=60) as answer:
            training["training_ran_throughout"] = json.load(answer)["state"] == "running"
        post(server, "/api/train/stop", {})
    finally:
        server.stop()
    return [idle, training], server.command


def target(what: str, measured: str, goal: str, met: bool | None) -> dict:
    """One target's row (benchmarks/targets.py's shape), printed; ``met`` None: not checked."""
    verdict = "not checked" if met is None else "met" if met else "MISSED"
    print(f"{what}: {measured}  (target {goal}: {verdict})", flush=True)
    return {"what": what, "measured": measured, "target": goal, "met": met}


def check_targets(by_name: dict[str, dict], memory: dict) -> list[dict]:
    digit, canvas, photo = by_name["digit28"], by_name["canvas280"], by_name["photo900"]
    idle, training = by_name["idle"], by_name["training"]
    ratio = training["p99_ms"] / max(idle["p99_ms"], 1e-9)
    failed = sum(s["5xx"] for s in by_name.values())
    dropped = sum(s["socket_errors"] for s in by_name.values())
    enough = memory["requests"] >= MEMORY_REQUESTS
    return [
        target("drawn 28x28: requests/s", f"{digit['requests_per_second']:,.0f}", ">= 600",
               digit["requests_per_second"] >= 600),
        target("drawn 28x28: p99", f"{digit['p99_ms']:.1f} ms", "<= 40 ms", digit["p99_ms"] <= 40),
        target("280x280 canvas: requests/s", f"{canvas['requests_per_second']:,.0f}", ">= 300",
               canvas["requests_per_second"] >= 300),
        target("900-px photo: requests/s", f"{photo['requests_per_second']:,.0f}", ">= 200",
               photo["requests_per_second"] >= 200),
        target("900-px photo: p99", f"{photo['p99_ms']:.1f} ms", "<= 150 ms", photo["p99_ms"] <= 150),
        target("p99 while training, of idle's (--workers 1)",
               f"{ratio:.2f}x ({training['p99_ms']:.1f} / {idle['p99_ms']:.1f} ms)", "<= 1.5x",
               ratio <= 1.5 if training.get("training_ran_throughout", True) else None),  # else: it ended early
        target("5xx answers and dropped connections", f"{failed} and {dropped}", "none", failed + dropped == 0),
        target("server memory growth", f"{memory['growth_mb']:+.1f} MB after {memory['requests']:,} requests",
               f"<= +{MEMORY_BOUND_MB} MB after {MEMORY_REQUESTS:,}",
               memory["growth_mb"] <= MEMORY_BOUND_MB if enough else None),
    ]


def model_served(args: argparse.Namespace, folder: str) -> tuple[str | None, str]:
    """The model argument for ``cnnlab serve`` (None: the bundled reader) and how it is described."""
    if args.model == "reader":
        return None, "the handwriting reader that ships with cnnlab (cnn-wide-x3)"
    if args.model:
        return args.model, args.model
    run = str(Path(folder) / "default")
    print("training the README's default model (cnnlab train --seed 0) to serve ...", flush=True)
    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--seed", "0", "--out", run],
                   check=True, stdout=subprocess.DEVNULL)
    return run, "make run's model (cnnlab train --seed 0: cnn-fast on MNIST)"


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnlab-load-model-") as folder:
        args.model, served = model_served(args, folder)
        measure_all(args, served)


def measure_all(args: argparse.Namespace, served: str) -> None:
    counts = QUICK if args.quick else COUNTS
    generator = pick_generator(args.generator)
    described = f"{generator_version(generator)}, {args.clients} concurrent connections"
    print(f"generator: {described}", flush=True)

    def run(server: Server, requests: list[Request], count: int, seconds: float | None = None) -> dict:
        # ab sends one request over and over: the mix, with its malformed bodies, goes by Python clients
        name = "python" if generator == "ab" and any(r.malformed for r in requests) else generator
        return GENERATORS[name](server, requests, count, args.clients, seconds or args.seconds)

    images = load_dataset("mnist", val_split=0.0).test_images.numpy()
    requests = scenario_requests(images, args.seed, args.variety)
    has = serve_options()
    scenarios, memory, command = main_server(args, has, run, requests, counts)
    scenarios += (more := training_server(args, has, run, requests["digit28"], counts))[0]
    for scenario in scenarios[1:5]:
        print(f"{scenario['what']}: {100 * scenario['share_of_healthz']:.1f}% of /healthz's requests/s")
    rows = check_targets({s["scenario"]: s for s in scenarios}, memory)
    checked = [row for row in rows if row["met"] is not None]
    quick = " (a --quick run: small counts, not a measurement)" if args.quick else ""
    print(f"{sum(row['met'] for row in checked)} of {len(checked)} targets met{quick}")
    data = results_file("python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), scenarios)
    data.pop("dataset")
    def shown(command: list[str]) -> str:  # a temporary folder's name says nothing: the model is described
        return " ".join("RUN" if word == args.model else word for word in command)

    data.update(quick=args.quick, model=served, generator=described, generator_name=generator,
                server=shown(command), training_server=shown(more[1]), memory=memory, targets=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, (json.dumps(data, indent=1) + "\n").encode())
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
