"""What the server's tests share: a small MNIST model, and a TestClient that speaks as the owner's
page does (the loopback ``Host``, and the token in ``OWNER``)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cnnlab.serving.serve import ServeSettings, create_app

TOKEN = "a-test-token-of-the-owner-0123456789"
OWNER = {"authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1:8000"  # the TestClient's own default, http://testserver, is not a name of this machine


def local_client(run, **settings) -> TestClient:
    """A TestClient for ``create_app(run)`` with the test token and any other ``ServeSettings``."""
    settings.setdefault("workers", 1)  # the Train tab needs one process to own it
    return TestClient(create_app(run, ServeSettings(token=TOKEN, **settings)), base_url=LOCAL)
