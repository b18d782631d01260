"""Fuzz: the server's request bodies (JSON and multipart, images of every mode and size among
them, and the Train tab's JSON) get a right answer or one JSON error line with a 4xx: never a 5xx."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.fuzz.ledger import LEDGER, describe, fuzz, record_response
from tests.fuzz.strategies import JSON_VALUES

TOKEN = "fuzz-token-0123456789abcdef"
MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"]
FORMATS = {"PNG": ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I"], "JPEG": ["L", "RGB", "CMYK"],
           "TIFF": MODES, "BMP": ["L", "RGB", "P", "1"], "GIF": ["L", "P"], "WEBP": ["RGB", "RGBA"]}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from cnnlab.serving.serve import ServeSettings, create_app
    from cnnlab.using.reader import READER

    runs = tmp_path_factory.mktemp("fuzz-runs")
    app = create_app(READER, ServeSettings(token=TOKEN, runs=runs, max_upload_mb=1, workers=1))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as test_client:
        yield test_client
        stop_training(test_client)


def stop_training(client) -> None:
    """End a training a valid body started, and wait for it, so it outlives no test."""
    if client.get("/api/train").status_code != 200:
        return
    client.post("/api/train/stop", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + 60
    while client.get("/api/train").json()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)


@st.composite
def images(draw) -> tuple[str, bytes]:
    """``(case, file bytes)``: an image of any format, mode and size up to 300 pixels a side,
    of noise, of one shade, or of a stroke, as a phone or a program might write it."""
    file_format = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[file_format]))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["noise", "flat", "stroke"]))
    grey = {"noise": rng.integers(0, 256, (height, width)), "flat": np.full((height, width), rng.integers(0, 256)),
            "stroke": np.full((height, width), 255)}[content].astype(np.uint8)
    if content == "stroke":
        grey[height // 4 : 3 * height // 4, width // 2 - max(1, width // 12) : width // 2 + max(1, width // 12)] = 0
    image = Image.fromarray(grey, "L").convert(mode if mode not in ("I;16", "I", "F") else "L")
    if mode in ("I;16", "I", "F"):
        image = Image.fromarray(grey.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]) *
                                (257 if mode == "I;16" else 1))
    buffer = io.BytesIO()
    try:
        image.save(buffer, file_format)
    except (OSError, ValueError, KeyError):  # a mode this writer cannot store: sent as PNG of grey
        buffer = io.BytesIO()
        image.convert("L").save(buffer, "PNG")
    return f"an image of {content}, any format, mode and size", buffer.getvalue()


@st.composite
def predict_bodies(draw) -> tuple[str, dict]:
    """``(case, request)``: a body for /api/predict or /api/explain, well-formed or not."""
    how = draw(st.sampled_from(["multipart image", "json image", "multipart bytes", "json value", "json bytes",
                                "no content type", "other field", "deep json", "digits", "data url"]))
    if how in ("multipart image", "json image"):
        case, data = draw(images())
        if how == "json image":
            return case, {"json": {"image": base64.b64encode(data).decode()}}
        return case, {"files": {"file": ("x", data)}}
    if how == "multipart bytes":
        return "multipart, bytes that are not an image", {"files": {"file": ("x", draw(st.binary(max_size=300)))}}
    if how == "json value":
        return "JSON, any value", {"content": json.dumps(draw(JSON_VALUES)), "headers": {"content-type":
                                                                                        "application/json"}}
    if how == "json bytes":
        return "JSON content type, any bytes", {"content": draw(st.binary(max_size=300)),
                                                "headers": {"content-type": "application/json"}}
    if how == "deep json":
        depth = draw(st.sampled_from([33, 1_000, 100_000]))
        return "JSON nested deeply", {"content": '{"image":' + "[" * depth + "]" * depth + "}",
                                      "headers": {"content-type": "application/json"}}
    if how == "digits":
        return "JSON with a number of 5,000 digits", {"content": '{"image": ' + "1" * 5_000 + "}",
                                                      "headers": {"content-type": "application/json"}}
    if how == "data url":
        return "an empty data: URL", {"json": {"image": draw(st.sampled_from(["data:", "data:,", "data:image/png"]))}}
    if how == "other field":
        return "multipart, the image in another field", {"files": {"picture": ("x", b"\x89PNG")}}
    return "no content type", {"content": draw(st.binary(max_size=100))}


def answered(status: int, body: bytes) -> bool:
    """A prediction: a label among the classes, a confidence and probabilities that sum to 1."""
    reply = json.loads(body)
    probabilities = reply["probabilities"] if "probabilities" in reply else reply["digits"][0]["probabilities"]
    return status == 200 and 0 <= reply["confidence"] <= 1 and abs(sum(probabilities.values()) - 1) < 1e-3


@given(body=predict_bodies(), route=st.sampled_from(["/api/predict", "/api/predict?number=true", "/api/explain",
                                                      "/api/explain?method=occlusion", "/api/explain?method=x"]))
@fuzz(examples=500)
def test_predict_and_explain_bodies(client, body, route):
    describe("API: predict and explain", "POST /api/predict and /api/explain with images of every format, mode "
             "and size, bytes that are not images, JSON of any shape or depth, a missing field or content type")
    case, request = body
    case = "an unknown explain method" if route.endswith("method=x") else case
    LEDGER.begin()
    reply = client.post(route, **request)
    record_response("API: predict and explain", case, reply.status_code, reply.content,
                    lambda status, content: status == 200 and ("heatmap" in json.loads(content) or
                                                               answered(status, content)))


@st.composite
def train_bodies(draw) -> tuple[str, dict]:
    """``(case, request)``: a body for POST /api/train, with or without the token. The first valid one
    starts a training; the valid ones after it get 409 while it runs (the fixture ends it)."""
    fields = {"preset": st.sampled_from(["fast", "accurate", "best", "reader", "x"]) | JSON_VALUES,
              "model": st.sampled_from(["cnn", "mlp", "conv60000k1 maxpool conv8k3 dense10", "../etc/passwd",
                                        "conv8k3 dense10"]) | JSON_VALUES,
              "epochs": st.integers(-5, 100) | JSON_VALUES, "limit": st.integers(-5, 10**9) | JSON_VALUES}
    body = draw(st.fixed_dictionaries({}, optional=fields))
    how = draw(st.sampled_from(["token", "token", "token", "no token", "wrong token", "form", "deep"]))
    headers = {"Authorization": f"Bearer {TOKEN if how != 'wrong token' else 'x' * 40}"} if how != "no token" else {}
    if how == "form":
        return "a form post", {"data": {k: str(v) for k, v in body.items()}, "headers": headers}
    if how == "deep":
        depth = draw(st.sampled_from([33, 100_000]))
        return "JSON nested deeply", {"content": '{"preset":' + "[" * depth + "]" * depth + "}",
                                      "headers": {**headers, "content-type": "application/json"}}
    return f"JSON fields, {how}", {"content": json.dumps(body), "headers": {**headers,
                                                                           "content-type": "application/json"}}


@given(body=train_bodies())
@fuzz(examples=300)
def test_train_bodies(client, body):
    describe("API: train", "POST /api/train with any fields of any value (a spec that cannot fit among them), "
             "with the token, without it or with another, as a form, or nested deeply")
    case, request = body
    LEDGER.begin()
    reply = client.post("/api/train", **request)
    if reply.status_code == 202:
        assert "token" in case and "wrong" not in case
    record_response("API: train", case, reply.status_code, reply.content,
                    lambda status, content: status == 202 and json.loads(content)["state"] == "running")
