"""Model files (cnnlab.models.files): safetensors + JSON, checked against the architecture before use."""

import json

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from cnnlab.errors import CnnlabError
from cnnlab.models.files import CHECKPOINT_FILE, MODEL_FILE, ModelInfo, load_model, save_model
from cnnlab.models.layers import build_spec, first_format
from cnnlab.models.registry import build_model
from tests.helpers import assert_one_line_error


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
    (lambda m: m.update(spec="conv500000k15 dense"), "over cnnlab's budget"),
    (lambda m: m.update(spec="blob"), "unknown kind 'blob'"),
    (lambda m: m["normalization"].update(std=0), "std must be a positive number"),
    (lambda m: m["input"].update(channels=3), "does not match the architecture"),
    (lambda m: m.update(test_accuracy="99%"), r'test_accuracy "99%" is not a fraction from 0 to 1'),
    (lambda m: m.update(test_accuracy=1.5), "test_accuracy 1.5 is not a fraction from 0 to 1"),
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


def test_the_checkpoint_file_name_is_the_one_training_writes():
    from cnnlab.training import checkpoint

    assert checkpoint.CHECKPOINT_FILE == CHECKPOINT_FILE


@pytest.mark.parametrize("command", [["predict", "{run}", "{run}/model.json"], ["evaluate", "{run}"],
                                     ["summary", "{run}"]])
def test_a_model_json_nested_10000_deep_is_one_line_in_predict_evaluate_and_summary(saved, capsys, command):
    (saved / "model.json").write_text(_deep_model_json(json.loads((saved / "model.json").read_text())))
    assert_one_line_error(capsys, *[part.format(run=saved) for part in command],
                          match="model.json: JSON nested too deeply (the limit is 32 levels)")


def _deep_model_json(meta: dict) -> str:
    """``meta`` as JSON with a list nested 10,000 deep in it (json.dumps itself stops at ~1,000)."""
    text = json.dumps({k: v for k, v in meta.items() if k != "dataset"})
    return text[:-1] + ', "dataset": ' + "[" * 10_000 + "]" * 10_000 + "}"


def test_a_model_json_of_a_newer_cnnlab_is_refused_with_the_upgrade(saved):
    _edit(saved, lambda m: m.update(format_version=3, arguments="a layout this cnnlab does not know"))
    with pytest.raises(CnnlabError) as info:
        load_model(saved)
    assert str(info.value) == (f"{saved / 'model.json'}: made by a newer cnnlab (format_version 3; this cnnlab reads "
                               "2); upgrade cnnlab: pip install --upgrade cnnlab")


KERAS_WORDS = "conv8k3 relu maxpool flatten dense16 relu dense10"


def test_a_spec_of_the_first_format_loads_as_it_was_trained(tmp_path):
    """In model.json's first format a last dense10 was a hidden layer (the output came after it) and
    'conv8k3 relu' was two ReLUs: such a run, saved before, loads with its weights and answers."""
    classes = [str(d) for d in range(10)]
    trained = build_spec(first_format(KERAS_WORDS, 10))  # the network the first format built
    assert sum(isinstance(m, torch.nn.Linear) for m in trained) == 3
    save_model(tmp_path, trained, ModelInfo("spec", classes, spec=KERAS_WORDS))
    _edit(tmp_path, lambda m: m.update(format_version=1))
    model, info = load_model(tmp_path)
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(images), trained.eval()(images)) and info.spec == first_format(KERAS_WORDS, 10)


@pytest.mark.parametrize("spec, version", [(KERAS_WORDS, 2), (KERAS_WORDS + " softmax", 2),
                                           ("conv8k3 maxpool dense16", 1), ("conv8k3-linear relu dense", 1)])
def test_a_model_json_is_written_in_the_oldest_format_that_reads_it_as_meant(tmp_path, spec, version):
    """A spec both formats read alike stays readable by a cnnlab of the first format; one they read
    differently is marked as the second, so that such a cnnlab asks to be upgraded, not misreads it."""
    classes = [str(d) for d in range(10)]
    save_model(tmp_path, build_spec(spec), ModelInfo("spec", classes, spec=spec))
    assert json.loads((tmp_path / "model.json").read_text())["format_version"] == version
    model, info = load_model(tmp_path)
    assert info.spec == spec and sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in build_spec(spec).parameters())


@pytest.mark.parametrize("version", ["1", 0, -3, 1.5, True, None, [1]])
def test_a_format_version_that_is_not_a_whole_number_from_1_is_refused(saved, version):
    _edit(saved, lambda m: m.update(format_version=version))
    with pytest.raises(CnnlabError, match=r"format_version .* is not a version cnnlab wrote \(a whole number from 1\)"):
        load_model(saved)


def test_a_model_json_without_a_format_version_is_read_as_the_first(saved):
    _edit(saved, lambda m: (m.pop("format_version"), m.update(test_accuracy=1)))
    model, info = load_model(saved)
    assert info.architecture == "cnn-fast" and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert info.test_accuracy == 1.0 and isinstance(info.test_accuracy, float)


def test_a_model_json_that_is_not_an_object_is_refused(saved):
    (saved / "model.json").write_text("[1, 2, 3]")
    with pytest.raises(CnnlabError, match=r"not a cnnlab model.json \(a JSON object was expected, found list\)"):
        load_model(saved)


@pytest.mark.parametrize("bad, word", [(float("nan"), "NaN"), (float("inf"), "infinite"), (float("-inf"), "infinite")])
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(saved, bad, word):
    tensors = load_file(saved / MODEL_FILE)
    name = sorted(tensors)[-1]
    tensors[name].view(-1)[0] = bad
    save_file(tensors, saved / MODEL_FILE)
    with pytest.raises(CnnlabError) as info:
        load_model(saved)
    message = str(info.value)
    assert f"the weights in {name} include {word} values" in message and "train the model again" in message
    assert "\n" not in message


def test_weights_that_are_not_finite_are_refused_for_a_network_of_your_own_class_too(tmp_path):
    net = TinyNet()
    with torch.no_grad():
        net.linear.bias[3] = float("nan")
    save_model(tmp_path, net, ModelInfo("python:tests.models.test_files.TinyNet", [str(d) for d in range(10)]))
    with pytest.raises(CnnlabError, match=r"the weights in linear\.bias include NaN values"):
        load_model(tmp_path, model=TinyNet())


def test_a_run_interrupted_before_it_saved_a_model_points_to_resume(saved, capsys):
    (saved / MODEL_FILE).unlink()
    (saved / CHECKPOINT_FILE).write_bytes(b"a checkpoint")  # never opened: its being there is what counts
    expected = f"{saved}: the training was interrupted before it saved a model; continue it with " \
               f"'cnnlab train --resume {saved}'"
    with pytest.raises(CnnlabError) as info:
        load_model(saved / MODEL_FILE)
    assert str(info.value) == expected
    assert_one_line_error(capsys, "evaluate", saved, match=expected)
    assert_one_line_error(capsys, "predict", saved, saved / "model.json", match="cnnlab train --resume")
    (saved / CHECKPOINT_FILE).unlink()
    assert_one_line_error(capsys, "evaluate", saved, match="not found; train a model first")


def test_an_onnx_model_with_weights_that_are_not_finite_is_refused(saved):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((784, 10), np.float32)
    weights[5, 3] = np.nan
    nodes = [helper.make_node("Flatten", ["images"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, 28, 28])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph(nodes, "linear", [images], [logits], [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), saved / "model.onnx")
    with pytest.raises(CnnlabError, match=r"model\.onnx: the weights in w include NaN values"):
        load_model(saved / "model.onnx")
    weights[5, 3] = 0
    graph.initializer[0].CopyFrom(numpy_helper.from_array(weights, "w"))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), saved / "model.onnx")
    model, _ = load_model(saved / "model.onnx")
    assert model(torch.ones(2, 1, 28, 28)).shape == (2, 10)
