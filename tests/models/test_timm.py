"""--model timm:NAME (cnnlab.models.timm_nets): a backbone's pretrained weights through timm's real
loading path, from a Hugging Face cache these tests write in the Hub's layout (this machine cannot
download weights), offline; then every command on the run it trains."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cnnlab.cli import main
from cnnlab.models.files import load_model
from cnnlab.training.loop import train
from tests.conftest import make_colour_folder

NAME = "test_resnet.r160_in1k"  # timm's own small test network, with a pretrained config (160 px, mean 0.5)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_weights():
    """``timm/test_resnet.r160_in1k`` in the Hub's cache layout, as a download would leave it: refs/main
    names a snapshot holding model.safetensors (ImageNet's 1,000 classes). Returns its weights."""
    from cnnlab.models.timm_nets import timm_module

    timm = timm_module()
    torch.manual_seed(7)
    network = timm.create_model("test_resnet", pretrained=False)
    repo = Path(os.environ["HF_HUB_CACHE"]) / f"models--timm--{NAME}"
    (repo / "snapshots" / COMMIT).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)  # no newline, as the Hub writes it
    weights = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(weights, repo / "snapshots" / COMMIT / "model.safetensors")
    return weights


@pytest.fixture(scope="module")
def timm_run(hub_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("timm")
    make_colour_folder(root / "colours" / "train", per_class=12, size=48, seed=1)
    make_colour_folder(root / "colours" / "test", per_class=4, size=48, seed=2)
    result = train(model=f"timm:{NAME}", dataset=root / "colours", epochs=2, batch_size=12, freeze=False,
                   out=str(root / "run"), progress=False, threads=1, pictures="none")
    return root, result


def test_the_backbone_loads_from_the_hub_cache_and_its_images_are_its_config(hub_weights, tmp_path, capsys):
    make_colour_folder(tmp_path / "colours", per_class=8, size=48, seed=3)
    result = train(init=None, model=f"timm:{NAME}", dataset=tmp_path / "colours", epochs=2, batch_size=8,
                   freeze=True, progress=False, threads=1, out=str(tmp_path / "run"), pictures="none")
    out = capsys.readouterr().out
    assert f"Starting from timm:{NAME}'s pretrained weights: loaded" in out and "fresh: Linear fc" in out
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["architecture"] == f"timm:{NAME}" and meta["input"] == {"channels": 3, "height": 160, "width": 160}
    assert meta["normalization"]["mean"] == [0.5, 0.5, 0.5] and meta["normalization"]["std"] == [0.5, 0.5, 0.5]
    trained = result.model.state_dict()
    # --freeze: every weight but the new output layer's is the cache's, as the Hub's file holds it.
    assert all(torch.equal(trained[k], v) for k, v in hub_weights.items() if not k.startswith("fc.")
               and not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trained["fc.weight"].shape == (3, 96)


def test_summary_explain_export_serve_and_init_work_on_a_timm_run(timm_run, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from cnnlab.serving.serve import ServeSettings, create_app

    root, _ = timm_run
    run, photo = root / "run", next((root / "colours" / "test" / "red").glob("*.png"))
    assert main(["summary", str(run)]) == 0
    assert "Conv2d" in capsys.readouterr().out
    assert main(["explain", str(run), str(photo), "--method", "gradcam", "--out", str(tmp_path / "why")]) == 0
    assert list((tmp_path / "why").glob("*.png"))
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "onnx" / "model.onnx"), str(photo), "--json"]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert main(["predict", str(run), str(photo), "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert from_onnx["label"] == from_run["label"]
    client = TestClient(create_app(run, ServeSettings(token="t" * 32)), base_url="http://127.0.0.1:8000")
    answer = client.post("/api/predict", files={"file": ("red.png", photo.read_bytes(), "image/png")})
    assert answer.status_code == 200 and answer.json()["label"] == from_run["label"]
    code = main(["train", "--init", str(run), "--dataset", str(root / "colours"), "--epochs", "2", "--batch-size", "12",
                 "--out", str(tmp_path / "again"), "--threads", "1", "--pictures", "none"])
    out, err = capsys.readouterr()
    assert f"Starting from {run}: loaded" in out
    assert code == 0 or "is chance level" in err, err  # 36 images, 2 epochs: its accuracy is not the point
    _model, info = load_model(tmp_path / "again")
    assert info.architecture == f"timm:{NAME}" and info.image_size == 160


def test_weights_missing_from_the_cache_are_one_line(hub_weights, tmp_path, capsys):
    make_colour_folder(tmp_path / "c", per_class=4, size=32)
    assert main(["train", "--model", "timm:resnet18.a1_in1k", "--dataset", str(tmp_path / "c"),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not in the Hugging Face cache" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert main(["train", "--model", "timm:no_such_net", "--out", str(tmp_path / "s")]) == 2
    assert "unknown timm model 'no_such_net'" in capsys.readouterr().err
    assert main(["train", "--model", "timm:resnet18.bogus", "--out", str(tmp_path / "t")]) == 2
    assert "unknown timm model 'resnet18.bogus'" in capsys.readouterr().err


def test_images_are_prepared_with_the_backbones_mean_and_std(timm_run):
    from cnnlab.using.predictor import Predictor

    root, _result = timm_run
    predictor = Predictor.load(root / "run")
    image = predictor.prepare(next((root / "colours" / "test" / "blue").glob("*.png"))).images[0]
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    assert predictor.info.mean == [0.5, 0.5, 0.5]


def test_the_command_line_trains_a_backbone_at_the_size_asked(hub_weights, tmp_path, capsys):
    make_colour_folder(tmp_path / "c", per_class=8, size=32)
    code = main(["train", "--model", f"timm:{NAME}", "--dataset", str(tmp_path / "c"), "--freeze", "--epochs", "1",
                 "--image-size", "64", "--out", str(tmp_path / "r"), "--threads", "1", "--pictures", "none"])
    out, err = capsys.readouterr()
    assert f"Starting from timm:{NAME}'s pretrained weights" in out
    assert code == 0 or "is chance level" in err, err
    _, info = load_model(tmp_path / "r")
    assert (info.image_size, info.in_channels, info.architecture) == (64, 3, f"timm:{NAME}")
    from cnnlab.training.run_folder import model_label

    assert model_label(f"timm:{NAME}") == "timm-test_resnet"
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["freeze"] and config["started_from"]["run"] == f"timm:{NAME}'s pretrained weights"
