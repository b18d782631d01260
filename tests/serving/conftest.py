"""What the server's tests share: a small MNIST model, and a TestClient that speaks as the owner's
page does (the loopback ``Host``, and the token in ``OWNER``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cnnlab.serving.serve import ServeSettings, create_app
from cnnlab.training.loop import train

TOKEN = "a-test-token-of-the-owner-0123456789"
OWNER = {"authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1:8000"  # the TestClient's own default, http://testserver, is not a name of this machine


def local_client(run, **settings) -> TestClient:
    """A TestClient for ``create_app(run)`` with the test token and any other ``ServeSettings``."""
    settings.setdefault("workers", 1)  # the Train tab needs one process to own it
    return TestClient(create_app(run, ServeSettings(token=TOKEN, **settings)), base_url=LOCAL)


@pytest.fixture(scope="session")
def mnist_run(mnist_dir, tmp_path_factory):
    """cnn-fast on 6,000 MNIST images: a real digit model in a few seconds."""
    out = tmp_path_factory.mktemp("serve") / "run"
    train(model="cnn-fast", epochs=1, limit=6000, data_dir=str(mnist_dir), out=str(out), progress=False)
    return out
