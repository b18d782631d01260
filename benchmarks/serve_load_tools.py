"""The server and the load generators of benchmarks/serve_load.py.

:class:`Server` runs ``python -m cnnlab serve`` in its own process on a free loopback port and
reads its processes' memory and CPU from /proc (the uvicorn parent and every process under it:
its workers, and the Train tab's training). The generators send a list of requests round-robin
over ``clients`` keep-alive connections until ``count`` answers or ``seconds`` have passed, and
return the same figures: ``wrk`` (C, with the Lua script below; its latency histogram corrects
for coordinated omission), else ``ab -k`` (one body per run; h11 closes an HTTP/1.0 connection
after each answer, so it is not kept alive), else ``clients`` Python processes with one
http.client connection each. Each reports its own CPU use, to show it was not the bottleneck.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.serve_load_bodies import Request

PASSED_ON = ("--workers", "--max-batch", "--batch-wait-ms", "--max-queue", "--access-log")
TICKS = os.sysconf("SC_CLK_TCK")

# Sends the raw requests in files DIR/0 .. DIR/N-1 round-robin, counts each status, and stops each
# thread after LIMIT answers, saying so on stdout (wrk itself waits out -d; the caller then ends it).
WRK_SCRIPT = """
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  local dir = args[1]
  count, limit = tonumber(args[2]), tonumber(args[3])
  bodies, statuses, answered, turn = {}, {}, 0, id
  for i = 0, count - 1 do
    local f = assert(io.open(dir .. "/" .. i, "rb"))
    bodies[i + 1] = f:read("*a")
    f:close()
  end
end
function request()
  turn = turn % count + 1
  return bodies[turn]
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
  if answered == limit then
    io.write("STOPPED\\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local sums, counts = {}, {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do sums[status] = (sums[status] or 0) + n end
  end
  for status, n in pairs(sums) do counts[#counts + 1] = string.format('"%d": %d', status, n) end
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "microseconds": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "statuses": {%s}}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, table.concat(counts, ", ")))
end
"""


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    children = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children[tree[-1]]
    return tree


def proc_field(pid: int, read) -> float:
    try:
        return read(pid)
    except (OSError, IndexError, ValueError):
        return 0.0  # gone meanwhile


def resident_mb(pid: int) -> float:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def serve_options() -> set[str]:
    """The options this checkout's ``cnnlab serve`` has."""
    text = subprocess.run([sys.executable, "-m", "cnnlab", "serve", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}).stdout
    return set(re.findall(r"--[a-z][a-z-]+", text))


class Server:
    """``python -m cnnlab serve MODEL OPTIONS`` on a free 127.0.0.1 port, the token in $CNNLAB_TOKEN."""

    def __init__(self, model: str | None, options: list[str], token: str) -> None:
        self.runs = tempfile.mkdtemp(prefix="cnnlab-load-runs-")
        self.log = tempfile.NamedTemporaryFile(prefix="cnnlab-load-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.port = free_port()
        self.url, self.host = f"http://127.0.0.1:{self.port}", f"127.0.0.1:{self.port}"
        served = [model] if model else []  # none: the handwriting reader that ships with cnnlab
        self.command = ["cnnlab", "serve", *served, *options]
        self.process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", *served, "--port", str(self.port),
                                         "--runs", self.runs, *options], stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "CNNLAB_TOKEN": token})
        try:
            self.wait_for("/healthz")
            self.wait_for("/readyz", missing_is_ready=True)
        except BaseException:
            self.stop()
            raise

    def wait_for(self, path: str, missing_is_ready: bool = False) -> None:
        for _ in range(1200):
            if self.process.poll() is not None:
                raise SystemExit(f"the server stopped: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except urllib.error.HTTPError as error:
                if error.code == 404 and missing_is_ready:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the server did not answer {path} in 2 minutes")

    def processes(self) -> list[int]:
        return process_tree(self.process.pid)

    def resident_mb(self) -> float:
        """Resident memory summed over the server's processes (shared pages counted in each)."""
        return sum(proc_field(pid, resident_mb) for pid in self.processes())

    def cpu_seconds(self) -> float:
        return sum(proc_field(pid, cpu_seconds) for pid in self.processes())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        os.unlink(self.log.name)
        shutil.rmtree(self.runs, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pick_generator(wanted: str) -> str:
    """``wanted`` (wrk, ab or python), or for ``auto`` the first of them that this machine has."""
    if wanted != "auto":
        if wanted != "python" and not shutil.which(wanted):
            raise SystemExit(f"{wanted} is not on PATH")
        return wanted
    return next((tool for tool in ("wrk", "ab") if shutil.which(tool)), "python")


def figures(generator: str, count: int, seconds: float, p50_ms: float, p99_ms: float, statuses: Counter | dict,
            errors: int, cpu: float) -> dict:
    """One run's figures, as every generator returns them."""
    statuses = {int(k): v for k, v in statuses.items()}
    return {"requests": count, "seconds": round(seconds, 2), "requests_per_second": round(count / seconds, 1),
            "p50_ms": round(p50_ms, 1), "p99_ms": round(p99_ms, 1),
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "5xx": sum(v for k, v in statuses.items() if k >= 500), "socket_errors": errors,
            "generator": generator, "generator_cpu_percent": round(100 * cpu / seconds, 1)}


def run_wrk(server: Server, requests: list[Request], count: int, clients: int, seconds: float) -> dict:
    threads = max(1, min(clients, (os.cpu_count() or 1) // 4))
    with tempfile.TemporaryDirectory(prefix="cnnlab-load-wrk-") as folder:
        for i, request in enumerate(requests):
            Path(folder, str(i)).write_bytes(request.raw(server.host))
        Path(folder, "load.lua").write_text(WRK_SCRIPT)
        limit = -(-count // threads)
        process = subprocess.Popen(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
                                    "--timeout", "60s", "-s", str(Path(folder, "load.lua")), server.url, "--",
                                    folder, str(len(requests)), str(limit)], stdout=subprocess.PIPE, text=True)
        lines, stopped = [], 0
        for line in process.stdout:
            lines.append(line)
            stopped += line.strip() == "STOPPED"
            if stopped == threads:
                process.send_signal(signal.SIGINT)  # every thread has its count: end wrk's wait for -d
                stopped = -1
        usage = os.wait4(process.pid, 0)[2]
        process.returncode = 0
    result = next((line for line in lines if line.startswith("RESULT ")), None)
    if result is None:
        raise SystemExit("wrk gave no result:\n" + "".join(lines))
    got = json.loads(result.removeprefix("RESULT "))
    return figures("wrk", got["requests"], got["microseconds"] / 1e6, got["p50_us"] / 1000, got["p99_us"] / 1000,
                   got["statuses"], got["errors"], usage.ru_utime + usage.ru_stime)


def run_ab(server: Server, requests: list[Request], count: int, clients: int, seconds: float) -> dict:
    """ab sends one request over and over: the first of ``requests``."""
    first = requests[0]
    with tempfile.NamedTemporaryFile(prefix="cnnlab-load-ab-") as body:
        body.write(first.body)
        body.flush()
        posting = ["-p", body.name, "-T", first.content_type or "application/octet-stream"] if first.body else []
        # -t before -n: -t alone means 50,000 requests
        process = subprocess.Popen(["ab", "-k", "-q", "-c", str(clients), "-t", str(round(seconds)), "-n", str(count),
                                    "-s", "60", *posting, server.url + first.path], stdout=subprocess.PIPE, text=True)
        text = process.stdout.read()
        usage = os.wait4(process.pid, 0)[2]
        process.returncode = 0

    def number(pattern: str) -> float:
        found = re.search(pattern, text, re.MULTILINE)
        return float(found[1]) if found else 0.0

    done, failed = int(number(r"^Complete requests:\s+(\d+)")), int(number(r"^Failed requests:\s+(\d+)"))
    non_2xx = int(number(r"^Non-2xx responses:\s+(\d+)"))
    statuses = Counter({200: done - non_2xx - failed, 0: non_2xx} if non_2xx else {200: done - failed})
    return {**figures("ab", done, number(r"^Time taken for tests:\s+([\d.]+)"), number(r"^\s+50%\s+(\d+)"),
                      number(r"^\s+99%\s+(\d+)"), statuses, failed, usage.ru_utime + usage.ru_stime),
            "kept_alive": int(number(r"^Keep-Alive requests:\s+(\d+)")),
            "note": "ab counts answers other than 2xx together (status 0 here)"}


def python_client(host: str, port: int, requests: list[Request], offset: int, count: int, start: float,
                  deadline: float) -> tuple:
    """One client: from ``start`` on (monotonic clock), ``count`` requests over one keep-alive
    connection, from ``offset`` in ``requests``, or fewer by ``deadline``."""
    connection, latencies, statuses, errors = http.client.HTTPConnection(host, port, timeout=60), [], Counter(), 0
    time.sleep(max(0.0, start - time.monotonic()))  # every client ready before the first request
    started, cpu = time.monotonic(), time.process_time()
    for i in range(count):
        if time.monotonic() > deadline:
            break
        request = requests[(offset + i) % len(requests)]
        sent = time.perf_counter()
        try:
            connection.request(request.method, request.path, request.body or None, request.headers())
            answer = connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()  # it reconnects on the next request
            continue
        latencies.append(time.perf_counter() - sent)
        statuses[answer.status] += 1
        if answer.will_close:
            connection.close()
    return latencies, statuses, errors, started, time.monotonic(), time.process_time() - cpu


def run_python(server: Server, requests: list[Request], count: int, clients: int, seconds: float) -> dict:
    shares = [count // clients + (i < count % clients) for i in range(clients)]
    with multiprocessing.Pool(clients) as pool:
        start = time.monotonic() + 1
        runs = pool.starmap(python_client, [("127.0.0.1", server.port, requests, i * len(requests) // clients,
                                             shares[i], start, start + seconds) for i in range(clients)], chunksize=1)
    latencies = sorted(x for run in runs for x in run[0])
    statuses = sum((run[1] for run in runs), Counter())
    wall = max(run[4] for run in runs) - min(run[3] for run in runs)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    return figures("python", len(latencies), wall, 1000 * statistics.median(latencies), 1000 * p99, statuses,
                   sum(run[2] for run in runs), sum(run[5] for run in runs))


GENERATORS = {"wrk": run_wrk, "ab": run_ab, "python": run_python}


def generator_version(name: str) -> str:
    if name == "python":
        return f"Python http.client, one process per client (Python {sys.version.split()[0]})"
    if name == "wrk":
        first = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        return first.split(" Copyright")[0].strip() + " with a Lua script"
    version = re.search(r"Version ([\d.]+)", subprocess.run(["ab", "-V"], capture_output=True, text=True).stdout)
    return f"ApacheBench {version[1] if version else ''} (ab -k; the mix by Python http.client processes)"
