"""What ``cnnlab serve`` tells its operator: Prometheus metrics at ``GET /metrics`` and an access log.

:class:`Metrics` holds the server's metrics, in a registry of its own (apps made in one process
count apart), and renders them in Prometheus' text format:

    cnnlab_requests_total{route, method, status}   requests answered
    cnnlab_request_seconds{route}                  their latency, 1 ms to 10 s
    cnnlab_batch_size                              images per forward pass
    cnnlab_queue_depth                             requests waiting (set by the server)
    cnnlab_model_info{name, architecture, dataset, version}   1 for the model served

Every label takes a bounded set of values whatever clients send: ``route`` is the matched route's
path template (``/api/predict``, ``/static`` for the static mount) or ``other``, ``method`` one of
:data:`METHODS` or ``other``.

:class:`MetricsMiddleware` (pure ASGI) times every HTTP request, counts it and, when asked, writes
one line per request to the ``cnnlab.access`` logger, with any ``token`` in the query redacted and
the path escaped and bounded. :func:`add_observability` puts it and ``GET /metrics`` on an app.

Several worker processes (``--workers N``) report together through prometheus_client's
multiprocess mode: each process writes its metrics to memory-mapped files in one folder and
``/metrics`` in any worker sums them. prometheus_client chooses that storage once per process, when
it is first imported, from ``$PROMETHEUS_MULTIPROC_DIR``: the parent calls
:func:`prepare_multiprocess_dir` (which sets it) before it starts the workers, and each worker makes
``Metrics.from_environment()``. In that mode every ``Metrics`` of one process shares the same series.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.errors import require

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ACCESS_LOGGER = "cnnlab.access"
ACCESS_LOGS = ("text", "json")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
OTHER = "other"  # the label of any route or method outside the known ones
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_LOGGED = 200  # characters of a request's path and query in the access log, escapes included
MAX_LABEL = 200  # characters of a model_info label value
INFO_NAME = "cnnlab_model_info"
REDACTED = "REDACTED"


@dataclass
class _Series:
    """The metric objects behind a :class:`Metrics`, and the labels of the model it serves."""

    requests: Counter
    seconds: Histogram
    batch: Histogram
    queue: Gauge
    info: Gauge
    model: tuple[str, ...] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _make_series(registry: CollectorRegistry | None) -> _Series:
    """The metrics, registered in ``registry`` (None: in none, for multiprocess mode, where they are
    read back from the folder's files). Gauges say how processes combine: queues add up over the
    live workers, and a model is listed while any live worker serves it."""
    return _Series(
        Counter("cnnlab_requests", "HTTP requests answered", ("route", "method", "status"), registry=registry),
        Histogram("cnnlab_request_seconds", "Seconds from a request's arrival to its answer's last byte",
                  ("route",), buckets=SECONDS_BUCKETS, registry=registry),
        Histogram("cnnlab_batch_size", "Images in one forward pass", buckets=BATCH_BUCKETS, registry=registry),
        Gauge("cnnlab_queue_depth", "Requests waiting for the model", registry=registry, multiprocess_mode="livesum"),
        Gauge(INFO_NAME, "The model served (1)", ("name", "architecture", "dataset", "version"), registry=registry,
              multiprocess_mode="livemax"),
    )


_shared: dict[Path, _Series] = {}  # multiprocess mode: one set of series per process and folder
_shared_lock = threading.Lock()


def _multiprocess_storage() -> bool:
    """Whether prometheus_client writes this process's metrics to files (decided at its import)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """The server's metrics (see the module's docstring for the names and labels).

    ``multiprocess_dir`` None: the metrics live in this object, in a registry of its own. A folder:
    they are written to files there, and :meth:`render` sums those of every process writing there;
    ``$PROMETHEUS_MULTIPROC_DIR`` must name that folder and must have been set before this process
    first imported prometheus_client (:func:`prepare_multiprocess_dir`). Thread-safe.
    """

    def __init__(self, multiprocess_dir: str | Path | None = None) -> None:
        self.multiprocess_dir = None if multiprocess_dir is None else Path(multiprocess_dir).resolve()
        if self.multiprocess_dir is None:
            require(not _multiprocess_storage(), f"${MULTIPROC_ENV} was set when prometheus_client was imported, "
                    "so this process's metrics go to files: use Metrics.from_environment()")
            self.registry = CollectorRegistry()
            self._series = _make_series(self.registry)
            return
        folder = self.multiprocess_dir
        named = os.environ.get(MULTIPROC_ENV)
        require(_multiprocess_storage() and named is not None, f"multiprocess metrics need ${MULTIPROC_ENV} set to "
                f"{folder} before prometheus_client is first imported: call prepare_multiprocess_dir() in the "
                "parent before it starts the workers")
        require(Path(named).resolve() == folder and folder.is_dir(),
                f"${MULTIPROC_ENV} is {named}, not the folder {folder} given, or that is not a folder")
        self.registry = CollectorRegistry()
        self.registry.register(_FolderCollector(folder))
        with _shared_lock:
            if folder not in _shared:  # made once: each metric made adds to prometheus_client's files for good
                _shared[folder] = _make_series(None)
            self._series = _shared[folder]

    @classmethod
    def from_environment(cls) -> Metrics:
        """Metrics in multiprocess mode when ``$PROMETHEUS_MULTIPROC_DIR`` is set, else in this object."""
        return cls(os.environ.get(MULTIPROC_ENV) or None)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency; a method outside :data:`METHODS` counts as ``other``."""
        method = method if method in METHODS else OTHER
        self._series.requests.labels(route, method, str(status)).inc()
        self._series.seconds.labels(route).observe(seconds)

    def batch(self, size: int) -> None:
        """Record one forward pass over ``size`` images."""
        self._series.batch.observe(size)

    def queue_depth(self, n: int) -> None:
        """Set how many requests this process has waiting for the model now. It is a value the server
        sets, not a function read at scrape time: a scrape reaches one worker, and reads the others'
        values from their files. Summed over the live workers."""
        self._series.queue.set(n)

    @contextmanager
    def queued(self) -> Iterator[None]:
        """Count one more request waiting for the model while the block runs."""
        self._series.queue.inc()
        try:
            yield
        finally:
            self._series.queue.dec()

    def model(self, name: str, architecture: str, dataset: str, version: str) -> None:
        """Say which model is served now: its labels get 1, the previous model's are removed (each
        value cut to :data:`MAX_LABEL` characters). In multiprocess mode the previous labels are set
        to 0 in this process's file, and a model with no live worker at 1 is left out of :meth:`render`."""
        labels = tuple(str(value)[:MAX_LABEL] for value in (name, architecture, dataset, version))
        series = self._series
        with series.lock:
            old, series.model = series.model, labels
            if old is not None and old != labels:
                series.info.labels(*old).set(0)
                if self.multiprocess_dir is None:
                    series.info.remove(*old)
            series.info.labels(*labels).set(1)

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """In multiprocess mode, at a worker's exit: remove this process's gauge files, so that its
        queue and model no longer count. Counters and histograms stay, summed with the others."""
        if self.multiprocess_dir is not None:
            self._series.queue.set(0)
            mark_process_dead(os.getpid(), str(self.multiprocess_dir))


class _FolderCollector:
    """prometheus_client's MultiProcessCollector over ``folder``, leaving out the model_info labels
    at 0 (a model that no process serves any more: files cannot remove a label set)."""

    def __init__(self, folder: Path) -> None:
        self.inner = MultiProcessCollector(None, path=str(folder))

    def collect(self) -> Iterator[Any]:
        for metric in self.inner.collect():
            if metric.name == INFO_NAME:
                metric.samples = [sample for sample in metric.samples if sample.value]
            yield metric


def render_folder(folder: str | Path) -> tuple[bytes, str]:
    """The metrics every process wrote to ``folder`` summed, in Prometheus' text format, and its
    content type. Any process may call it, whatever its own storage (a parent, a test)."""
    registry = CollectorRegistry()
    registry.register(_FolderCollector(Path(folder)))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(folder: str | Path) -> Path:
    """Ready ``folder`` for the metrics of workers about to start, and return it (absolute): create
    it (private to this user) or delete the metric files (``*.db``) a former server left there, and
    set ``$PROMETHEUS_MULTIPROC_DIR`` to it, which processes started afterwards inherit. Call it
    before starting the workers; this process's own metrics keep the storage they had."""
    folder = Path(folder).resolve()
    require(not folder.exists() or folder.is_dir(), f"{folder}: exists and is not a folder; give a folder")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        if stale.is_file():
            stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def route_label(scope: Scope, arrived: Scope) -> str:
    """The path template of the route that answered (or would answer) the request, ``other`` when
    none matches: the router's own choice when it ran and says so (``scope["route"]``, the scope as
    routing left it); else the first of the app's routes (and included routers') that matches the
    request as it ``arrived`` (routing changes ``root_path`` under a mount) fully or, failing that,
    by path alone (a 405). A request refused before routing is thus labelled by its route too."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path or "/"
    scope = arrived
    router = getattr(scope.get("app"), "router", None)
    partial = None
    for route in _flat_routes(getattr(router, "routes", ())):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path or "/"
        if match is Match.PARTIAL and partial is None:
            partial = route.path or "/"
    return partial or OTHER


def _flat_routes(routes: Any) -> Iterator[Any]:
    """The routes that have a path template, those of FastAPI's included routers too."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _flat_routes(route.original_router.routes)
        elif isinstance(getattr(route, "path", None), str):
            yield route


def escaped(text: str, most: int = MAX_LOGGED) -> str:
    """``text`` with control and other unprintable characters, quotes and backslashes escaped
    (``\\n``, ``\\x1b``, ``\\u202e``, ``\\"``), cut to at most ``most`` characters then ``...``."""
    out: list[str] = []
    size = 0
    for char in text:
        piece = char if char.isprintable() and char not in '"\\' else (
            "\\" + char if char in '"\\' else char.encode("unicode_escape").decode("ascii"))
        if size + len(piece) > most:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def redacted_query(query: str) -> str:
    """``query`` with the value of every parameter whose name (decoded) contains ``token`` replaced
    by ``REDACTED``; ``&`` and ``;`` both separate parameters here, so none slips through."""
    parts = []
    for separated in query.split("&"):
        pieces = []
        for part in separated.split(";"):
            name = part.split("=", 1)[0]
            pieces.append(f"{name}={REDACTED}" if "token" in unquote_plus(name).lower() else part)
        parts.append(";".join(pieces))
    return "&".join(parts)


def request_target(scope: Scope) -> str:
    """The request's path and query for the log: token values redacted, escaped, bounded."""
    query = scope.get("query_string", b"").decode("latin-1")
    return escaped(scope.get("path", "") + (f"?{redacted_query(query)}" if query else ""))


class MetricsMiddleware:
    """Pure ASGI middleware: records every HTTP request in ``metrics`` (route, method, status, seconds
    until the answer's last byte) and, with ``access_log`` "text" or "json", logs it to
    ``cnnlab.access`` at INFO. A request whose app raises counts as 500 (and the error goes on up)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: str | None = None) -> None:
        check_access_log(access_log)
        self.app, self.metrics, self.access_log = app, metrics, access_log
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        arrived = dict(scope)  # routing updates the scope; this copy is matched when it leaves no route
        answer = {"status": 500, "bytes": 0}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            answer["status"] = 500
            raise
        finally:
            seconds = time.perf_counter() - start
            route = route_label(scope, arrived)
            self.metrics.request(route, scope["method"], answer["status"], seconds)
            if self.access_log and self.logger.isEnabledFor(logging.INFO):
                self.logger.info(self.line(scope, route, answer["status"], seconds, answer["bytes"]))

    def line(self, scope: Scope, route: str, status: int, seconds: float, size: int) -> str:
        """One access-log line: text ``client "METHOD /path?query" status 3.1 ms 1234 B``, or a JSON
        object with time (UTC, ISO 8601), client, method, path, route, status, ms and bytes."""
        client = scope.get("client")
        host = escaped(str(client[0]), 64) if client else "-"
        method = escaped(scope["method"], 16)
        target = request_target(scope)
        if self.access_log == "json":
            return json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "client": host,
                               "method": method, "path": target, "route": route, "status": status,
                               "ms": round(seconds * 1000, 3), "bytes": size})
        return f'{host} "{method} {target}" {status} {seconds * 1000:.1f} ms {size} B'


def add_observability(app: FastAPI, metrics: Metrics, access_log: str | None = None) -> None:
    """Put :class:`MetricsMiddleware` on ``app`` (outside the middleware added before it, so that
    their refusals are counted too) and ``GET /metrics``, which answers ``metrics.render()``. The
    access log's lines go nowhere visible until :func:`configure_access_log` gives them a handler."""
    check_access_log(access_log)  # now, not at the first request, when Starlette makes the middleware
    app.add_middleware(MetricsMiddleware, metrics=metrics, access_log=access_log)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def metrics_text() -> Response:  # a plain def: a multiprocess render reads files, off the event loop
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def check_access_log(kind: str | None) -> None:
    """Raise :class:`CnnlabError` unless ``kind`` is an access log's format ("text", "json") or None."""
    require(kind is None or kind in ACCESS_LOGS,
            f"access log must be one of {', '.join(ACCESS_LOGS)} or None, got {kind!r}")


def configure_access_log(kind: str | None) -> logging.Logger:
    """Have the ``cnnlab.access`` logger write its lines, bare, to stderr at INFO when ``kind`` is
    "text" or "json"; remove that handler when None. Calling it again changes nothing more."""
    check_access_log(kind)
    logger = logging.getLogger(ACCESS_LOGGER)
    ours = [handler for handler in logger.handlers if getattr(handler, "cnnlab_access", False)]
    if kind is None:
        for handler in ours:
            logger.removeHandler(handler)
        return logger
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.cnnlab_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # one line per request, not a second one through the root logger's handlers
    return logger
