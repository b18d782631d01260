"""One answer everywhere (issue 41, item 3): for the same image and model, ``cnnlab predict``, ``cnnlab
explain``, ``cnnlab.load(run).predict``, the server's ``/api/predict`` (which the page asks) and, for the
bundled reader, ``cnnlab read``, give the same label and confidence: one Predictor, the same
preprocessing and shifts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnnlab
from cnnlab.using.predict import predict_files
from cnnlab.using.reader import READER, read
from tests.helpers import run_cli
from tests.serving.conftest import OWNER, local_client

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
PHOTOS = [EXAMPLES / f"{name}.jpg" for name in ("seven", "two", "one")]


def answers_of(predictions) -> list[tuple[str, float]]:
    return [(p.label, round(p.confidence, 6)) for p in predictions]


def test_predict_explain_load_the_command_and_the_api_agree(mnist_run, tmp_path, capsys):
    expected = answers_of(predict_files(mnist_run, PHOTOS, progress=False))
    assert [label for label, _ in expected] == ["7", "2", "1"]

    assert answers_of(cnnlab.load(mnist_run).predict(PHOTOS)) == expected
    explained = cnnlab.explain(mnist_run, PHOTOS, out=None, progress=False)
    assert answers_of(explained) == expected

    code, out, err = run_cli(capsys, "predict", str(mnist_run), *map(str, PHOTOS), "--json")
    assert code == 0, err
    assert [(a["label"], round(a["confidence"], 6)) for a in map(json.loads, out.splitlines())] == expected

    with local_client(mnist_run) as client:
        served = [client.post("/api/predict", files={"file": (p.name, p.read_bytes())}, headers=OWNER).json()
                  for p in PHOTOS]
    assert [a["label"] for a in served] == [label for label, _ in expected]
    assert [a["confidence"] for a in served] == pytest.approx([confidence for _, confidence in expected], abs=1e-6)


def test_read_is_predict_with_the_bundled_reader():
    assert answers_of(read(PHOTOS, mode="digit", progress=False)) == answers_of(
        predict_files(READER, PHOTOS, number=False, progress=False))
