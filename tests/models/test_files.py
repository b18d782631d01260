"""Model files (cnnlab.models.files): safetensors + JSON, checked against the architecture before use."""

import json

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo, load_model, save_model
from cnnlab.models.registry import build_model


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


def _edit(saved, change):
    meta = json.loads((saved / "model.json").read_text())
    change(meta)
    (saved / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change, message", [
    (lambda m: m["arguments"].update(image_size=100_000), "image_size 100000 is out of range"),
    (lambda m: m["arguments"].update(image_size=32), r"does not match the architecture .*expected"),
    (lambda m: m.update(class_names=["a", "b"]), r"does not match the architecture .*expected \(2"),
    (lambda m: m.update(spec="conv8 dense"), "does not match the architecture"),
    (lambda m: m.update(spec="conv99999999 dense"), "over cnnlab's budget"),
    (lambda m: m.update(spec="blob"), "unknown kind 'blob'"),
    (lambda m: m["normalization"].update(std=0), "std must be a positive number"),
    (lambda m: m["input"].update(channels=3), "does not match the architecture"),
])
def test_a_tampered_model_json_is_refused_before_anything_is_allocated(saved, monkeypatch, change, message):
    _edit(saved, change)
    real_load = safetensors.torch.load_file
    monkeypatch.setattr("cnnlab.models.files.load_file", lambda *a: pytest.fail("tensors were read"))
    with pytest.raises(CnnlabError, match=message):
        load_model(saved)
    monkeypatch.setattr("cnnlab.models.files.load_file", real_load)


def test_a_spec_run_stores_its_spec_and_loads_from_it(tmp_path):
    spec = "conv8k3-same maxpool bn dense32"
    save_model(tmp_path, build_model(spec), ModelInfo("spec", [str(d) for d in range(10)], spec=spec))
    model, info = load_model(tmp_path)
    assert info.spec == spec and json.loads((tmp_path / "model.json").read_text())["spec"] == spec
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["architecture", "spec", "arguments", "class_names", "input", "normalization"]),
       value=JSON_VALUES, inner=st.sampled_from([None, "image_size", "num_classes", "channels", "mean", "std"]))
def test_fuzzed_model_json_loads_or_gives_a_one_line_error(saved_once, key, value, inner):
    meta = json.loads(saved_once["meta"])
    if inner and isinstance(meta.get(key), dict):
        meta[key][inner] = value
    else:
        meta[key] = value
    (saved_once["folder"] / "model.json").write_text(json.dumps(meta))
    try:
        model, _ = load_model(saved_once["folder"])
    except CnnlabError as exc:
        assert "\n" not in str(exc)
    else:
        assert model(torch.zeros(1, 1, 28, 28)).shape[0] == 1


@pytest.fixture(scope="module")
def saved_once(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzzed")
    save_model(folder, build_model("cnn-fast"), ModelInfo("cnn-fast", [str(d) for d in range(10)], spec=None))
    return {"folder": folder, "meta": (folder / "model.json").read_text()}


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_a_run_of_your_own_class_loads_with_an_instance(tmp_path):
    save_model(tmp_path, TinyNet(), ModelInfo("python:tests.models.test_files.TinyNet", [str(d) for d in range(10)]))
    with pytest.raises(CnnlabError, match=r"your own class \(tests.models.test_files.TinyNet\).*model=TinyNet\(\)"):
        load_model(tmp_path)
    model, _ = load_model(tmp_path, model=TinyNet())
    assert isinstance(model, TinyNet) and not model.training
    with pytest.raises(CnnlabError, match="does not match the architecture"):
        load_model(tmp_path, model=build_model("mlp"))
