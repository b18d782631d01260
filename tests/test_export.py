"""ONNX export (cnnlab.using.export): every registered model, onnxruntime against torch on MNIST test images."""

import importlib.util
import subprocess
import sys

import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo, load_model, save_model
from cnnlab.models.inference import predict_logits, to_input
from cnnlab.models.registry import MODELS, build_model
from cnnlab.using.export import export_onnx
from cnnlab.using.predict import predict_files

MEAN, STD = 0.1307, 0.3081


@pytest.fixture(scope="module")
def test_inputs(mnist):
    return to_input(mnist.test_images[:1000], MEAN, STD)


@pytest.mark.parametrize("architecture", list(MODELS))
def test_onnxruntime_matches_torch_for_every_model(architecture, test_inputs, tmp_path):
    torch.manual_seed(0)
    model = build_model(architecture)
    with torch.no_grad():  # batch-norm statistics that are not the defaults, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    save_model(tmp_path, model, ModelInfo(architecture, [str(d) for d in range(10)], 28, MEAN, STD, "mnist"))
    onnx_path = export_onnx(tmp_path)
    assert onnx_path == tmp_path / "model.onnx"
    exported, info = load_model(onnx_path)
    assert info.architecture == architecture
    expected = predict_logits(model.eval(), test_inputs)
    got = predict_logits(exported, test_inputs)  # batches of 1000: the batch size is dynamic
    assert got.shape == (1000, 10)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), float((got - expected).abs().max())
    assert torch.allclose(predict_logits(exported, test_inputs[:3]), expected[:3], atol=1e-4, rtol=0)


def test_cli_export_then_predict_with_the_onnx_file(mnist, tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "run", build_model("cnn-fast"), ModelInfo("cnn-fast", [str(d) for d in range(10)], 28,
                                                                     MEAN, STD, "mnist"))
    # In a fresh process: the exporter logs its notes on its first use only.
    done = subprocess.run([sys.executable, "-m", "cnnlab", "export", str(tmp_path / "run"), "--out",
                           str(tmp_path / "deploy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "model.onnx" in done.stdout
    assert done.stderr == "", done.stderr  # not the exporter's "torchvision is not installed" notes
    assert {p.name for p in (tmp_path / "deploy").iterdir()} == {"model.onnx", "model.json"}
    Image.fromarray(255 - mnist.test_images[0].numpy()).resize((84, 84)).save(tmp_path / "digit.png")
    by_torch, = predict_files(tmp_path / "run", [tmp_path / "digit.png"])
    by_onnx, = predict_files(tmp_path / "deploy" / "model.onnx", [tmp_path / "digit.png"])
    assert by_onnx.label == by_torch.label and by_onnx.confidence == pytest.approx(by_torch.confidence, abs=1e-5)


def test_export_errors_are_one_line(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    save_model(tmp_path / "run", build_model("mlp"), ModelInfo("mlp", list("ab") + [str(d) for d in range(8)]))
    assert main(["export", str(tmp_path / "run"), "--format", "tflite"]) == 2
    assert "--format must be one of onnx" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "bad" / "model.json").write_text((tmp_path / "run" / "model.json").read_text())
    with pytest.raises(CnnlabError, match="not a loadable ONNX model"):
        load_model(tmp_path / "bad" / "model.onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(CnnlabError, match=r"pip install 'cnnlab\[onnx\]'"):
        load_model(tmp_path / "bad" / "model.onnx")
    assert not list((tmp_path / "run").glob("*.onnx"))  # a failed export leaves nothing behind


def test_a_colour_model_exports_taking_three_channels(colour_run, tmp_path):
    import onnx

    from cnnlab.using.export import export_onnx

    target = export_onnx(colour_run, tmp_path / "deploy")
    dims = onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 64, 64] and dims[0].dim_param  # (N, 3, 64, 64), N dynamic
    held_out = colour_run.parent / "held-out"
    by_torch = predict_files(colour_run, [held_out], progress=False)
    by_onnx = predict_files(target, [held_out], progress=False)
    assert [p.label for p in by_onnx] == [p.label for p in by_torch] == [p.path.split("/")[-2] for p in by_torch]


def test_export_into_a_run_a_training_is_writing_is_refused(tmp_path):
    """Exporting writes model.onnx and model.json into the run: one more writer, so it takes the lock."""
    from cnnlab.training.run_folder import claim

    run = tmp_path / "run"
    save_model(run, build_model("mlp"), ModelInfo("mlp", [str(i) for i in range(10)], dataset="mnist"))
    (run / "cnnlab.lock").touch()  # a run: a training holds its lock
    with claim(run, resuming=True), pytest.raises(CnnlabError, match="is being written by another training"):
        export_onnx(run)
    assert not (run / "model.onnx").exists()
    assert export_onnx(run) == run / "model.onnx"  # once it is free
