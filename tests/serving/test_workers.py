"""``cnnlab serve`` as its users run it, in processes of its own: several workers sharing the port
and its connections, their metrics summed, an access log, 503 past the queue's bound, and a
shutdown that drains."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest

from cnnlab.using.prediction import png_bytes
from tests.helpers import free_port, wait_until_up

REQUESTS = 24


@pytest.fixture(scope="module")
def drawn(mnist) -> bytes:
    """A drawn digit as the page sends it: JSON with the PNG in base64."""
    return json.dumps({"image": base64.b64encode(png_bytes(255 - mnist.test_images[0].numpy())).decode()}).encode()


def start(run, port: int, *options: str, log=subprocess.DEVNULL) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port), *options],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    wait_until_up(f"http://127.0.0.1:{port}/readyz", process)
    return process


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def post(port: int, body: bytes) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/api/predict", content=body,
                      headers={"content-type": "application/json"}, timeout=30)


def test_workers_share_the_port_report_together_and_refuse_past_the_queue(mnist_run, drawn, tmp_path):
    port = free_port()
    log = (tmp_path / "access.log").open("w")
    process = start(mnist_run, port, "--workers", "2", "--max-queue", "1", "--access-log", "json", log=log)
    try:
        facts = httpx.get(f"http://127.0.0.1:{port}/api/model").json()
        assert facts["training"] is False and "--workers 1" in facts["training_note"]
        assert httpx.post(f"http://127.0.0.1:{port}/api/train", json={}).status_code in (401, 404)
        with ThreadPoolExecutor(REQUESTS) as pool:
            replies = list(pool.map(lambda _: post(port, drawn), range(REQUESTS)))
        statuses = [r.status_code for r in replies]
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        for reply in replies:
            if reply.status_code == 503:
                assert reply.headers["retry-after"] == "1" and "--max-queue" in reply.json()["error"]
            else:
                assert reply.json()["label"] == "7"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        counted = re.findall(r'cnnlab_requests_total\{[^}]*route="/api/predict"[^}]*status="(\d+)"[^}]*\} (\S+)',
                             metrics)
        by_status = {status: float(count) for status, count in counted}
        assert by_status == {"200": statuses.count(200), "503": statuses.count(503)}  # both workers' counts
        assert re.search(r'cnnlab_model_info\{[^}]*architecture="cnn-fast"[^}]*\} 1', metrics)
        assert float(re.search(r"cnnlab_batch_size_count (\S+)", metrics).group(1)) >= 1
    finally:
        assert stop(process) == 0
        log.close()
    lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines() if line.startswith("{")]
    predicted = [line for line in lines if line["route"] == "/api/predict"]
    assert sorted(line["status"] for line in predicted) == sorted(statuses)


def test_shutdown_answers_the_request_under_way(mnist_run, drawn):
    port = free_port()
    process = start(mnist_run, port, "--workers", "1", "--no-train")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(drawn)}\r\n\r\n").encode()
        connection.sendall(head + drawn[:100])
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)  # Ctrl-C while the request's body is still arriving
        time.sleep(0.5)
        connection.sendall(drawn[100:])
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["label"] == "7"
    assert process.wait(timeout=20) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def sockets_on(port: int, state: str) -> dict[int, int]:
    """The TCP sockets on ``port`` (this machine's side) in ``state`` (/proc/net/tcp's hex: 01 established,
    0A listening), as inode -> the process holding it."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    holders = {}
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            holders[int(target[8:-1])] = int(fd.parts[2])
    return holders


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT spreads only on Linux")
def test_connections_opened_at_once_are_spread_over_the_workers(mnist_run):
    """Each worker listens on a socket of its own, so 16 keep-alive connections opened at once are
    hashed over both workers, not all accepted by whichever woke first (with one shared socket, 2
    of 5 such openings went all to one worker). Both get at least 2: a split this uneven or worse
    comes by chance once in 2,000 openings."""
    port = free_port()
    process = start(mnist_run, port, "--workers", "2", "--no-train")
    try:
        deadline = time.monotonic() + 30
        while len(set(sockets_on(port, "0A").values())) < 2:  # the second worker may still be starting
            assert time.monotonic() < deadline, "the two workers did not both listen within 30 s"
            time.sleep(0.2)
        connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
        try:
            for connection in connections:
                connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert all(c.recv(4096).startswith(b"HTTP/1.1 200") for c in connections)
            held = sockets_on(port, "01")
            workers = set(sockets_on(port, "0A").values())
            per_worker = [sum(1 for pid in held.values() if pid == worker) for worker in workers]
        finally:
            for connection in connections:
                connection.close()
        assert len(per_worker) == 2 and sum(per_worker) == 16 and min(per_worker) >= 2, per_worker
    finally:
        assert stop(process) == 0
