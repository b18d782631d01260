"""cnnlab read: the bundled reader, used with no training first."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

import cnnlab
from cnnlab.handwriting.sequence import WEIGHTS, weighed_by_reading
from cnnlab.models.files import read_model_info
from cnnlab.using.predictor import Predictor
from cnnlab.using.reader import READER, load_reader, read
from tests.helpers import assert_one_line_error, png_claiming, run_cli
from tests.photolike import compose_number, render_photo

EXAMPLES = "docs/examples"


def test_the_reader_ships_as_safetensors_and_json_within_3_mb():
    weights, meta = READER / "model.safetensors", READER / "model.json"
    assert weights.stat().st_size + meta.stat().st_size + WEIGHTS.stat().st_size <= 3 * 1024 * 1024
    info = read_model_info(meta)
    assert info.class_names == [str(d) for d in range(10)] and info.image_size == 28
    with safe_open(weights, "pt") as handle:  # tensors only: nothing in the file can run
        assert len(list(handle.keys())) > 0
    config = json.loads((READER / "config.json").read_text())
    assert config["preset"] == "reader" and config["augment"] == "handwriting"


def test_read_decides_between_a_digit_and_a_number(capsys):
    code, out, _ = run_cli(capsys, "read", f"{EXAMPLES}/number-4794.jpg", f"{EXAMPLES}/seven.jpg",
                           f"{EXAMPLES}/two.jpg")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{EXAMPLES}/number-4794.jpg: 4794  [4 ")
    assert lines[1].startswith(f"{EXAMPLES}/seven.jpg: 7 (") and lines[2].startswith(f"{EXAMPLES}/two.jpg: 2 (")


def test_digit_and_number_force_either_and_exclude_each_other(capsys):
    code, out, _ = run_cli(capsys, "read", f"{EXAMPLES}/number-4794.jpg", "--digit", "--json")
    answer = json.loads(out)
    assert code == 0 and set(answer) == {"path", "label", "confidence", "top", "uncertain"}
    code, out, _ = run_cli(capsys, "read", f"{EXAMPLES}/one.jpg", "--number", "--json")
    assert code == 0 and json.loads(out)["number"] == "1"
    assert_one_line_error(capsys, "read", f"{EXAMPLES}/one.jpg", "--digit", "--number", match="exclude each other")
    assert_one_line_error(capsys, "read", f"{EXAMPLES}/one.jpg", "--top", "0", match="--top")


def test_a_folder_is_answered_file_by_file_and_bad_files_get_a_reason(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(f"{EXAMPLES}/number-4794.jpg", folder / "a-number.jpg")
    Image.fromarray(np.full((60, 80), 215, np.uint8)).save(folder / "b-blank.png")  # no ink
    (folder / "c-broken.png").write_bytes(b"\x89PNG not really")
    (folder / "d-bomb.png").write_bytes(png_claiming(40_000, 40_000))
    page = np.full((300, 900), 235, np.uint8)
    for row in range(8):  # a page of text: many short marks in lines
        for k in range(40):
            page[20 + 35 * row : 40 + 35 * row, 10 + 22 * k : 22 + 22 * k] = 30
    Image.fromarray(page).save(folder / "e-page.png")
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_cli(capsys, "read", folder)
    lines = out.splitlines()
    assert code == 2 and len(lines) == 5, out
    assert lines[0].startswith(f"{folder}/a-number.jpg: 4794  [")
    assert "no answer: no ink found" in lines[1] and "no answer: not a readable image" in lines[2]
    assert "no answer:" in lines[3] and "pixels" in lines[3]
    assert "no answer:" in lines[4] and "too many" in lines[4]
    assert "note: skipped 1 file that is not images: notes.txt" in err


def test_a_numbers_digits_are_weighed_by_the_sequence_reader():
    predictor = load_reader()
    prepared = predictor.prepare(f"{EXAMPLES}/number-4794.jpg", number=None)
    reading = prepared.reading
    assert len(reading.digits) == 4 and len(reading.views) == 4
    assert all(v.ndim == 2 and v.shape[1] == 11 for v in reading.views)
    plain = predictor.probabilities(np.stack(reading.digits)).numpy()
    images, weighed = reading.settled(plain)
    assert images is reading.digits and reading.recut is None  # the sequence reader counts four digits too
    assert np.allclose(weighed, weighed_by_reading(plain, reading.views))
    assert not np.allclose(weighed, plain, atol=1e-3)
    answer = read(f"{EXAMPLES}/number-4794.jpg")[0]  # the command answers with the weighed probabilities
    assert [d["confidence"] for d in answer.digits] == pytest.approx(weighed.max(1).tolist(), abs=1e-5)
    letters = Predictor(predictor.model, dataclasses.replace(predictor.info, class_names=list("abcdefghij")))
    as_letters = letters.answer([prepared])[0]  # not digits: nothing to weigh by
    assert [d["confidence"] for d in as_letters.digits] == pytest.approx(plain.max(1).tolist(), abs=1e-6)


def test_loading_the_reader_does_not_import_sympy():
    """torch's meta-tensor route to an empty network imports sympy: 0.7 s of a 3 s command."""
    code = "import sys; from cnnlab.using.reader import load_reader; load_reader(); print('sympy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_read_in_python_matches_the_command():
    importlib.import_module("cnnlab.using.reader")  # not called read: importing it would replace the function on cnnlab
    assert cnnlab.read is read
    number, digit = cnnlab.read([f"{EXAMPLES}/number-4794.jpg", f"{EXAMPLES}/seven.jpg"])
    assert number.number == "4794" and len(number.digits) == 4 and digit.label == "7" and digit.number is None
    assert read(f"{EXAMPLES}/seven.jpg", mode="number")[0].number == "7"
    with pytest.raises(cnnlab.CnnlabError, match="mode must be one of auto, digit, number"):
        read(f"{EXAMPLES}/seven.jpg", mode="numbers")
    assert load_reader() is load_reader()  # loaded once a process, not for every call


def test_photos_of_test_digits_are_read_as_digits_and_numbers(mnist, tmp_path):
    rng = np.random.default_rng(7)
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    singles = rng.choice(len(images), 40, replace=False)
    for i in singles:
        (tmp_path / f"single-{i}.png").write_bytes(render_photo(images[i], rng))
    numbers = [rng.choice(len(images), 4, replace=False) for _ in range(10)]
    for k, chosen in enumerate(numbers):
        (tmp_path / f"number-{k}.png").write_bytes(render_photo(compose_number(list(images[chosen]), rng), rng))
    answers = {p.path.rsplit("/", 1)[1]: p for p in read(tmp_path, progress=False)}
    digits_right = sum(answers[f"single-{i}.png"].label == str(labels[i]) for i in singles)
    numbers_right = sum(answers[f"number-{k}.png"].number == "".join(map(str, labels[c]))
                        for k, c in enumerate(numbers))
    assert digits_right >= 39 and numbers_right >= 9, (digits_right, numbers_right)


def test_serve_with_no_model_serves_the_reader(monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from cnnlab.serving import serve as serving

    served = []
    monkeypatch.setattr(serving, "serve", lambda model, *rest: served.append(model))
    code, _, _ = run_cli(capsys, "serve", "--port", "8123")
    assert code == 0 and served == [READER]
    client = TestClient(serving.create_app(READER), base_url="http://127.0.0.1")  # a Host the server answers
    with open(f"{EXAMPLES}/seven.jpg", "rb") as photo:
        answer = client.post("/api/predict", files={"file": ("seven.jpg", photo, "image/jpeg")}).json()
    assert answer["label"] == "7"
    with open(f"{EXAMPLES}/number-4794.jpg", "rb") as photo:
        answer = client.post("/api/predict?number=true", files={"file": ("number.jpg", photo, "image/jpeg")}).json()
    assert answer["number"] == "4794"
