"""Model files (cnnlab.runs): safetensors + JSON, checked against the architecture before use."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model
from cnnlab.runs import ModelInfo, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    save_model(tmp_path, build_model("cnn-fast"), ModelInfo("cnn-fast", [str(d) for d in range(10)]))
    return tmp_path


def test_a_missing_tensor_is_named(saved):
    tensors = load_file(saved / "model.safetensors")
    del tensors[sorted(tensors)[0]]
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(CnnlabError, match=r"does not match the architecture .*missing"):
        load_model(saved)


def test_a_wrong_shape_is_named(saved):
    tensors = load_file(saved / "model.safetensors")
    name = next(k for k, v in tensors.items() if v.dim() == 2)
    tensors[name] = torch.zeros(3, 3)
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(CnnlabError, match=rf"{name} has shape \(3, 3\), expected"):
        load_model(saved)


def test_an_unknown_architecture_and_a_foreign_file_are_refused(saved):
    meta = (saved / "model.json").read_text()
    (saved / "model.json").write_text(meta.replace('"cnn-fast"', '"resnet50"'))
    with pytest.raises(CnnlabError, match="unknown model 'resnet50'"):
        load_model(saved)
    (saved / "model.json").write_text(meta)
    (saved / "model.safetensors").write_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(CnnlabError, match="not a readable safetensors file"):
        load_model(saved)
