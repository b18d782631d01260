"""Every CLI error path gives one line on stderr, a non-zero exit and no traceback."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.idx import encode_idx
from cnnlab.data.registry import FILES
from cnnlab.models.registry import MODELS
from cnnlab.training.loop import train
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture
def toy_run(toy_dataset, tmp_path):
    train(model="cnn", epochs=2, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "run"), progress=False)
    return tmp_path / "run"


def test_missing_data_directory(capsys, tmp_path):
    assert_one_line_error(capsys, "info", "--data-dir", tmp_path / "missing", match="missing")


def test_corrupt_gz_and_wrong_magic_in_mnist_folder(capsys, tmp_path, mnist_dir):
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_dir / "mnist", folder)
    (folder / FILES[2]).chmod(0o644)
    (folder / FILES[2]).write_bytes((mnist_dir / "mnist" / FILES[2]).read_bytes()[:5000])
    assert_one_line_error(capsys, "info", "--data-dir", tmp_path, match="wrong checksum")


def test_corrupt_gz_and_wrong_magic_in_idx_folder(capsys, idx_folder):
    labels = idx_folder / FILES[1]
    labels.write_bytes(labels.read_bytes()[:-4])
    assert_one_line_error(capsys, "info", "--dataset", idx_folder, match="corrupt gzip")
    labels.write_bytes(b"\x00\x00\x09\x01" + encode_idx(np.zeros(120, np.uint8))[4:])
    assert_one_line_error(capsys, "info", "--dataset", idx_folder, match="wrong magic number")


def test_unknown_names(capsys, tmp_path):
    assert_one_line_error(capsys, "train", "--model", "resnet", "--out", tmp_path / "r", match="unknown model")
    assert_one_line_error(capsys, "info", "--dataset", "cifar", match="unknown dataset")
    assert_one_line_error(capsys, "train", "--dataset", "cifar", "--out", tmp_path / "r", match="unknown dataset")
    assert_one_line_error(capsys, "info", "--dataset", "mnistt",
                          match="unknown dataset 'mnistt': did you mean 'mnist'?")
    missing = f"{tmp_path}/my-photos/"
    assert_one_line_error(capsys, "train", "--dataset", missing, "--out", tmp_path / "r",
                          match=f"error: {missing}: no such folder or file; give an image folder")
    assert_one_line_error(capsys, "summary", "", match="give the network to describe: a name from 'cnnlab models'")


@pytest.mark.parametrize(("option", "value"), [("--epochs", 0), ("--epochs", -1), ("--batch-size", 0),
                                               ("--epochs", "abc"), ("--val-split", 2), ("--image-size", 0),
                                               ("--image-size", 10_000), ("--image-size", "32x48"),
                                               ("--image-size", "big")])
def test_bad_numbers(capsys, tmp_path, idx_folder, option, value):
    assert_one_line_error(capsys, "train", "--dataset", idx_folder, option, value, "--out", tmp_path / "r",
                          match=option)


def test_a_refused_image_size_writes_nothing(capsys, tmp_path, idx_folder):
    assert_one_line_error(capsys, "train", "--dataset", idx_folder, "--image-size", "0", "--out", tmp_path / "r",
                          match="--image-size must be 8 to 512 pixels, got 0")
    assert not (tmp_path / "r").exists()


def test_unknown_option_and_command(capsys):
    assert_one_line_error(capsys, "train", "--bogus", match="--bogus")
    assert_one_line_error(capsys, "fly", match="fly")


def test_unreadable_image(capsys, toy_run, tmp_path):
    (tmp_path / "x.png").write_text("hello")
    assert_one_line_error(capsys, "predict", toy_run, tmp_path / "x.png", match="not a readable image")


def test_model_that_does_not_match_its_json(capsys, toy_run):
    meta = json.loads((toy_run / "model.json").read_text())
    meta["spec"] = MODELS["lenet5"].spec  # the weights are cnn's
    (toy_run / "model.json").write_text(json.dumps(meta))
    assert_one_line_error(capsys, "predict", toy_run, toy_run / "curves.png", match="does not match")
    meta["architecture"], meta["spec"] = "transformer", None
    (toy_run / "model.json").write_text(json.dumps(meta))
    assert_one_line_error(capsys, "evaluate", toy_run, match="unknown model")
    (toy_run / "model.safetensors").write_bytes(b"junk")
    assert_one_line_error(capsys, "evaluate", toy_run, match="")


def test_a_spec_and_a_spec_file_train_and_their_runs_predict(capsys, idx_folder, tmp_path):
    spec_file = tmp_path / "net.txt"
    spec_file.write_text("# two convs\nconv8k3-same maxpool\nconv8k3 maxpool dense16  # a dense layer\n")
    for model, out in (("conv8k3 maxpool dropout0.2 dense16", "a"), (spec_file, "b")):
        code, out_text, _ = run_cli(capsys, "train", "--dataset", idx_folder, "--model", model, "--batch-size", "16",
                                    "--out", tmp_path / out)
        assert code == 0 and "Test error:" in out_text, _
        assert json.loads((tmp_path / out / "model.json").read_text())["architecture"] == "spec"
        code, _, _ = run_cli(capsys, "predict", tmp_path / out, tmp_path / out / "samples.png")
        assert code == 0
    stored = json.loads((tmp_path / "b" / "model.json").read_text())["spec"]
    assert stored == "conv8k3-same maxpool conv8k3 maxpool dense16"
    run = tmp_path / "a"  # every command that takes a run takes a spec's run
    for command in (["evaluate", run], ["report", run], ["summary", run], ["export", run, "--format", "onnx"],
                    ["predict", run / "model.onnx", run / "samples.png"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 0, (command, err)
    from fastapi.testclient import TestClient

    from cnnlab.serving.serve import create_app

    with TestClient(create_app(run), base_url="http://127.0.0.1") as client:  # a Host the server answers
        reply = client.post("/api/predict", files={"file": (run / "samples.png").open("rb")})
    assert reply.status_code == 200 and set(reply.json()["probabilities"]) == {"0", "1", "2"}


@pytest.mark.parametrize(("spec", "match"), [
    ("conv8 blob", "layer 2 'blob': unknown kind 'blob'"), ("conv8k7s4 pool pool pool", "layer 4 'pool'"),
    ("conv500000k15", "budget"), ("", "the spec is empty"),
])
def test_a_bad_spec_is_one_line(capsys, tmp_path, spec, match):
    assert_one_line_error(capsys, "train", "--model", spec, "--out", tmp_path / "r", match=match)


def test_a_run_of_your_own_class_says_how_to_load_it(capsys, toy_dataset, tmp_path):
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 3))
    train(model=network, epochs=1, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "own"), progress=False)
    assert json.loads((tmp_path / "own" / "model.json").read_text())["architecture"] == (
        "python:torch.nn.modules.container.Sequential")
    assert_one_line_error(capsys, "evaluate", tmp_path / "own", match="cnnlab.load_model(")


def test_existing_run_is_not_overwritten(capsys, toy_run, idx_folder):
    before = (toy_run / "model.safetensors").read_bytes()
    assert_one_line_error(capsys, "train", "--dataset", idx_folder, "--out", toy_run, match="--overwrite")
    assert (toy_run / "model.safetensors").read_bytes() == before


def test_train_predict_evaluate_on_user_data(capsys, idx_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "train", "--dataset", idx_folder, "--epochs", "2", "--batch-size", "16")
    assert code == 0 and "Test error:" in out and "Epoch 2/2 - loss:" in out
    run = tmp_path / "runs" / "fast-toy-idx-seed0"
    code, _, _ = run_cli(capsys, "train", "--dataset", idx_folder, "--epochs", "2", "--limit", "40",
                         "--batch-size", "8")
    assert code == 0 and (tmp_path / "runs" / "fast-toy-idx-seed0-2" / "model.json").is_file()
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    code, out, _ = run_cli(capsys, "predict", run, image, "--json")
    record = json.loads(out)
    assert code == 0 and set(record) == {"path", "label", "confidence", "top", "uncertain"}
    code, out, _ = run_cli(capsys, "evaluate", run, "--dataset", idx_folder, "--json")
    assert code == 0 and 0 <= json.loads(out)["test_accuracy"] <= 1
    code, out, _ = run_cli(capsys, "evaluate", run)  # the model remembers where its data is
    assert code == 0 and out.startswith("Test error:")


def test_models_lists_every_model(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    names = [r["name"] for r in rows]
    assert code == 0 and names[:6] == ["cnn", "cnn-fast", "cnn-small", "cnn-wide", "cnn-wide-x3", "mlp"]
    assert all(r["parameters"] > 0 and r["flops"] > 0 and r["description"] for r in rows)


def test_info_and_show_on_mnist(capsys, mnist_dir, tmp_path):
    code, out, _ = run_cli(capsys, "info", "--dataset", "mnist", "--data-dir", mnist_dir, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["splits"]["test"]["count"] == 10000
    code, out, _ = run_cli(capsys, "show", "--data-dir", mnist_dir, "--out", tmp_path / "grid.png", "--count", 16)
    with Image.open(tmp_path / "grid.png") as grid:
        assert code == 0 and grid.width > 300


def test_module_entry_point_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--epochs", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "error: --epochs must be at least 1, got 0\n"


def test_predict_number_and_saved_inputs(capsys, toy_run, tmp_path):
    image = np.full((60, 200), 230, np.uint8)
    for left in (20, 80, 140):
        image[10:50, left : left + 30] = 20  # three dark marks on light paper
    Image.fromarray(image).save(tmp_path / "three.png")
    capsys.readouterr()  # the fixture's training lines
    code, out, _ = run_cli(capsys, "predict", toy_run, tmp_path / "three.png", "--number", "--json",
                           "--save-preprocessed", tmp_path / "seen")
    record = json.loads(out)
    assert code == 0 and len(record["number"]) == 3 and len(record["digits"]) == 3
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["three-1.png", "three-2.png", "three-3.png"]
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "blank.png")
    assert_one_line_error(capsys, "predict", toy_run, tmp_path / "blank.png", "--number", match="no ink")


def test_report_command_rebuilds(capsys, idx_folder, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "train", "--dataset", idx_folder, "--epochs", "1", "--out", run)
    (run / "report.html").unlink()
    code, out, _ = run_cli(capsys, "report", run)
    assert code == 0 and (run / "report.html").is_file() and "report.html" in out
    assert_one_line_error(capsys, "report", tmp_path, match="not a run directory")


def test_the_command_leaves_quickly_with_its_output_and_exit_code(tmp_path):
    """``python -m cnnlab`` skips the interpreter's teardown: what it printed to a pipe must still
    arrive in full, with the right exit code, for success and for a user error alike."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe is block-buffered
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "models"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0 and "cnn-fast" in proc.stdout and proc.stdout.endswith("\n")
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(tmp_path / "no-model"), "x.png"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_a_run_that_ends_at_chance_says_why_exits_non_zero_and_keeps_its_files(capsys, mnist_dir, tmp_path):
    code, out, err = run_cli(capsys, "train", "--limit", 4000, "--lr", 1.0, "--data-dir", mnist_dir,
                             "--out", tmp_path / "run", "--threads", 1)
    assert code == 2 and "is chance level for 10 classes: the learning rate 1 is likely too high" in err
    assert len(err.strip().splitlines()) == 1 and "warning: accuracy" in out
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "report.html").is_file()


def test_show_takes_each_class_in_turn():
    """A folder's images come class by class; show's sample takes the first of each class in turn."""
    import torch

    from cnnlab.cli_study import every_class_in_turn

    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 4)  # as a folder of three classes loads
    assert labels[every_class_in_turn(labels, 8)].tolist() == [0, 1, 2, 0, 1, 2, 0, 2]
    assert every_class_in_turn(labels, 100).tolist() == [0, 5, 7, 1, 6, 8, 2, 9, 3, 10, 4]
