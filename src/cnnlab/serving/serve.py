"""``cnnlab serve``: a draw-a-digit web page and a JSON prediction API over one trained model.

    GET  /              the page (canvas, upload, live prediction, bars, the 28x28 the network saw)
    GET  /static/...    its script and style sheet: every asset is served here, nothing external
    POST /api/predict   an image as multipart ``file`` or JSON ``{"image": "<base64>"}``; ``?number=true``
    POST /api/explain   the same body: the answer, a heatmap of the pixels that decided it (``?method=``)
                        and every layer's activations (cnnlab.serving.explain_api)
    GET  /api/model     the model's facts
    GET  /healthz       liveness
    GET  /docs          OpenAPI documentation (Swagger UI, its assets served here too: it works offline)

Images go through the same preprocessing as ``cnnlab predict`` (cnnlab.predict.preprocess_source).
Errors are JSON ``{"error": message}``: 413 for a body over the upload limit or an image that
claims too many pixels, 415 for a body that is not an image, 400 for malformed JSON or base64,
408 for a request that arrives too slowly, 422 for an image with nothing to read (no ink, too many
marks). Who may do what (the token, ``Host`` and origin checks) is cnnlab.serving.access; the
bounds on bodies and on concurrent uploads are cnnlab.serving.bodies and cnnlab.serving.uploads.
"""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from cnnlab.errors import CnnlabError, require
from cnnlab.explanation import explain_image
from cnnlab.models.attribution import METHODS, has_conv
from cnnlab.models.files import ModelInfo, load_model
from cnnlab.models.registry import count_parameters
from cnnlab.predict import class_probabilities, photo_probabilities, preprocess_source, preprocessing, uses_digit_steps
from cnnlab.reader import READER
from cnnlab.serving.access import (
    MIN_TOKEN_LENGTH,
    TOKEN_ENV,
    Access,
    AccessMiddleware,
    SecurityHeadersMiddleware,
    is_loopback,
    make_token,
)
from cnnlab.serving.api_error import ApiError, add_error_handlers
from cnnlab.serving.bodies import Bodies, BodyLimits, image_bytes, image_kind
from cnnlab.serving.connections import protocol_with_head_deadline
from cnnlab.serving.explain_api import explain_json, png_base64
from cnnlab.serving.train_routes import TrainPlace, add_train_routes
from cnnlab.serving.uploads import UploadGate, return_freed_buffers

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 5.0
MAX_UPLOAD_MB = 1024.0  # a bound on the bound: the bodies held at once are 16 times it (cnnlab.serving.bodies)


PREDICT_BODY = {  # the two request forms, for the OpenAPI page (the handler reads the body itself)
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary", "description": "PNG, JPEG, BMP, GIF, TIFF or WebP"}}}},
        "application/json": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "description": "the image file's bytes in base64 (a data: URL is fine)"}}}},
    },
}


@dataclass(frozen=True)
class Served:
    """The model the app answers with, and its facts (``GET /api/model``). The Train tab replaces
    the whole of it when a training finishes; a request under way keeps the one it started with."""

    model: torch.nn.Module
    info: ModelInfo
    facts: dict[str, Any]
    # A copy for /api/explain: its layer hooks must see only its own passes, never those that
    # reading a number makes on ``model`` meanwhile (they run outside the forward lock).
    inspected: torch.nn.Module

    @classmethod
    def load(cls, model_path: str | Path) -> Served:
        model, info = load_model(model_path)
        facts = {"name": Path(model_path).resolve().name, "architecture": info.architecture,
                 "dataset": info.dataset, "classes": info.class_names, "image_size": info.image_size,
                 "test_accuracy": info.test_accuracy, "parameters": count_parameters(model),
                 "channels": info.in_channels, "drawing": uses_digit_steps(info), "preprocessing": preprocessing(info),
                 "methods": [m for m in METHODS if m != "gradcam" or has_conv(model)]}
        return cls(model, info, facts, copy.deepcopy(model).eval())


class Answers:
    """What the API answers, with the served model (which the Train tab may replace) and one
    forward pass at a time: torch already uses every core for one."""

    def __init__(self, model_path: str | Path) -> None:
        self.served = Served.load(model_path)
        self.forward = threading.Lock()

    def predict(self, data: bytes, number: bool) -> dict[str, Any]:
        served = self.served  # one model for the whole request, even if the Train tab replaces it meanwhile
        model, info = served.model, served.info
        digits = preprocess_source(data, info, number, name="the image", model=model)
        with self.forward:
            digits, probabilities = photo_probabilities(model, info, digits)
        return describe(digits, probabilities.tolist(), info.class_names, number)

    def explain(self, data: bytes, method: str) -> dict[str, Any]:
        served = self.served
        model, info, methods = served.model, served.info, served.facts["methods"]
        if method not in methods:
            raise ApiError(400, f"unknown method '{method}' for this model: use one of {', '.join(methods)}")
        image = preprocess_source(data, info, name="the image", model=model)[0]
        with self.forward:
            # The answer as /api/predict gives it (with the shifts); the maps explain its class.
            probabilities = class_probabilities(model, info, torch.from_numpy(image[None].copy()), tta=True)[0]
            answer = int(probabilities.argmax())
            explained = explain_image(served.inspected, info, "the image", image, (method,), answer)
        explained.label, explained.confidence = info.class_names[answer], round(float(probabilities[answer]), 6)
        explained.probabilities = {c: round(float(p), 6) for c, p in zip(info.class_names, probabilities, strict=True)}
        return explain_json(explained, method, info.class_names)


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs: ``cnnlab serve``'s options.

    Attributes:
        host, port: where it listens; loopback unless ``host`` says otherwise.
        max_upload_mb: request bodies larger than this many megabytes get 413.
        runs: the folder for the Train tab's run directories.
        token: the token that requests changing the server's state must carry; None: one is made
            when the app is made (``app.state.token``).
        train: whether the Train tab and its routes exist.
        allowed_hosts: names accepted in the ``Host`` header besides loopback's and ``host``.
        header_seconds, body_seconds: how long a request's head, and then its body, may take to arrive.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    runs: Path = Path("runs")
    token: str | None = None
    train: bool = True
    allowed_hosts: tuple[str, ...] = ()
    header_seconds: float = 10.0
    body_seconds: float = 60.0

    def page_url(self) -> str:
        """The page's address, without the token."""
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}/"

    def check(self) -> None:
        """Raise :class:`CnnlabError` naming the first setting that cannot be served with."""
        require(1 <= self.port <= 65535, f"--port must be 1-65535, got {self.port}")
        require(0 < self.max_upload_mb <= MAX_UPLOAD_MB, f"--max-upload-mb must be more than 0 and at most "
                f"{MAX_UPLOAD_MB:g}, got {self.max_upload_mb:g}")
        for option, seconds in (("--header-timeout", self.header_seconds), ("--body-timeout", self.body_seconds)):
            require(0 < seconds <= 3600, f"{option} must be between 0 and 3600 seconds, got {seconds:g}")
        require(self.token is None or (self.token.isascii() and self.token.isprintable() and " " not in self.token),
                f"--token (or ${TOKEN_ENV}) must be ASCII letters, digits and punctuation only: no spaces, control "
                "characters or accents, which a request's header cannot carry as they are; leave it out and one "
                "is made")
        require(self.token is None or len(self.token) >= MIN_TOKEN_LENGTH,
                f"--token (or ${TOKEN_ENV}) must be at least {MIN_TOKEN_LENGTH} characters, so that it cannot be "
                "guessed; leave it out and one is made")
        runs = Path(self.runs)
        require(not runs.exists() or runs.is_dir(), f"--runs {runs}: exists and is not a folder; give a folder")


def create_app(model_path: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The web app for the model saved at ``model_path`` (a run directory or its ``model.safetensors``),
    behind the access checks of cnnlab.serving.access: ``Host`` must name this machine (the
    TestClient's default ``http://testserver`` does not: give it ``base_url="http://127.0.0.1"``),
    and requests that change the server need ``settings.token`` (made here when None: ``app.state.token``)."""
    settings = settings or ServeSettings()
    settings.check()  # the same refusals for Python's callers as for cnnlab serve's options
    token = settings.token or make_token()
    answers = Answers(model_path)
    bodies = Bodies(BodyLimits(settings.max_upload_mb, settings.body_seconds))
    # Preprocessing is CPU-bound: one worker per core. More threads would only queue inside the
    # CPU, and each would hold its own malloc arena (a 40-thread pool grew the server by 280 MB).
    workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="cnnlab-predict")
    gate = UploadGate()

    # FastAPIOffline: /docs with Swagger UI's script and styles served by the app, not fetched from a CDN.
    first = answers.served
    app = FastAPIOffline(title="cnnlab", description=f"Predictions of {first.facts['name']} "
                         f"({first.info.architecture}){', and a Train tab' if settings.train else ''}", version="1")
    app.state.token = token
    guard(app, Access(token, settings.host, settings.allowed_hosts, settings.page_url()))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/model")
    def model_facts() -> dict[str, Any]:
        """The served model's facts, and ``training``: whether this server has the Train tab."""
        return {**answers.served.facts, "training": settings.train}

    async def answer(request: Request, work: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
        kind = image_kind(request)
        async with bodies.held(request) as body:  # read at once, each byte held in the budget until answered
            data = await image_bytes(request, kind, body)
            return await asyncio.get_running_loop().run_in_executor(workers, gate.run, work, data)

    @app.post("/api/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, number: bool = False) -> dict[str, Any]:
        """Read one digit (or, with ``number=true``, a number of several digits) from an image."""
        return await answer(request, lambda data: answers.predict(data, number))

    @app.post("/api/explain", openapi_extra={"requestBody": PREDICT_BODY})
    async def explain(request: Request, method: str = "integrated-gradients") -> dict[str, Any]:
        """Read one image, and show why: a heatmap of the pixels that decided (``method``: saliency,
        integrated-gradients, occlusion or gradcam) and every conv and dense layer's activations."""
        return await answer(request, lambda data: answers.explain(data, method))

    def serve_new_model(run: Path) -> None:
        answers.served = Served.load(run)

    if settings.train:
        add_train_routes(app, TrainPlace(Path(settings.runs), bodies), lambda: answers.served.info, serve_new_model)
    return app


def guard(app: FastAPI, access: Access) -> None:
    """Put the access checks in front of every route, and the security headers on every answer
    (their refusals' too)."""
    app.add_middleware(AccessMiddleware, access=access)
    app.add_middleware(SecurityHeadersMiddleware)  # added last: it runs first, outside the checks


def describe(digits: list[np.ndarray], probabilities: list[list[float]], classes: list[str],
             number: bool) -> dict[str, Any]:
    """The JSON answer: label, confidence, probabilities (class -> p) and the preprocessed PNG;
    for a number, ``number`` and one such entry per digit under ``digits``."""
    entries = [{"label": classes[int(np.argmax(p))], "confidence": round(max(p), 6),
                "probabilities": {c: round(v, 6) for c, v in zip(classes, p, strict=True)},
                "preprocessed": png_base64(image)} for image, p in zip(digits, probabilities, strict=True)]
    if not number:
        return entries[0]
    return {"number": "".join(e["label"] for e in entries),
            "confidence": round(float(np.prod([e["confidence"] for e in entries])), 6),
            "preprocessed": png_base64(np.concatenate(digits, axis=1)), "digits": entries}


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`CnnlabError` when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise CnnlabError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
                          ) from None


def serve(model_path: str | Path, settings: ServeSettings | None = None) -> None:
    """Run the app on uvicorn until Ctrl-C, printing its URL with the token (made here unless
    ``settings.token`` gives one), and a warning when it listens beyond this machine."""
    import uvicorn

    settings = settings or ServeSettings()
    settings.check()
    made = settings.token is None
    settings = replace(settings, token=settings.token or make_token())
    return_freed_buffers()  # the memory ceiling for uploads holds for this process (cnnlab.serving.uploads)
    app = create_app(model_path, settings)
    check_port_free(settings.host, settings.port)
    served = "the handwriting reader" if Path(model_path).resolve() == READER else Path(model_path)
    shown, note = (settings.token, "") if made else ("...", f"the token of --token or ${TOKEN_ENV}; ")
    print(f"Serving {served} at {settings.page_url()}?token={shown}  ({note}API docs at /docs; Ctrl-C to stop)",
          flush=True)
    if not is_loopback(settings.host):
        changes = "changes (the Train tab) need the token in the URL above" if settings.train else (
            "nothing can change it (--no-train)")
        print(f"warning: listening on {settings.host}, reachable from the network: predictions are open to anyone "
              f"who reaches it; {changes}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                http=protocol_with_head_deadline(settings.header_seconds))
