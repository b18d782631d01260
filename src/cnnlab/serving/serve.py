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
422 for an image with nothing to read (no ink, too many marks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnlab.errors import CnnlabError
from cnnlab.explanation import explain_image
from cnnlab.handwriting.digit import ImageTooLargeError, UnreadableImageError
from cnnlab.models.attribution import METHODS, has_conv
from cnnlab.models.files import ModelInfo, load_model
from cnnlab.models.registry import count_parameters
from cnnlab.predict import class_probabilities, photo_probabilities, preprocess_source, preprocessing, uses_digit_steps
from cnnlab.reader import READER
from cnnlab.serving.api_error import ApiError
from cnnlab.serving.explain_api import explain_json, png_base64
from cnnlab.serving.train_routes import add_train_routes

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 5.0


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


def create_app(model_path: str | Path, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               runs: str | Path = "runs") -> FastAPI:
    """The web app for the model saved at ``model_path`` (a run directory or its ``model.safetensors``).

    Args:
        max_upload_mb: request bodies larger than this many megabytes get 413.
        runs: the folder for the Train tab's run directories.
    """
    answers = Answers(model_path)
    limit = int(max_upload_mb * 1024 * 1024)
    # Preprocessing is CPU-bound: one worker per core. More threads would only queue inside the
    # CPU, and each would hold its own malloc arena (a 40-thread pool grew the server by 280 MB).
    workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="cnnlab-predict")

    # FastAPIOffline: /docs with Swagger UI's script and styles served by the app, not fetched from a CDN.
    first = answers.served
    app = FastAPIOffline(title="cnnlab", description=f"Predictions of {first.facts['name']} "
                         f"({first.info.architecture}), and a Train tab", version="1")
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
        return answers.served.facts

    @app.post("/api/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, number: bool = False) -> dict[str, Any]:
        """Read one digit (or, with ``number=true``, a number of several digits) from an image."""
        data = await image_bytes(request, limit)
        return await asyncio.get_running_loop().run_in_executor(workers, answers.predict, data, number)

    @app.post("/api/explain", openapi_extra={"requestBody": PREDICT_BODY})
    async def explain(request: Request, method: str = "integrated-gradients") -> dict[str, Any]:
        """Read one image, and show why: a heatmap of the pixels that decided (``method``: saliency,
        integrated-gradients, occlusion or gradcam) and every conv and dense layer's activations."""
        data = await image_bytes(request, limit)
        return await asyncio.get_running_loop().run_in_executor(workers, answers.explain, data, method)

    def serve_new_model(run: Path) -> None:
        answers.served = Served.load(run)

    add_train_routes(app, Path(runs), lambda: answers.served.info, serve_new_model)
    return app


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


async def image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image's bytes, from a multipart ``file`` field or JSON ``{"image": base64}``."""
    body = await read_body(request, limit)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await multipart_file(request, body)
    if kind == "application/json":
        return json_image(body)
    raise ApiError(415, f"send the image as multipart/form-data (field 'file') or JSON {{\"image\": base64}}, "
                        f"not {kind or 'a body without a content type'}")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (declared or not)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the upload is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the upload is over the limit of {limit / 1e6:.1f} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def multipart_file(request: Request, body: bytes) -> bytes:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body ({exc}); send the image in a field named 'file'") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "the multipart body has no file field named 'file'")
        return await upload.read()
    finally:
        await form.close()  # the parser may have spooled a large part to a temporary file


def json_image(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, 'the body is not valid JSON; send {"image": "<base64 PNG or JPEG>"}') from None
    encoded = payload.get("image") if isinstance(payload, dict) else None
    if not isinstance(encoded, str):
        raise ApiError(400, 'the JSON has no "image" string; send {"image": "<base64 PNG or JPEG>"}')
    encoded = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, '"image" is not valid base64') from None


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": message}`` with the status that says whose fault it is."""

    def reply(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.message)

    @app.exception_handler(CnnlabError)
    async def unreadable(_request: Request, exc: CnnlabError) -> JSONResponse:
        status = 415 if isinstance(exc, UnreadableImageError) else 413 if isinstance(exc, ImageTooLargeError) else 422
        return reply(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return reply(400, f"bad request parameters: {where}")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return reply(exc.status_code, str(exc.detail))


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


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, runs: str | Path = "runs") -> None:
    """Run the app on uvicorn until Ctrl-C; loopback only unless ``host`` says otherwise."""
    import uvicorn

    app = create_app(model_path, max_upload_mb, runs)
    check_port_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    served = "the handwriting reader" if Path(model_path).resolve() == READER else Path(model_path)
    print(f"Serving {served} at http://{shown}:{port}/  (API docs at /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
