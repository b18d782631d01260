"""``cnnlab serve``: a draw-a-digit web page and a JSON prediction API over one trained model.

    GET  /              the page (canvas, upload, live prediction, bars, the 28x28 the network saw)
    GET  /static/...    its script and style sheet: every asset is served here, nothing external
    POST /api/predict   an image as multipart ``file`` or JSON ``{"image": "<base64>"}``; ``?number=true``
    POST /api/explain   the same body: the answer, a heatmap of the pixels that decided it (``?method=``)
                        and every layer's activations (cnnlab.serving.explain_api)
    GET  /api/model     the model's facts
    GET  /healthz       liveness: the process answers
    GET  /readyz        readiness: the model is loaded and requests are taken
    GET  /metrics       Prometheus' text format: requests, latency, batch sizes, queue depth, the model
    GET  /docs          OpenAPI documentation (Swagger UI, its assets served here too: it works offline)

Images are prepared and answered by the same Predictor as ``cnnlab predict`` (cnnlab.using.predictor),
requests that come together sharing one forward pass (cnnlab.serving.batching), in ``workers``
processes (one per core by default), each with its own model and one torch thread.
Errors are JSON ``{"error": message}``: 413 for a body over the upload limit or an image that
claims too many pixels, 415 for a body that is not an image, 400 for malformed JSON or base64,
408 for a request that arrives too slowly, 422 for an image with nothing to read (no ink, too many
marks), 503 with ``Retry-After`` when the process holds ``max_queue`` requests already. Who may
do what (the token, ``Host`` and origin checks) is cnnlab.serving.access; the bounds on bodies
and on concurrent uploads are cnnlab.serving.bodies and cnnlab.serving.uploads.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from cnnlab.errors import CnnlabError, require
from cnnlab.serving.access import (
    MIN_TOKEN_LENGTH,
    TOKEN_ENV,
    Access,
    AccessMiddleware,
    SecurityHeadersMiddleware,
    is_loopback,
    make_token,
)
from cnnlab.serving.answers import Answers, Served
from cnnlab.serving.api_error import ApiError, add_error_handlers
from cnnlab.serving.batching import BatchLimits
from cnnlab.serving.bodies import Bodies, BodyLimits, image_bytes, image_kind
from cnnlab.serving.connections import set_head_deadline
from cnnlab.serving.observability import (
    ACCESS_LOGS,
    Metrics,
    add_observability,
    configure_access_log,
    prepare_multiprocess_dir,
)
from cnnlab.serving.train_routes import TrainPlace, add_train_routes
from cnnlab.serving.workers import run_workers
from cnnlab.using.predictor import Predictor
from cnnlab.using.reader import READER

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 5.0
MAX_WORKERS, MAX_BATCH, MAX_QUEUE = 64, 1024, 100_000
CONFIG_ENV = "CNNLAB_SERVE_CONFIG"  # the model and settings, for the worker processes
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
class ServeSettings:
    """How the server runs: ``cnnlab serve``'s options.

    Attributes:
        host, port: where it listens; loopback unless ``host`` says otherwise.
        max_upload_mb: request bodies larger than this many megabytes get 413.
        runs: the folder for the Train tab's run directories.
        token: the token that requests changing the server's state must carry; None: one is made
            when the app is made (``app.state.token``).
        train: whether the Train tab and its routes exist; they need ``workers`` 1, as one process
            must own the training and the model it replaces.
        allowed_hosts: names accepted in the ``Host`` header besides loopback's and ``host``.
        header_seconds, body_seconds: how long a request's head, and then its body, may take to arrive.
        workers: processes answering requests, each with its own model; None: one per core.
        max_batch, batch_wait_ms, max_queue: images in one forward pass at most, how long the first
            waits for company, and requests one process holds before it answers 503 (cnnlab.serving.batching).
        access_log: None, or "text" or "json": one line per request on stderr.
        drain_seconds: at shutdown, how long requests under way may take to finish.
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
    workers: int | None = None
    max_batch: int = 64
    batch_wait_ms: float = 2.0
    max_queue: int = 128
    access_log: str | None = None
    drain_seconds: float = 10.0

    def page_url(self) -> str:
        """The page's address, without the token."""
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}/"

    def worker_count(self) -> int:
        """How many processes answer: ``workers``, or one per core."""
        return self.workers or os.cpu_count() or 1

    def training(self) -> bool:
        """Whether the Train tab is on: asked for, and one process to own it."""
        return self.train and self.worker_count() == 1

    def batch_limits(self) -> BatchLimits:
        return BatchLimits(self.max_batch, self.batch_wait_ms / 1000, self.max_queue)

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
        self.check_capacity()

    def check_capacity(self) -> None:
        """The bounds of the workers, batches and queue (part of :meth:`check`)."""
        require(self.workers is None or 1 <= self.workers <= MAX_WORKERS,
                f"--workers must be 1-{MAX_WORKERS}, got {self.workers}; one per core is the default")
        require(1 <= self.max_batch <= MAX_BATCH, f"--max-batch must be 1-{MAX_BATCH}, got {self.max_batch}")
        require(0 <= self.batch_wait_ms <= 1000, f"--batch-wait-ms must be 0-1000, got {self.batch_wait_ms:g}")
        require(1 <= self.max_queue <= MAX_QUEUE, f"--max-queue must be 1-{MAX_QUEUE}, got {self.max_queue}")
        require(self.access_log in (None, *ACCESS_LOGS),
                f"--access-log must be one of {', '.join(ACCESS_LOGS)}, got '{self.access_log}'")
        require(0 <= self.drain_seconds <= 3600, f"--drain-seconds must be 0-3600, got {self.drain_seconds:g}")

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON, for the worker processes (:func:`app_from_environment`)."""
        return {**asdict(self), "runs": str(self.runs), "allowed_hosts": list(self.allowed_hosts)}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> ServeSettings:
        return cls(**{**fields, "runs": Path(fields["runs"]), "allowed_hosts": tuple(fields["allowed_hosts"])})


def create_app(model_path: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """The web app for the model saved at ``model_path`` (a run directory or its ``model.safetensors``),
    behind the access checks of cnnlab.serving.access: ``Host`` must name this machine (the
    TestClient's default ``http://testserver`` does not: give it ``base_url="http://127.0.0.1"``),
    and requests that change the server need ``settings.token`` (made here when None: ``app.state.token``)."""
    settings = settings or ServeSettings()
    settings.check()  # the same refusals for Python's callers as for cnnlab serve's options
    token = settings.token or make_token()
    metrics = Metrics.from_environment()
    answers = Answers(model_path, settings.batch_limits(), on_pass=metrics.batch)
    bodies = Bodies(BodyLimits(settings.max_upload_mb, settings.body_seconds))
    report_model(metrics, answers.served)
    state = {"ready": False}

    # FastAPIOffline: /docs with Swagger UI's script and styles served by the app, not fetched from a CDN.
    first = answers.served
    app = FastAPIOffline(title="cnnlab", description=f"Predictions of {first.facts['name']} "
                         f"({first.facts['architecture']}){', and a Train tab' if settings.training() else ''}",
                         version="1")
    app.state.token, app.state.answers = token, answers
    guard(app, Access(token, settings.host, settings.allowed_hosts, settings.page_url()))
    add_observability(app, metrics, settings.access_log)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)
    app.router.on_startup.append(lambda: state.update(ready=True))
    app.router.on_shutdown.append(lambda: (state.update(ready=False), answers.close(), metrics.close()))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # The routes that do no blocking work are async: answered on the event loop, without a thread's hand-off.
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        """Readiness: the model is loaded and requests are taken; 503 while starting or shutting down."""
        if not state["ready"]:
            raise ApiError(503, "not ready: the server is starting or shutting down", headers={"Retry-After": "1"})
        return {"status": "ready", "model": answers.served.facts["name"]}

    @app.get("/api/model")
    async def model_facts() -> dict[str, Any]:
        """The served model's facts, and ``training``: whether this server has the Train tab (with,
        when it does not, ``training_note`` saying why)."""
        return {**answers.served.facts, "training": settings.training(), **training_note(settings)}

    async def answer(request: Request, work: Callable[[bytes], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        kind = image_kind(request)
        with answers.admission.held(), metrics.queued():  # refused before the body is read when full
            async with bodies.held(request) as body:  # each byte held in the budget until answered
                return await work(await image_bytes(request, kind, body))

    # Answers are plain JSON already (Prediction.to_json): sent as they are, not walked again by FastAPI's encoder.
    @app.post("/api/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, number: bool = False) -> JSONResponse:
        """Read one digit (or, with ``number=true``, a number of several digits) from an image."""
        return JSONResponse(await answer(request, lambda data: answers.predict(data, number)))

    @app.post("/api/explain", openapi_extra={"requestBody": PREDICT_BODY})
    async def explain(request: Request, method: str = "integrated-gradients") -> JSONResponse:
        """Read one image, and show why: a heatmap of the pixels that decided (``method``: saliency,
        integrated-gradients, occlusion or gradcam) and every conv and dense layer's activations."""
        return JSONResponse(await answer(request, lambda data: answers.explain(data, method)))

    def serve_new_model(run: Path) -> None:
        answers.served = Served.load(run)
        report_model(metrics, answers.served)

    if settings.training():
        add_train_routes(app, TrainPlace(Path(settings.runs), bodies), lambda: answers.served.predictor.info,
                         serve_new_model)
    return app


def report_model(metrics: Metrics, served: Served) -> None:
    facts = served.facts
    metrics.model(facts["name"], facts["architecture"], facts["dataset"], facts["version"])


def training_note(settings: ServeSettings) -> dict[str, str]:
    """Why the Train tab is off, for the page to show; nothing when it is on or was turned off."""
    if not settings.train or settings.training():
        return {}
    return {"training_note": f"this server runs {settings.worker_count()} worker processes; training from this "
                             "page needs one to own it: start cnnlab serve --workers 1"}


def guard(app: FastAPI, access: Access) -> None:
    """Put the access checks in front of every route, and the security headers on every answer
    (their refusals' too)."""
    app.add_middleware(AccessMiddleware, access=access)
    app.add_middleware(SecurityHeadersMiddleware)  # added last: it runs first, outside the checks


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


def app_from_environment() -> FastAPI:
    """A worker process's app (uvicorn's factory with ``--workers`` more than 1): the model and
    settings that :func:`serve` put in ``$CNNLAB_SERVE_CONFIG``."""
    config = json.loads(os.environ[CONFIG_ENV])
    settings = ServeSettings.from_json(config["settings"])
    return worker_app(config["model"], settings)


def worker_process(settings: ServeSettings) -> None:
    """What every process that answers requests does first: one torch thread (the workers are the
    parallelism), and the access log's lines sent to stderr when asked for."""
    torch.set_num_threads(1)
    configure_access_log(settings.access_log)


def worker_app(model_path: str | Path, settings: ServeSettings) -> FastAPI:
    """The app a process that answers requests serves: the process set up (:func:`worker_process`),
    the app made, then what starting made frozen (:func:`freeze_startup_objects`)."""
    worker_process(settings)
    app = create_app(model_path, settings)
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Leave what starting made (modules, the model) out of Python's full garbage collections from
    here on: they last as long as the process, and walking them all took 100 ms here, a stall for
    every request under way (a drawn digit's p99 on one worker: 89 ms with them, 56 ms without)."""
    gc.collect()
    gc.freeze()


def serve(model_path: str | Path, settings: ServeSettings | None = None) -> None:
    """Run the app on uvicorn until Ctrl-C, printing its URL with the token (made here unless
    ``settings.token`` gives one), and a warning when it listens beyond this machine. With more
    than one worker, each is a process of its own with its own model, sharing the port."""
    import uvicorn

    settings = settings or ServeSettings()
    settings.check()
    made = settings.token is None
    settings = replace(settings, token=settings.token or make_token())
    single = settings.worker_count() == 1
    if single:
        app = worker_app(model_path, settings)  # loads the model: one that cannot be served is refused here
    else:
        Predictor.load(model_path)  # refused here, in one line, not in each worker
    check_port_free(settings.host, settings.port)
    announce(model_path, settings, made)
    common = {"host": settings.host, "port": settings.port, "log_level": "warning",
              "http": set_head_deadline(settings.header_seconds),
              "timeout_graceful_shutdown": settings.drain_seconds}
    if single:
        uvicorn.run(app, **common)
        return
    with tempfile.TemporaryDirectory(prefix="cnnlab-metrics-") as folder:  # the workers' metrics, summed
        prepare_multiprocess_dir(folder)
        os.environ[CONFIG_ENV] = json.dumps({"model": str(Path(model_path).resolve()),
                                             "settings": settings.to_json()})
        run_workers(uvicorn.Config("cnnlab.serving.serve:app_from_environment", factory=True,
                                   workers=settings.worker_count(), **common))

def announce(model_path: str | Path, settings: ServeSettings, made: bool) -> None:
    """Print where the page is (with the token when it was made here), and warn when it is open
    beyond this machine."""
    served = "the handwriting reader" if Path(model_path).resolve() == READER else Path(model_path)
    shown, note = (settings.token, "") if made else ("...", f"the token of --token or ${TOKEN_ENV}; ")
    workers = settings.worker_count()
    processes = f"{workers} worker processes; " if workers > 1 else ""
    print(f"Serving {served} at {settings.page_url()}?token={shown}  ({note}{processes}API docs at /docs; Ctrl-C "
          "to stop)", flush=True)
    if settings.train and not settings.training():
        print(f"note: the Train tab is off with {workers} workers: start with --workers 1 to train from the page",
              flush=True)
    if not is_loopback(settings.host):
        changes = "changes (the Train tab) need the token in the URL above" if settings.training() else (
            "nothing can change it")
        print(f"warning: listening on {settings.host}, reachable from the network: predictions are open to anyone "
              f"who reaches it; {changes}", file=sys.stderr, flush=True)
