"""The requests benchmarks/serve_load.py sends, each made once, as the raw bytes of an HTTP/1.1
request (what wrk sends) or its parts (what the Python clients send).

Every image comes from an MNIST *test* digit: as a 28x28 PNG a page would send after scaling its
drawing down, as a 280x280 canvas (black strokes on white), as a phone's 900-px-wide JPEG of the
digit on paper (tests/photolike.py's rendering, scaled up), and the old mix of photos, drawings,
numbers and 5% malformed bodies.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.photolike import compose_number, render_photo


@dataclass(frozen=True)
class Request:
    """One request; ``malformed``: a body the server must refuse with a 4xx."""

    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None
    malformed: bool = False

    def raw(self, host: str) -> bytes:
        """The request as it goes on the wire, on a keep-alive HTTP/1.1 connection to ``host``."""
        head = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        if self.content_type:
            head.append(f"Content-Type: {self.content_type}")
        if self.method != "GET":
            head.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body

    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


def as_json(image: bytes, query: str = "", malformed: bool = False) -> Request:
    """``image`` POSTed to /api/predict as the JSON body ``{"image": "<base64>"}``."""
    body = json.dumps({"image": base64.b64encode(image).decode()}).encode()
    return Request("POST", "/api/predict" + query, body, "application/json", malformed)


def as_upload(image: bytes, name: str, query: str = "", malformed: bool = False) -> Request:
    """``image`` POSTed to /api/predict as a multipart upload named ``file``."""
    boundary = "cnnlab-load-" + base64.b16encode(name.encode()).decode()[:16]
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return Request("POST", "/api/predict" + query, body, f"multipart/form-data; boundary={boundary}", malformed)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def small_digit(ink: np.ndarray) -> bytes:
    """An MNIST digit as a page sends it scaled down: 28x28, grey, black ink on white."""
    return png(Image.fromarray(255 - ink, "L"))


def canvas_drawing(ink: np.ndarray) -> bytes:
    """An MNIST digit drawn on the page's 280x280 canvas: black strokes, anti-aliased, on white, RGB."""
    big = np.asarray(Image.fromarray(ink, "L").resize((280, 280), Image.Resampling.BILINEAR), np.float32)
    strokes = np.clip((big - 64) * 3, 0, 255).astype(np.uint8)  # a pen's hard edge, not a blurred upscale
    return png(Image.fromarray(255 - strokes, "L").convert("RGB"))


def phone_photo(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    """A phone's photo of a handwritten digit: tests/photolike.py's paper, light and noise, 900 px
    wide, JPEG at quality 85."""
    photo = Image.open(io.BytesIO(render_photo(ink, rng, height=int(rng.integers(400, 700))))).convert("RGB")
    photo = photo.resize((900, max(1, round(photo.height * 900 / photo.width))), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def malformed(rng: np.random.Generator, good: bytes) -> Request:
    """A body the server must refuse (4xx): random bytes, a cut image, bad JSON or bad base64."""
    kind = int(rng.integers(4))
    if kind == 0:
        return as_upload(rng.bytes(int(rng.integers(1, 5000))), "noise.png", malformed=True)
    if kind == 1:
        return as_upload(good[: len(good) // 3], "cut.png", malformed=True)
    if kind == 2:
        return Request("POST", "/api/predict", b'{"image": ', "application/json", malformed=True)
    return Request("POST", "/api/predict", b'{"image": "***not base64***"}', "application/json", malformed=True)


def mixed(images: np.ndarray, rng: np.random.Generator, count: int) -> list[Request]:
    """The old load benchmark's mix: 40% canvas drawings, 40% photos 20-300 px tall (JPEG or PNG, as
    JSON or an upload), 15% photos of numbers of 3-5 digits (``?number=true``), 5% malformed."""
    requests = []
    for _ in range(count):
        roll, ink = rng.random(), images[int(rng.integers(len(images)))]
        if roll < 0.05:
            requests.append(malformed(rng, canvas_drawing(ink)))
        elif roll < 0.45:
            requests.append(as_upload(canvas_drawing(ink), "drawing.png"))
        elif roll < 0.85:
            photo = render_photo(ink, rng)
            requests.append(as_json(photo) if rng.random() < 0.5 else as_upload(photo, "photo.jpg"))
        else:
            digits = [images[i] for i in rng.choice(len(images), int(rng.integers(3, 6)), replace=False)]
            requests.append(as_upload(render_photo(compose_number(digits, rng), rng), "number.jpg", "?number=true"))
    return requests


def scenario_requests(images: np.ndarray, seed: int, variety: int) -> dict[str, list[Request]]:
    """Each scenario's requests (``variety`` different ones, sent round-robin; a quarter as many
    900-px photos, which take long to make), from the MNIST test images ``images`` (uint8, ink bright)."""
    rng = np.random.default_rng(seed)
    picks = [images[i] for i in rng.choice(len(images), variety, replace=False)]
    return {"healthz": [Request("GET", "/healthz")],
            "digit28": [as_json(small_digit(ink)) for ink in picks],
            "canvas280": [as_json(canvas_drawing(ink)) for ink in picks],
            "photo900": [as_json(phone_photo(ink, rng)) for ink in picks[: max(1, variety // 4)]],
            "mixed": mixed(images, rng, 4 * variety)}
