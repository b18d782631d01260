"""--init RUN (cnnlab.training.start): a run starts from another's weights; the output layer is new
when the classes differ; the loaded layers rest for the first epoch, or for good with --freeze; a
folder of photos fine-tuned from an MNIST run is read as predict reads photos; the start is recorded."""

import json

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models.files import load_model
from cnnlab.training.loop import resume_training, train
from tests.conftest import make_blobs


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from cnnlab.data import Dataset

    train_x, train_y = make_blobs(240, seed=1)
    test_x, test_y = make_blobs(60, seed=2)
    t = torch.from_numpy
    data = Dataset("toy", ["a", "b", "c"], t(train_x), t(train_y.astype(np.int64)), t(test_x),
                   t(test_y.astype(np.int64)))
    out = tmp_path_factory.mktemp("start") / "run"
    train(model="cnn", epochs=2, batch_size=32, dataset=data, out=str(out), progress=False, threads=1)
    return out


def four_classes(tmp_path):
    """A folder of four classes of blobs, as PNGs: other classes than the start's."""
    from PIL import Image

    images, labels = make_blobs(160, num_classes=4, seed=4)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (tmp_path / "four" / f"k{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "four" / f"k{label}" / f"{i}.png")
    return tmp_path / "four"


@pytest.mark.parametrize("schedule", ["onecycle", "step"])
def test_loads_what_fits_and_gives_a_new_output_layer_when_the_classes_differ(toy_run, tmp_path, capsys, schedule):
    start, _ = load_model(toy_run)
    seen = {}

    def after_epoch(row, model, _):
        seen[row["epoch"]] = {k: v.clone() for k, v in model.named_parameters()}

    result = train(init=str(toy_run), dataset=four_classes(tmp_path), epochs=3, batch_size=16, out=str(tmp_path / "r"),
                   progress=False, on_epoch=after_epoch, threads=1, schedule=schedule)
    out = capsys.readouterr().out
    assert f"Starting from {toy_run}: loaded " in out and "fresh: Linear" in out and "(the classes differ)" in out
    assert result.info.architecture == "cnn" and result.info.class_names == ["k0", "k1", "k2", "k3"]
    head = [k for k in seen[1] if k.startswith(out.split("fresh: Linear ")[1].split(" ")[0] + ".")]
    assert head and all(seen[1][k].shape[0] == 4 for k in head if k.endswith("weight"))
    loaded = {k: v for k, v in start.state_dict().items() if k in seen[1] and k not in head}
    # Epoch 1: only the new output layer learns; the loaded layers are as the start left them.
    assert loaded and all(torch.equal(seen[1][k], v) for k, v in loaded.items())
    assert not any(torch.equal(seen[3][k], v) for k, v in loaded.items())  # then every layer learns
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["init"] == str(toy_run) and config["started_from"]["run"] == str(toy_run.resolve())
    assert config["started_from"]["fresh"] == [out.split("fresh: ")[1].split(" (")[0]]
    assert "started from" in (tmp_path / "r" / "report.html").read_text()


def test_freeze_keeps_the_loaded_layers_for_the_whole_run(toy_run, tmp_path):
    start, _ = load_model(toy_run)
    result = train(init=str(toy_run), dataset=four_classes(tmp_path), epochs=3, batch_size=16, freeze=True,
                   progress=False, threads=1)
    weights = dict(result.model.named_parameters())
    same = [k for k, v in start.named_parameters() if weights[k].shape == v.shape]
    changed = [k for k in same if not torch.equal(weights[k], start.state_dict()[k])]
    assert len(same) == len(weights) - 2 and not changed  # all but the new output layer's weight and bias


def test_the_cli_fine_tunes_and_a_fine_tuned_run_resumes(toy_run, tmp_path, capsys):
    folder, run = four_classes(tmp_path), tmp_path / "cli"
    assert main(["train", "--init", str(toy_run), "--dataset", str(folder), "--epochs", "3", "--batch-size", "16",
                 "--out", str(run), "--threads", "1", "--pictures", "none"]) == 0
    assert "Starting from" in capsys.readouterr().out
    unbroken, _ = load_model(run)

    def stop_after_two(row, model, _):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(init=str(toy_run), dataset=str(folder), epochs=3, batch_size=16, out=str(tmp_path / "b"),
              progress=False, on_epoch=stop_after_two, threads=1, pictures="none")
    resumed = resume_training(tmp_path / "b", progress=False)
    assert all(torch.equal(v, unbroken.state_dict()[k]) for k, v in resumed.model.state_dict().items())


def test_a_bad_start_is_one_line(toy_run, tmp_path, capsys):
    assert main(["train", "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --init ") and "not found" in err and "Traceback" not in err
    assert main(["train", "--freeze", "--out", str(tmp_path / "b")]) == 2
    assert "--freeze needs --init RUN or a pretrained --model timm:NAME" in capsys.readouterr().err
    assert main(["train", "--init", str(toy_run), "--lr", "auto", "--out", str(tmp_path / "c")]) == 2
    assert "--lr auto sweeps a network from random weights" in capsys.readouterr().err
    assert main(["train", "--init", str(toy_run), "--grey", "--out", str(tmp_path / "d")]) == 2
    assert "--grey: a run that starts from --init" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="none of its layers fits"):
        train(init=str(toy_run), model="mlp", dataset=four_classes(tmp_path), epochs=1, progress=False)


def test_photos_fine_tuned_from_an_mnist_run_are_read_as_predict_reads_them(mnist_run, tmp_path):
    from cnnlab.handwriting.digit import read_as_mnist
    from cnnlab.using.predictor import Predictor
    from tests.photolike import uci_digits_as_photos

    photos, labels = uci_digits_as_photos(60, np.random.default_rng(0))
    for i, (photo, label) in enumerate(zip(photos, labels, strict=True)):
        (tmp_path / "uci" / str(label)).mkdir(parents=True, exist_ok=True)
        (tmp_path / "uci" / str(label) / f"{i}.png").write_bytes(photo)
    seen = {}

    def keep_input(row, model, to_input):
        seen["to_input"] = to_input

    result = train(init=str(mnist_run), dataset=tmp_path / "uci", epochs=2, batch_size=16, val_split=0,
                   out=str(tmp_path / "r"), progress=False, on_epoch=keep_input, pictures="none")
    meta = json.loads((tmp_path / "r" / "model.json").read_text())
    _, start = load_model(mnist_run)
    assert meta["preprocessing"] == "ink" and meta["kind"] == "digits"
    assert (meta["normalization"]["mean"], meta["normalization"]["std"]) == (start.mean, start.std)
    assert Predictor.load(tmp_path / "r").digit_steps
    first = sorted((tmp_path / "uci").glob("*/*.png"))[0]
    from cnnlab.data import load_dataset
    from cnnlab.handwriting.digit import folder_reader

    data = load_dataset(tmp_path / "uci", image_size=28, channels=1, read_image=folder_reader(result.info))
    assert any(np.array_equal(read_as_mnist(first), image.numpy()) for image in data.train_images) or any(
        np.array_equal(read_as_mnist(first), image.numpy()) for image in data.test_images)


def test_each_member_of_an_ensemble_gets_a_new_output_layer():
    from cnnlab.models.registry import build_model
    from cnnlab.training.start import output_tensors

    heads = output_tensors(build_model("cnn-wide-x3", 10, 28, 1))
    assert {name.split(".")[1] for name in heads} == {"0", "1", "2"} and len(heads) == 6


def test_a_fine_tuned_run_records_its_start_by_absolute_path(toy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(toy_run.parent)
    train(init=toy_run.name, dataset=four_classes(tmp_path), epochs=1, batch_size=16, out=str(tmp_path / "r"),
          progress=False, pictures="none")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["init"] == str(toy_run.resolve())
