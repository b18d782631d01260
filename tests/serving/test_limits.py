"""The bounds of a live ``cnnlab serve`` (a process of its own on a free loopback port): request
heads and bodies that trickle in are cut off (--header-timeout, --body-timeout), and uploads sent
all at once stay under the stated memory ceiling (cnnlab.serving.uploads.memory_ceiling), each
answered or refused cleanly."""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from cnnlab.serving.uploads import MAX_BODIES, memory_ceiling
from tests.helpers import free_port, wait_until_up

SECONDS = 1  # the server's --header-timeout and --body-timeout here
UPLOAD_MB = 1  # its --max-upload-mb
PATIENCE = 10  # how long a test waits for the server to act before it fails


@pytest.fixture(scope="module")
def server(mnist_run):
    """`cnnlab serve` with short deadlines; yields (host, port, process)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(mnist_run), "--port", str(port),
                                "--workers", "1",
                                "--no-train", "--header-timeout", str(SECONDS), "--body-timeout", str(SECONDS),
                                "--max-upload-mb", str(UPLOAD_MB)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        yield "127.0.0.1", port, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def everything_until_closed(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a test failure if it has not in PATIENCE s)."""
    connection.settimeout(PATIENCE)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {PATIENCE} s; it sent {received!r}")
    return received


def json_error(reply: bytes, status: int) -> str:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply
    return json.loads(body)["error"]


def test_a_connection_that_sends_nothing_is_closed(server):
    host, port, _ = server
    with socket.create_connection((host, port)) as connection:
        assert everything_until_closed(connection) == b""


def test_headers_that_trickle_in_get_408_and_the_connection_closed(server):
    host, port, _ = server
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode() + b"x" * 1000
    with socket.create_connection((host, port)) as connection:
        for byte in head:  # a byte each 50 ms, until the server speaks: only a deadline can end it
            if select.select([connection], [], [], 0.05)[0]:
                break
            connection.send(bytes([byte]))
        else:
            pytest.fail("the server read 1,000 bytes of headers over 50 s without cutting the connection")
        error = json_error(everything_until_closed(connection), 408)
    assert error == f"the request's headers did not arrive within {SECONDS} s (--header-timeout); send them again"


def test_a_body_that_trickles_in_gets_408_and_the_connection_closed(server):
    host, port, _ = server
    with socket.create_connection((host, port)) as connection:
        connection.sendall(f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
                           "boundary=x\r\nContent-Length: 1000\r\n\r\n--x\r\n".encode())
        error = json_error(everything_until_closed(connection), 408)
    assert error == f"the body did not arrive within {SECONDS} s (--body-timeout); send it again on a faster connection"


def test_bodies_that_trickle_in_do_not_keep_others_waiting(mnist_run):
    """More clients than uploads may be held at once each declare a 1 MB body and send a byte of
    it: with a long --body-timeout they could hold the server for its length. A prediction sent
    meanwhile is answered at once (their bytes are all they hold; nothing waits on them)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(mnist_run), "--port", str(port),
                                "--workers", "1",
                                "--no-train", "--body-timeout", "300", "--max-upload-mb", str(UPLOAD_MB)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trickling = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        for _ in range(MAX_BODIES + 4):
            connection = socket.create_connection(("127.0.0.1", port))
            trickling.append(connection)
            connection.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                               "application/json\r\nContent-Length: 1000000\r\n\r\n{".encode())
        time.sleep(1)  # each is now waiting for the rest of its body
        started = time.monotonic()
        try:
            reply = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("d.png", png(400, False))},
                               timeout=PATIENCE)
        except httpx.TimeoutException:
            pytest.fail(f"a prediction waited over {PATIENCE} s behind {len(trickling)} bodies that trickle in")
        assert reply.status_code == 200 and time.monotonic() - started < PATIENCE / 2, reply.text
    finally:
        for connection in trickling:
            connection.close()
        process.terminate()
        process.wait(timeout=10)


def sent_at_once(host: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((host, port)) as connection:
        connection.sendall(request)
        return everything_until_closed(connection)


HEAD_LIMIT = "the request line and headers are over the limit of 16 KB; send fewer or shorter headers"


@pytest.mark.parametrize("header", [b"X-Big: " + b"a" * 60_000, b"X-Big: " + b"a" * 120_000,
                                    b"X-Pad:" + b" " * 20_000 + b"v",  # whitespace that h11 strips counts too
                                    b"\r\n".join(b"X-%d: v" % i for i in range(3000))])
def test_a_head_over_16_kb_is_431_however_it_arrives(server, header):
    host, port, _ = server
    head = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n".encode() + header + b"\r\n\r\n"
    reply = sent_at_once(host, port, head)  # in one piece
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert json_error(reply, 431) == HEAD_LIMIT
    with socket.create_connection((host, port)) as connection:  # in two, the second completing it
        connection.sendall(head[:10_000])
        time.sleep(0.2)
        connection.sendall(head[10_000:])
        assert json_error(everything_until_closed(connection), 431) == HEAD_LIMIT


def test_a_large_head_pipelined_behind_a_small_request_is_431(server):
    host, port, _ = server
    small = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    large = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Big: ".encode() + b"a" * 60_000 + b"\r\n\r\n"
    first, _, rest = sent_at_once(host, port, small + large).partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ") and json_error(rest, 431) == HEAD_LIMIT


def test_a_head_that_arrives_a_piece_at_a_time_past_16_kb_is_431_and_a_malformed_one_400(server):
    host, port, _ = server
    with socket.create_connection((host, port)) as connection:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Big: ".encode())
        for _ in range(5):
            connection.sendall(b"a" * 4000)
            time.sleep(0.05)
        assert json_error(everything_until_closed(connection), 431) == HEAD_LIMIT
    reply = sent_at_once(host, port, b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    malformed = json_error(reply, 400)
    assert malformed == "the request is not valid HTTP/1.1 (its request line or headers); send a well-formed one"


def output_so_far(process: subprocess.Popen) -> str:
    """What the server has printed so far (stdout and stderr), read without waiting for more."""
    printed = b""
    while select.select([process.stdout], [], [], 0.5)[0] and (chunk := os.read(process.stdout.fileno(), 65536)):
        printed += chunk
    return printed.decode(errors="replace")


def test_a_client_that_hangs_up_mid_body_is_let_go_without_a_traceback(server):
    host, port, process = server
    output_so_far(process)
    for path in ("/api/predict", "/api/explain"):
        with socket.create_connection((host, port)) as connection:
            connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                               "Content-Length: 1000\r\n\r\n{\"image\":\"".encode())
            time.sleep(0.2)
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    printed = output_so_far(process)
    assert "Traceback" not in printed and "Exception" not in printed, printed


def test_a_healthy_connection_serves_one_request_after_another(server):
    host, port, _ = server
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        for _ in range(3):
            assert client.get("/healthz").json() == {"status": "ok"}


def png(side: int, transparent: bool) -> bytes:
    """A ``side`` x ``side`` PNG of one stroke: on a transparent canvas, or black on white."""
    stroke = (slice(side // 4, 3 * side // 4), slice(side // 2 - side // 40, side // 2 + side // 40))
    if transparent:
        pixels = np.zeros((side, side, 4), np.uint8)
        pixels[(*stroke, 3)] = 255
    else:
        pixels = np.full((side, side), 255, np.uint8)
        pixels[stroke] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def memory_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":"))) / 1024


def test_uploads_at_once_stay_under_the_stated_memory_ceiling(server):
    """Eight 7,999x7,999 PNGs of about 75 KB (64 megapixels each: 590 MB apiece were they decoded
    whole), and three 4,000x4,000 ones with transparency, which are decoded (about 290 MB each), all
    sent at once: each is answered or refused cleanly, and the server's peak stays under the ceiling."""
    host, port, process = server
    huge, large = png(7999, False), png(4000, True)
    assert len(huge) < 100_000 and len(large) < 100_000
    url = f"http://{host}:{port}/api/predict"

    def send(image: bytes) -> httpx.Response:
        return httpx.post(url, files={"file": ("upload.png", image)}, timeout=120)

    send(png(400, False))  # lazy imports and first buffers, before the server at rest is measured
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # its peak (VmHWM) starts again from here
    at_rest = memory_mb(process.pid, "VmRSS")
    with ThreadPoolExecutor(11) as clients:
        replies = list(clients.map(send, [huge] * 8 + [large] * 3))
    peak = memory_mb(process.pid, "VmHWM")
    statuses = [reply.status_code for reply in replies]
    assert statuses[:8] == [413] * 8 and all("megapixels" in reply.json()["error"] for reply in replies[:8])
    assert statuses[8:] == [200] * 3, [reply.text[:200] for reply in replies[8:]]
    ceiling = memory_ceiling(UPLOAD_MB) / 2**20
    assert peak - at_rest < ceiling, f"the server grew by {peak - at_rest:.0f} MB; the ceiling is {ceiling:.0f} MB"
