"""cnnlab explain: the pictures and arrays for digit, colour, dense-only and ensemble models, and its
one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import train
from cnnlab.cli import app
from cnnlab.models.attribution import METHODS
from cnnlab.using.explanation import explain
from cnnlab.using.predict import predict_files
from tests.helpers import assert_one_line_error, run_cli

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
DIGITS = [EXAMPLES / f"{name}.jpg" for name in ("seven", "two", "one")]


@pytest.fixture(scope="module")
def digit_run(mnist_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("explain") / "run"
    train(dataset="mnist", data_dir=mnist_dir, limit=6000, out=str(out), progress=False)
    return out


def test_explain_gives_the_answer_the_maps_and_every_layer(digit_run, tmp_path):
    results = explain(digit_run, DIGITS, out=tmp_path / "why", progress=False)
    predicted = predict_files(digit_run, DIGITS, progress=False)
    assert [e.label for e in results] == [p.label for p in predicted] == ["7", "2", "1"]
    # one answer everywhere: explain's confidence is predict's, shifts included
    assert [e.confidence for e in results] == [p.confidence for p in predicted]
    for e in results:
        assert e.error is None and e.target == e.label
        assert list(e.maps) == list(METHODS)
        assert all(m.shape == (28, 28) and np.isfinite(m).all() for m in e.maps.values())
        assert e.image.shape == (28, 28) and e.image.dtype == np.uint8
        assert [layer.kind for layer in e.layers] == ["conv", "conv", "dense", "dense"]
        picture = Image.open(e.picture)
        assert picture.width > 800 and picture.height > 600
    assert sorted(p.name for p in (tmp_path / "why").iterdir()) == ["one.png", "seven.png", "two.png"]


def test_a_target_class_and_pictures_that_are_never_replaced(digit_run, tmp_path):
    first = explain(digit_run, DIGITS[:1], ["saliency"], out=tmp_path, progress=False)[0]
    again = explain(digit_run, DIGITS[:1], ["saliency"], target="9", out=tmp_path, progress=False)[0]
    assert (first.picture.name, again.picture.name) == ("seven.png", "seven-2.png")
    assert again.label == "7" and again.target == "9"
    assert not np.allclose(first.maps["saliency"], again.maps["saliency"])


def test_a_pixel_csvs_rows_get_a_picture_each(digit_run, mnist, tmp_path):
    csv = tmp_path / "rows.csv"
    rows = [",".join(map(str, mnist.test_images[i].numpy().ravel())) for i in range(2)]
    csv.write_text(",".join(f"pixel{i}" for i in range(784)) + "\n" + "\n".join(rows) + "\n")
    results = explain(digit_run, [csv], [" Saliency", "all "], out=tmp_path / "why", progress=False)
    assert [e.label for e in results] == ["7", "2"] and list(results[0].maps) == list(METHODS)
    assert [e.picture.name for e in results] == ["rows-row1.png", "rows-row2.png"]


def test_colour_model(colour_run, tmp_path):
    held_out = sorted((colour_run.parent / "held-out").rglob("*.png"))
    results = explain(colour_run, held_out, ["gradcam", "integrated-gradients"], out=tmp_path, progress=False)
    for e in results:
        assert e.label == Path(e.path).parent.name  # the colour it is named after
        assert e.image.shape == (64, 64, 3) and e.maps["gradcam"].shape == (64, 64)
        assert e.picture.is_file()


def test_the_cli_writes_one_picture_per_image_and_answers_the_rest(digit_run, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in DIGITS[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    Image.new("L", (60, 60), 255).save(folder / "blank.png")  # no ink: its own answer, the rest go on
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_cli(capsys, "explain", digit_run, folder, "--method", "saliency,occlusion",
                             "--out", tmp_path / "out")
    assert code != 0
    assert "seven.jpg: 7" in out and "two.jpg: 2" in out and "blank.png: no answer" in out
    assert "skipped 1 file" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 of 3 images got no explanation")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seven.png", "two.png"]


def test_bad_input_gets_one_line(digit_run, tmp_path, capsys):
    digit = str(DIGITS[0])
    assert_one_line_error(capsys, "explain", str(digit_run), digit, "--method", "heat", match="unknown method 'heat'")
    assert_one_line_error(capsys, "explain", str(digit_run), digit, "--target", "10",
                          match="--target '10' is not one of the model's classes")
    (tmp_path / "taken").write_text("a file")
    assert_one_line_error(capsys, "explain", str(digit_run), digit, "--out", str(tmp_path / "taken"),
                          match="exists and is not a folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_network_without_conv_layers(mnist_dir, tmp_path, capsys):
    run = tmp_path / "mlp"
    train(dataset="mnist", data_dir=mnist_dir, model="mlp", limit=2000, out=str(run), progress=False)
    result = explain(run, DIGITS[:1], out=tmp_path / "why", progress=False)[0]
    assert list(result.maps) == ["saliency", "integrated-gradients", "occlusion"]
    assert "no Grad-CAM" in capsys.readouterr().err
    assert_one_line_error(capsys, "explain", str(run), str(DIGITS[0]), "--method", "gradcam",
                          match="gradcam needs a conv layer, and mlp has none")


def test_the_command_is_registered():
    assert "explain" in [c.name for c in app.registered_commands]


def test_cnnlab_explain_is_the_function_even_after_its_module_is_imported():
    import cnnlab
    import cnnlab.using.explanation  # a submodule named explain would replace the function on the package

    assert cnnlab.explain is cnnlab.using.explanation.explain


def test_evaluating_a_colour_model_on_mnist_names_the_classes_that_disagree(colour_run, mnist_dir, capsys):
    assert_one_line_error(capsys, "evaluate", colour_run, "--dataset", "mnist", "--data-dir", mnist_dir,
                          match="the model knows 3 classes (blue, green, red) but 'mnist' has 10 (0, 1, 2, 3, 4, 5 "
                                "and 4 more); evaluate it on data of its classes")
