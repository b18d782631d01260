"""``cnnlab.load(run)``: one object that predicts, evaluates, explains, summarises and exports, each
answer the one its command gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.using.explanation import explain
from cnnlab.using.predict import predict_files

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def test_a_loaded_model_answers_as_the_commands_do(mnist_run, mnist, tmp_path):
    model = cnnlab.load(mnist_run)
    assert repr(model).startswith(f"<cnnlab model {mnist_run}: cnn-fast, 10 classes of 28x28 grey, 139,002 parameters")
    photos = [EXAMPLES / "seven.jpg", EXAMPLES / "two.jpg"]
    said = model.predict(photos)
    assert [(p.label, p.confidence) for p in said] == [
        (p.label, p.confidence) for p in predict_files(mnist_run, photos, progress=False)]
    assert model.predict(EXAMPLES / "number-4794.jpg", number=True)[0].number is not None
    digits = mnist.test_images[:4].numpy()
    batch, one = model.predict(digits), model.predict(digits[0])
    assert [p.label for p in batch] == [str(int(y)) for y in mnist.test_labels[:4]]
    assert (one[0].label, one[0].confidence) == (batch[0].label, batch[0].confidence)
    metrics = model.evaluate(limit=500)
    assert metrics == cnnlab.evaluate(mnist_run, limit=500) and metrics["test_accuracy"] > 0.9
    why = model.explain(photos[0], "saliency")
    command = explain(mnist_run, [photos[0]], methods=["saliency"], out=None, progress=False)[0]
    assert (why.label, why.confidence, list(why.maps)) == (command.label, command.confidence, ["saliency"])
    assert np.array_equal(why.maps["saliency"], command.maps["saliency"])
    assert model.explain(digits[0], "gradcam", target="3").target == "3"
    assert "Total: 139,002 parameters" in str(model.summary())
    onnx = model.export(tmp_path / "exported")
    assert onnx == tmp_path / "exported" / "model.onnx" and onnx.is_file()
    assert cnnlab.load(onnx.with_suffix(".json").parent / "model.onnx").predict(digits[:1])[0].label == batch[0].label


def test_a_wrong_method_or_target_is_one_clear_error(mnist_run):
    model = cnnlab.load(mnist_run)
    with pytest.raises(CnnlabError, match="heat"):
        model.explain(EXAMPLES / "seven.jpg", "heat")
    with pytest.raises(CnnlabError, match="is not one of the model's classes"):
        model.explain(EXAMPLES / "seven.jpg", target="cat")


def test_cnnlab_train_returns_a_model_that_still_has_the_training(mnist_dir, tmp_path):
    run = cnnlab.train(model="mlp", epochs=1, limit=2000, data_dir=str(mnist_dir), out=str(tmp_path / "run"),
                       progress=False)
    assert run.metrics["test_accuracy"] > 0.5 and len(run.history) == 1 and run.out == tmp_path / "run"
    assert isinstance(run.model, torch.nn.Module) and run.path == tmp_path / "run"
    label = run.predict(EXAMPLES / "seven.jpg")[0].label
    assert label == cnnlab.load(tmp_path / "run").predict(EXAMPLES / "seven.jpg")[0].label
    assert run.evaluate(limit=200)["test_accuracy"] == cnnlab.evaluate(tmp_path / "run", limit=200)["test_accuracy"]
    unsaved = cnnlab.train(model="mlp", epochs=1, limit=500, data_dir=str(mnist_dir), progress=False)
    assert unsaved.predict(EXAMPLES / "seven.jpg")[0].label in unsaved.classes
    with pytest.raises(CnnlabError, match="saved no run"):
        unsaved.export(tmp_path / "nowhere")
