"""The Train tab's API: one training at a time in its own process, its events streamed, Stop keeping
the checkpoint, a finished run served, and 4xx answers for what cannot be trained. Every POST here
carries the owner's token (tests/serving/test_access.py: what happens without it)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from cnnlab.training.loop import train
from tests.serving.conftest import OWNER, local_client


@pytest.fixture
def app_client(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(mnist_dir))  # the training process reads the data from here
    run = tmp_path / "served"
    train(model="cnn-fast", epochs=1, limit=3000, data_dir=str(mnist_dir), out=str(run), progress=False)
    return local_client(run, runs=tmp_path / "page-runs"), tmp_path


def events_until(client: TestClient, stop_at: set[str], on_event=None) -> list[dict]:
    found = []
    with client.stream("GET", "/api/train/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                found.append(json.loads(line.removeprefix("data:")))
                if on_event is not None:
                    on_event(found[-1])
                if found[-1]["type"] in stop_at:
                    break
    return found


def test_a_training_streams_its_run_and_its_model_is_then_served(app_client):
    client, tmp_path = app_client
    assert client.get("/api/train").status_code == 404
    assert client.get("/api/model").json()["name"] == "served"
    started = client.post("/api/train", headers=OWNER, json={"preset": "fast", "epochs": 2, "limit": 3000})
    assert started.status_code == 202 and started.json()["state"] == "running"
    second = client.post("/api/train", headers=OWNER, json={"preset": "fast"})
    assert second.status_code == 409 and "already running" in second.json()["error"]
    events = events_until(client, {"done", "failed", "stopped"})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done", events[-1]
    assert kinds.count("epoch") == 2 and kinds.count("point") >= 16  # 8 an epoch at least
    lines = [e["text"] for e in events if e["type"] == "line"]
    assert lines[0].startswith("Training cnn-fast") and any(line.startswith("Epoch 2/2 - loss:") for line in lines)
    assert all(e["filters"] for e in events if e["type"] == "epoch")
    assert (tmp_path / "page-runs" / "page-fast-mnist" / "model.safetensors").is_file()
    assert client.get("/api/model").json()["name"] == "page-fast-mnist"  # served before "done" was sent
    # A page that connects afterwards sees the whole run again.
    assert [e["type"] for e in events_until(client, {"done"})] == kinds


def test_stop_keeps_the_checkpoint_and_the_served_model(app_client):
    client, tmp_path = app_client
    client.post("/api/train", headers=OWNER, json={"preset": "fast", "epochs": 30, "limit": 3000})

    def stop_after_the_first_epoch(event):
        if event["type"] == "epoch" and event["row"]["epoch"] == 1:
            assert client.post("/api/train/stop", headers=OWNER, json={}).status_code == 200

    events = events_until(client, {"done", "failed", "stopped"}, stop_after_the_first_epoch)
    assert events[-1]["type"] == "stopped" and events[-1]["epochs_done"] >= 1, events[-1]
    run = tmp_path / "page-runs" / "page-fast-mnist"
    assert (run / "checkpoint.pt").is_file() and not (run / "model.safetensors").exists()
    assert client.get("/api/model").json()["name"] == "served"
    assert client.get("/api/train").json()["state"] == "stopped"
    assert client.post("/api/train/stop", headers=OWNER, json={}).status_code == 409


def test_what_cannot_be_trained_gets_4xx(app_client):
    client, tmp_path = app_client
    bad = client.post("/api/train", headers=OWNER,
                      json={"model": "conv32k5 maxpool conv64k13 dense10"})  # 12x12 < 13x13
    assert bad.status_code == 422 and "layer 3 'conv64k13'" in bad.json()["error"], bad.json()
    assert client.post("/api/train", headers=OWNER, json={"model": "conv32k5 maxpol"}).status_code == 422
    assert client.post("/api/train", headers=OWNER, json={"preset": "quick"}).status_code == 422
    assert client.post("/api/train", headers=OWNER, json={"epochs": 0}).status_code == 422
    assert client.post("/api/train", headers=OWNER, json={"epochs": "many"}).status_code == 400
    secret = tmp_path / "notes.txt"
    secret.write_text("conv32k5 private words")
    refused = client.post("/api/train", headers=OWNER, json={"model": str(secret)})
    assert refused.status_code == 422 and "not a file" in refused.json()["error"] and "private" not in refused.text
    assert client.get("/api/train").status_code == 404  # nothing was started


def test_a_client_that_leaves_mid_training_takes_nothing_with_it(app_client):
    client, _ = app_client
    client.post("/api/train", headers=OWNER, json={"preset": "fast", "epochs": 2, "limit": 3000})
    events_until(client, {"point"})  # reads one event and disconnects
    deadline = time.monotonic() + 120
    while client.get("/api/train").json()["state"] == "running" and time.monotonic() < deadline:
        assert client.get("/healthz").status_code == 200
        time.sleep(0.5)
    assert client.get("/api/train").json()["state"] == "done"
    assert client.get("/api/model").json()["name"] == "page-fast-mnist"


@pytest.fixture(scope="module")
def refusing_client(mnist_run, tmp_path_factory):
    """For requests that are refused before anything trains: the session's model, no training of its own."""
    return local_client(mnist_run, runs=tmp_path_factory.mktemp("refusing") / "page-runs")


@pytest.mark.parametrize("depth", [100, 10_000])
def test_a_deeply_nested_body_is_a_400(refusing_client, depth):
    client = refusing_client
    body = '{"model": ' + "[" * depth + "]" * depth + "}"
    reply = client.post("/api/train", headers={**OWNER, "content-type": "application/json"}, content=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith("the body: JSON nested too deeply (the limit is 32 levels)")
    assert client.get("/api/train").status_code == 404


def test_bodies_that_are_not_the_form_are_400(refusing_client):
    client = refusing_client
    misspelt = client.post("/api/train", headers=OWNER, json={"preset": "fast", "epoch": 3})
    assert misspelt.status_code == 400 and "epoch: Extra inputs are not permitted" in misspelt.json()["error"]
    assert client.post("/api/train", headers=OWNER, json=[1, 2]).status_code == 400
    for loose, words in (({"epochs": True}, "epochs: Input should be a valid integer"),
                         ({"epochs": "3"}, "epochs: Input should be a valid integer"),
                         ({"limit": 1000.0}, "limit: Input should be a valid integer"),
                         ({"preset": 1}, "preset: Input should be a valid string")):
        reply = client.post("/api/train", headers=OWNER, json={"preset": "fast", **loose})
        assert reply.status_code == 400 and words in reply.json()["error"], (loose, reply.text)
    stop = client.post("/api/train/stop", headers={**OWNER, "content-type": "application/json"}, content=b"")
    assert stop.status_code == 400 and "send {}" in stop.json()["error"]
    assert client.get("/api/train").status_code == 404


def test_the_train_tab_never_downloads_a_dataset(refusing_client, tmp_path, monkeypatch):
    client = refusing_client
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.delenv("CNNLAB_OFFLINE")  # even where downloads would be on
    reply = client.post("/api/train", headers=OWNER, json={"preset": "fast", "epochs": 1, "limit": 100})
    assert reply.status_code == 409, reply.text
    error = reply.json()["error"]
    assert error.startswith("the Train tab trains only on data already on this machine, and dataset 'mnist' is "
                            "missing") and "downloads are off" in error
    assert not (tmp_path / "no-data-here").exists() and client.get("/api/train").status_code == 404


def test_the_training_process_runs_offline(monkeypatch, tmp_path):
    """The child gets CNNLAB_OFFLINE=1 whatever the server's environment: it never downloads either."""
    from cnnlab.serving import training_job

    monkeypatch.delenv("CNNLAB_OFFLINE")
    started = []
    monkeypatch.setattr(training_job.subprocess, "Popen", lambda *args, **kwargs: started.append(kwargs) or FakeChild())
    job = training_job.start_job({"preset": "fast"}, tmp_path / "run", lambda job: None)
    assert started[0]["env"]["CNNLAB_OFFLINE"] == "1"
    assert job.wait(0, 10) == [{"type": "failed", "error": "the training process ended (exit code 0) without a result"}]


class FakeChild:
    """Stands for the training process: it prints nothing and has ended."""

    stdout = ()

    def wait(self) -> int:
        return 0
