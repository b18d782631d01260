"""The server's observability (cnnlab.serving.observability), on a small app made here: /metrics
counts requests by route template, method and status with bounded labels, times them, records
batches, the queue and the model served; the access log writes one line per request, with tokens
redacted and control characters escaped; worker processes writing into one folder are summed."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import traceback
import uuid

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import JSONResponse

from cnnlab.errors import CnnlabError
from cnnlab.serving.observability import (
    ACCESS_LOGGER,
    MAX_LOGGED,
    MULTIPROC_ENV,
    SECONDS_BUCKETS,
    Metrics,
    add_observability,
    configure_access_log,
    prepare_multiprocess_dir,
    render_folder,
)

ROUTES = {"/items/{item_id}", "/api/predict", "/api/train", "/boom", "/slow", "/static", "/metrics"}


class Refuse:
    """Pure ASGI middleware that answers 403 to ``POST /api/train`` before any route runs, as the
    server's access checks do."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/train" and scope["method"] == "POST":
            await JSONResponse({"error": "no"}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def make_app(metrics: Metrics, static_dir=None, access_log: str | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(Refuse)  # added before: the metrics' middleware runs outside it

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"item": item_id}

    @app.post("/api/predict")
    def predict(fail: bool = False) -> dict:
        if fail:
            raise HTTPException(400, "bad image")
        return {"label": "7"}

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("the app fails")

    @app.get("/slow")
    async def slow() -> dict:
        import asyncio

        await asyncio.sleep(0.03)
        return {}

    owner = APIRouter()

    @owner.post("/api/train")
    def train() -> dict:
        return {}

    app.include_router(owner)
    if static_dir is not None:
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
    add_observability(app, metrics, access_log)
    return app


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics text: (name, its labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def request_count(found: dict, route: str, method: str, status: int) -> float | None:
    return value(found, "cnnlab_requests_total", route=route, method=method, status=str(status))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(metrics, tmp_path) -> TestClient:
    (tmp_path / "app.js").write_text("let x = 1;\n")
    return TestClient(make_app(metrics, tmp_path), raise_server_exceptions=False)


def test_requests_are_counted_by_route_template_method_and_status(client):
    for item in (1, 2, 3):
        assert client.get(f"/items/{item}").status_code == 200
    assert client.get("/items/not-a-number").status_code == 422
    assert client.post("/api/predict").status_code == 200
    assert client.post("/api/predict", params={"fail": "true"}).status_code == 400
    assert client.get("/api/predict").status_code == 405
    assert client.get("/boom").status_code == 500
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/missing.js").status_code == 404
    assert client.post("/api/train").status_code == 403  # refused before routing: still its route
    assert client.put("/api/train").status_code == 405  # an included router's route
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    found = samples(reply.text)
    assert request_count(found, "/items/{item_id}", "GET", 200) == 3
    assert request_count(found, "/items/{item_id}", "GET", 422) == 1
    assert request_count(found, "/api/predict", "POST", 200) == 1
    assert request_count(found, "/api/predict", "POST", 400) == 1
    assert request_count(found, "/api/predict", "GET", 405) == 1
    assert request_count(found, "/boom", "GET", 500) == 1
    assert request_count(found, "/static", "GET", 200) == 1
    assert request_count(found, "/static", "GET", 404) == 1
    assert request_count(found, "/api/train", "POST", 403) == 1
    assert request_count(found, "/api/train", "PUT", 405) == 1
    assert value(found, "cnnlab_request_seconds_count", route="/items/{item_id}") == 4
    assert sum(v for (name, _), v in found.items() if name == "cnnlab_requests_total") == 12


def test_unmatched_paths_and_unknown_methods_share_one_label(client):
    for _ in range(40):
        assert client.get(f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}").status_code == 404
    assert client.request("BREW", f"/items/{uuid.uuid4().hex}").status_code == 405
    assert client.request("X" * 300, "/nowhere").status_code == 404
    found = samples(client.get("/metrics").text)
    assert request_count(found, "other", "GET", 404) == 40
    assert request_count(found, "/items/{item_id}", "other", 405) == 1
    assert request_count(found, "other", "other", 404) == 1
    counted = {dict(labels)["route"] for (name, labels) in found if name == "cnnlab_requests_total"}
    assert counted <= ROUTES | {"other"}


def test_latency_lands_in_its_bucket(client):
    for _ in range(2):
        client.get("/slow")
    found = samples(client.get("/metrics").text)
    buckets = {float(dict(labels)["le"]): v for (name, labels), v in found.items()
               if name == "cnnlab_request_seconds_bucket" and dict(labels)["route"] == "/slow"}
    assert sorted(buckets) == [*SECONDS_BUCKETS, float("inf")]
    assert buckets[0.025] == 0 and buckets[10.0] == 2 and buckets[float("inf")] == 2
    assert 0.06 <= value(found, "cnnlab_request_seconds_sum", route="/slow") < 20


def test_batch_sizes_queue_depth_and_model_info(metrics):
    for size in (1, 3, 300):
        metrics.batch(size)
    metrics.queue_depth(5)
    metrics.model("run-a", "cnn-fast", "mnist", "1")
    metrics.model("run-b", "cnn-best", "mnist", "2")
    with metrics.queued():
        inside = samples(metrics.render()[0].decode())
    found = samples(metrics.render()[0].decode())
    assert value(found, "cnnlab_batch_size_bucket", le="1.0") == 1
    assert value(found, "cnnlab_batch_size_bucket", le="2.0") == 1
    assert value(found, "cnnlab_batch_size_bucket", le="4.0") == 2
    assert value(found, "cnnlab_batch_size_bucket", le="256.0") == 2
    assert value(found, "cnnlab_batch_size_bucket", le="+Inf") == 3
    assert value(found, "cnnlab_batch_size_sum") == 304
    assert value(inside, "cnnlab_queue_depth") == 6 and value(found, "cnnlab_queue_depth") == 5
    infos = {labels: v for (name, labels), v in found.items() if name == "cnnlab_model_info"}
    assert infos == {frozenset({"name": "run-b", "architecture": "cnn-best", "dataset": "mnist",
                                "version": "2"}.items()): 1}


def test_each_metrics_counts_apart():
    first, second = Metrics(), Metrics()
    TestClient(make_app(first)).get("/items/1")
    assert request_count(samples(first.render()[0].decode()), "/items/{item_id}", "GET", 200) == 1
    assert request_count(samples(second.render()[0].decode()), "/items/{item_id}", "GET", 200) is None


def access_lines(caplog, kind: str, *paths: str, **options) -> list[str]:
    client = TestClient(make_app(Metrics(), access_log=kind), raise_server_exceptions=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        for path in paths:
            client.get(path, **options)
    return [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]


def test_text_access_log_redacts_tokens_and_escapes_the_path(caplog):
    secret = "q3Lr9Xw0vTbZ5mKd7HcJ2nYfA8sGe4Uo1iPx6RkWtNE"
    lines = access_lines(caplog, "text", f"/items/7?token={secret}&number=true", f"/items/8?%74oken={secret}",
                         f"/items/9?a=1;token={secret}", "/a%0ab%1b[31mred%e2%80%ae", "/" + "x" * 1000, "/boom",
                         headers={"authorization": f"Bearer {secret}"})
    assert len(lines) == 6
    assert all(secret not in line and "\n" not in line and "\x1b" not in line for line in lines)
    assert re.fullmatch(r'testclient "GET /items/7\?token=REDACTED&number=true" 200 \d+\.\d ms 10 B', lines[0])
    assert '"GET /items/8?%74oken=REDACTED"' in lines[1] and '"GET /items/9?a=1;token=REDACTED"' in lines[2]
    assert '"GET /a\\nb\\x1b[31mred\\u202e" 404' in lines[3]
    long_target = lines[4].split('"')[1].removeprefix("GET ")
    assert long_target == "/" + "x" * (MAX_LOGGED - 1) + "..."
    assert re.fullmatch(r'testclient "GET /boom" 500 \d+\.\d ms \d+ B', lines[5])


def test_json_access_log_has_one_object_a_line(caplog):
    lines = access_lines(caplog, "json", "/items/5?token=abc", "/odd%22%7f")
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "client", "method", "path", "route", "status", "ms", "bytes"}
    assert first["client"] == "testclient" and first["method"] == "GET" and first["status"] == 200
    assert first["path"] == "/items/5?token=REDACTED" and first["route"] == "/items/{item_id}"
    assert first["bytes"] == len(b'{"item":5}') and first["ms"] >= 0 and first["time"].endswith("+00:00")
    assert second["route"] == "other" and second["path"] == '/odd\\"\\x7f'


def test_no_access_log_unless_asked(caplog):
    assert access_lines(caplog, None, "/items/1") == []
    with pytest.raises(CnnlabError, match="access log"):
        make_app(Metrics(), access_log="xml")


def test_configure_access_log_is_idempotent():
    logger = logging.getLogger(ACCESS_LOGGER)
    before = (list(logger.handlers), logger.level, logger.propagate)
    try:
        configure_access_log("text")
        configure_access_log("json")
        ours = [h for h in logger.handlers if getattr(h, "cnnlab_access", False)]
        assert len(ours) == 1 and logger.level == logging.INFO and not logger.propagate
        configure_access_log(None)
        assert not [h for h in logger.handlers if getattr(h, "cnnlab_access", False)]
    finally:
        logger.handlers[:], logger.level, logger.propagate = before


def worker(results, barrier, requests: int, models: list[str], close: bool) -> None:
    """One server worker: its own app and Metrics in multiprocess mode, ``requests`` requests, then
    the /metrics it answers once every worker has counted."""
    try:
        metrics = Metrics.from_environment()
        client = TestClient(make_app(metrics))
        for item in range(requests):
            client.get(f"/items/{item}")
        metrics.batch(requests)
        metrics.queue_depth(requests)
        for name in models:
            metrics.model(name, "cnn-fast", "mnist", "1")
        barrier.wait(timeout=120)
        results.put((os.getpid(), client.get("/metrics").text))
        barrier.wait(timeout=120)
        if close:
            metrics.close()
    except Exception:
        results.put((os.getpid(), traceback.format_exc()))


def test_worker_processes_are_summed(tmp_path, monkeypatch):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # a former server's: removed
    (folder / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(folder))  # restored after the test
    assert prepare_multiprocess_dir(folder) == folder.resolve() and os.environ[MULTIPROC_ENV] == str(folder.resolve())
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    with pytest.raises(CnnlabError, match="before prometheus_client is first imported"):
        Metrics(folder)  # this process imported prometheus_client without the variable
    spawn = multiprocessing.get_context("spawn")
    results, barrier = spawn.Queue(), spawn.Barrier(2)
    workers = [spawn.Process(target=worker, args=(results, barrier, 2, ["run-a", "run-b"], True)),
               spawn.Process(target=worker, args=(results, barrier, 3, ["run-c"], False))]
    for process in workers:
        process.start()
    answers = [results.get(timeout=300) for _ in workers]
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert len({pid for pid, _ in answers}) == 2
    for _, text in answers:
        assert "Traceback" not in text, text
        found = samples(text)
        assert request_count(found, "/items/{item_id}", "GET", 200) == 5
        assert value(found, "cnnlab_batch_size_count") == 2 and value(found, "cnnlab_batch_size_sum") == 5
        assert value(found, "cnnlab_queue_depth") == 5
        served = {dict(labels)["name"] for (name, labels), v in found.items() if name == "cnnlab_model_info"}
        assert served == {"run-b", "run-c"}  # run-a, which the first worker served before run-b, is gone
    after = samples(render_folder(folder)[0].decode())  # the first worker closed, the second did not
    assert request_count(after, "/items/{item_id}", "GET", 200) == 5
    assert request_count(after, "/metrics", "GET", 200) == 2
    assert value(after, "cnnlab_queue_depth") == 3
    assert {dict(labels)["name"] for (name, labels) in after if name == "cnnlab_model_info"} == {"run-c"}
