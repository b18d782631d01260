"""Issue 39's reproductions under "Why" that no other test made exactly as the issue tells them:
each as a stranger, a second job or a hand-made file would do it, and the clean answer it now gets
(the others are in tests/serving, tests/training, tests/models and tests/data)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.models.files import MODEL_FILE, ModelInfo, load_model, save_model
from cnnlab.models.registry import build_model
from cnnlab.serving.serve import ServeSettings, create_app
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.using.predict import png_bytes, predict_files
from cnnlab.using.reader import READER
from tests.helpers import assert_one_line_error, run_cli

TOKEN = "a-test-token-of-the-owner-0123456789"
OWNER = {"authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1:8000"
TOO_LARGE = "conv60000k1 maxpool conv8k3 dense10"  # passes the parameter and map budgets; 54 GB to train
EVIL = "http://evil.example"


@pytest.fixture
def served_run(tmp_path) -> Path:
    """An (untrained) cnn-fast on MNIST's classes: what the server serves."""
    run = tmp_path / "served"
    save_model(run, build_model("cnn-fast"), ModelInfo("cnn-fast", [str(d) for d in range(10)], dataset="mnist"))
    return run


def client_of(run: Path, runs: Path, **settings) -> TestClient:
    settings.setdefault("workers", 1)  # the Train tab needs one process to own it
    return TestClient(create_app(run, ServeSettings(token=TOKEN, runs=runs, **settings)), base_url=LOCAL)


def one_line_error(reply) -> str:
    error = reply.json()["error"]
    assert "\n" not in error and "Traceback" not in reply.text and " at 0x" not in error, error
    return error


# "Back-to-back `best` runs fill the disk with `page-*` folders. A server with no MNIST on disk
# started a download for a stranger."

def test_a_strangers_back_to_back_best_runs_make_no_page_folders(served_run, tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(mnist_dir))
    runs = tmp_path / "page-runs"
    client = client_of(served_run, runs)
    for _ in range(3):
        reply = client.post("/api/train", json={"preset": "best"})
        assert reply.status_code == 401 and "needs its token" in one_line_error(reply)
    assert not runs.exists() and client.get("/api/train").status_code == 404


def test_a_stranger_starts_no_download_on_a_server_without_mnist(served_run, tmp_path, monkeypatch):
    from cnnlab.data import download

    empty = tmp_path / "no-data-here"
    monkeypatch.setenv("CNNLAB_DATA", str(empty))
    monkeypatch.delenv("CNNLAB_OFFLINE")  # downloads on, as on the server
    fetched = []
    monkeypatch.setattr(download, "_download_one", lambda *args: fetched.append(args))
    monkeypatch.setattr(download, "_fetch", lambda *args: fetched.append(args))
    client = client_of(served_run, tmp_path / "page-runs")
    reply = client.post("/api/train", json={"preset": "fast", "epochs": 1, "limit": 100})
    assert reply.status_code == 401 and "needs its token" in one_line_error(reply)
    assert not fetched and not empty.exists() and not (tmp_path / "page-runs").exists()


# "a cross-site form `POST /api/train/stop` from another origin stops a training (200)."

class RunningChild:
    """Stands for the Train tab's training process: running until it gets SIGINT (Stop), then it
    says it stopped, as cnnlab.serving.training_job's child does."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.ended = threading.Event()
        self.stdout = self.lines()

    def lines(self):
        self.ended.wait(60)
        yield json.dumps({"type": "stopped", "run": "page", "epochs_done": 0, "checkpoint": False}) + "\n"

    def poll(self) -> int | None:
        return 0 if self.ended.is_set() else None

    def send_signal(self, sent: int) -> None:
        self.signals.append(sent)
        self.ended.set()

    def wait(self, timeout: float | None = None) -> int:
        self.ended.wait(timeout)
        return 0

    def kill(self) -> None:
        self.ended.set()


def test_a_cross_site_form_cannot_stop_a_training(served_run, tmp_path, mnist_dir, monkeypatch):
    from cnnlab.serving import training_job

    monkeypatch.setenv("CNNLAB_DATA", str(mnist_dir))
    children = []

    def start_child(*_args, **_options) -> RunningChild:
        children.append(RunningChild())
        return children[-1]

    monkeypatch.setattr(training_job.subprocess, "Popen", start_child)
    client = client_of(served_run, tmp_path / "page-runs")
    started = client.post("/api/train", headers=OWNER, json={"preset": "fast", "epochs": 1, "limit": 100})
    assert started.status_code == 202 and len(children) == 1
    # What a form on another site sends: its origin, no token, a form body (the browser asks no one first).
    form = {"origin": EVIL, "sec-fetch-site": "cross-site", "content-type": "application/x-www-form-urlencoded"}
    reply = client.post("/api/train/stop", content=b"stop=1", headers=form)
    assert reply.status_code == 403
    assert one_line_error(reply).startswith(f"a request from another site ({EVIL}) cannot change this server")
    older = client.post("/api/train/stop", data={"stop": "1"}, headers={"sec-fetch-site": "cross-site"})  # no Origin
    assert older.status_code == 403 and "(Sec-Fetch-Site: cross-site)" in one_line_error(older)
    bare = client.post("/api/train/stop", data={"stop": "1"})  # neither header: still no token
    assert bare.status_code == 401
    assert children[0].signals == [] and client.get("/api/train").json()["state"] == "running"
    assert client.post("/api/train/stop", headers=OWNER, json={}).status_code == 200  # the owner's Stop
    assert children[0].signals == [signal.SIGINT]
    deadline = time.monotonic() + 10
    while client.get("/api/train").json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get("/api/train").json()["state"] == "stopped"


# "`/api/train` accepts the same spec."

def test_the_train_tab_refuses_a_network_that_cannot_fit(served_run, tmp_path, mnist_dir, monkeypatch):
    from cnnlab.models import registry
    from cnnlab.training import system

    monkeypatch.setenv("CNNLAB_DATA", str(mnist_dir))
    monkeypatch.setattr(system, "free_memory", lambda device=None: 20 * 10**9)
    client = client_of(served_run, tmp_path / "page-runs")  # its model is built: now no network may be
    monkeypatch.setattr(registry, "build", lambda *a, **k: pytest.fail("a network was built before the memory check"))
    reply = client.post("/api/train", headers=OWNER, json={"model": TOO_LARGE})
    assert reply.status_code == 422, reply.text
    error = one_line_error(reply)
    assert error == (f"the network '{TOO_LARGE}' needs about 54.3 GB to train at batch 128 (weights with gradients "
                     "and Adam's state 71.2 MB, activations 54.2 GB); this machine has 20.0 GB free: lower "
                     "--batch-size to 47 or less, or the filters")
    assert client.get("/api/train").status_code == 404 and not (tmp_path / "page-runs").exists()


# "the same in `model.json` is a `RecursionError` traceback in ... serve"; "NaN weights are served
# ("nan%"; `--json` writes a bare `NaN`)".

@pytest.fixture
def no_listening(monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(app))
    return started


def test_serve_refuses_a_model_json_nested_10000_deep_in_one_line(served_run, capsys, no_listening):
    meta = json.loads((served_run / "model.json").read_text())
    text = json.dumps({k: v for k, v in meta.items() if k != "dataset"})
    (served_run / "model.json").write_text(text[:-1] + ', "dataset": ' + "[" * 10_000 + "]" * 10_000 + "}")
    assert_one_line_error(capsys, "serve", served_run, match="model.json: JSON nested too deeply (the limit is 32")
    assert not no_listening


def nan_weights(run: Path) -> str:
    tensors = load_file(run / MODEL_FILE)
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, run / MODEL_FILE)
    return name


def test_nan_weights_are_neither_served_nor_written_as_bare_nan(served_run, tmp_path, capsys, no_listening):
    name = nan_weights(served_run)
    refusal = f"the weights in {name} include NaN values"
    assert_one_line_error(capsys, "serve", served_run, match=refusal)
    assert not no_listening
    with pytest.raises(CnnlabError, match=refusal):
        create_app(served_run, ServeSettings(token=TOKEN))
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(np.pad(np.full((12, 4), 255, np.uint8), 8)))
    for args in (["predict", served_run, digit, "--json"], ["evaluate", served_run, "--json"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and out == "" and "NaN" not in out and refusal in err and err.count("\n") == 1, (args, err)


# "an unreadable upload says `cannot identify image file <_io.BytesIO object at 0x7fe...>`"

def test_an_unreadable_upload_is_answered_without_an_object_repr(served_run, tmp_path):
    client = client_of(served_run, tmp_path / "page-runs", train=False)
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    for body in (b"not an image at all", png_bytes(noise)[:5_000]):  # not an image; a PNG cut short
        for path in ("/api/predict", "/api/explain"):
            reply = client.post(path, files={"file": ("upload.png", body)})
            assert reply.status_code == 415, reply.text
            error = one_line_error(reply)
            assert error.startswith("the image: not a readable image") and "BytesIO" not in error, error


# "`cnnlab train --out X --overwrite` while another training writes X: both print "Saved"; X ends
# with the second's model, and once a `checkpoint.pt` from one network beside the other's model."

FIRST = """
import sys, time
from pathlib import Path
from cnnlab import train

def hold_after_the_first_epoch(row, *_):
    print("epoch", row["epoch"], flush=True)
    deadline = time.monotonic() + 60
    while row["epoch"] == 1 and not Path(sys.argv[3]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)

train(dataset=sys.argv[1], out=sys.argv[2], model="conv8k3 maxpool dense16", epochs=2, batch_size=32,
      augment="none", threads=1, progress=False, on_epoch=hold_after_the_first_epoch)
print("Saved", flush=True)
"""


def test_overwrite_while_another_training_writes_the_folder_is_refused(idx_folder, tmp_path, capsys):
    run, go = tmp_path / "X", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", FIRST, str(idx_folder), str(run), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = [first.stdout.readline()]
        while said[-1] and said[-1].strip() != "epoch 1":  # its first line is "Training 'conv8k3 ..."
            said.append(first.stdout.readline())
        assert said[-1], f"the first training ended before its first epoch: {''.join(said)}"
        code, out, err = run_cli(capsys, "train", "--dataset", idx_folder, "--model", "mlp", "--epochs", "1",
                                 "--threads", "1", "--out", run, "--overwrite")
        assert code == 2 and "Saved" not in out and err.count("\n") == 1, err
        assert err.startswith(f"error: {run} is being written by another training (pid {first.pid} on "), err
    finally:
        go.touch()
        rest = first.communicate(timeout=120)[0]
    assert first.returncode == 0 and rest.splitlines()[-1] == "Saved", rest
    _, info = load_model(run)
    assert info.architecture == "spec" and info.spec == "conv8k3 maxpool dense16"  # the first's model...
    assert load_checkpoint(run)["config"]["model"] == "conv8k3 maxpool dense16"  # ...and its checkpoint beside it


# "a folder with one class trains "to 0.00% error""

def test_training_on_a_folder_of_one_class_is_one_line_and_makes_no_run(tmp_path, capsys):
    import cnnlab

    (tmp_path / "cats" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.new("L", (16, 16), 40 * i).save(tmp_path / "cats" / "cat" / f"{i}.png")
    run = tmp_path / "run"
    assert_one_line_error(capsys, "train", "--dataset", tmp_path / "cats", "--out", run,
                          match="has one class folder (cat); a classifier needs at least two")
    with pytest.raises(cnnlab.CnnlabError, match="a classifier needs at least two"):
        cnnlab.train(dataset=tmp_path / "cats", out=run, progress=False)
    assert not run.exists()


# "a 16-bit TIFF is clipped at 255 instead of scaled ("no ink found")"

def test_a_16_bit_tiff_of_a_digit_is_read_as_its_8_bit_scan(tmp_path, mnist):
    scan = Image.fromarray(255 - mnist.test_images[0].numpy()).resize((112, 112), Image.Resampling.BICUBIC)
    scan.save(tmp_path / "8-bit.png")
    Image.fromarray(np.asarray(scan).astype(np.uint16) * 257).save(tmp_path / "16-bit.tif")
    assert Image.open(tmp_path / "16-bit.tif").mode == "I;16"
    eight, sixteen = predict_files(READER, [tmp_path / "8-bit.png", tmp_path / "16-bit.tif"])
    assert eight.error is None and eight.label == str(int(mnist.test_labels[0]))
    assert sixteen.error is None and {**sixteen.to_json(), "path": ""} == {**eight.to_json(), "path": ""}
