"""The layer language (cnnlab.models.layers): specs parse, plan and build; bad ones say which layer."""

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models.layers import KINDS, MAX_LAYERS, SpecError, build_spec, parse, plan
from cnnlab.models.registry import MODELS, build_model, count_parameters, resolve_model

# The registry's networks were hand-written classes before they were specs; these are their counts
# (cnn-small came later: cnn-fast's count on the uncropped 28x28).
KNOWN_PARAMETERS = {
    "cnn": 215_250, "cnn-fast": 139_002, "cnn-small": 212_730, "cnn-wide": 321_386, "cnn-wide-x3": 964_158,
    "mlp": 623_290,
    "seed-cnn": 805_066, "seed-cnn-as-printed": 36_138, "lenet5": 61_706, "pytorch-example": 1_199_882,
    "keras-convnet": 34_826,
}
EVERY_KIND = [
    "conv8k3s2p1-gelu avgpool3s1 batchnorm silu gap dense16-tanh dropout0.1 bn dense",
    "crop2 conv8k5-same-nobias-linear maxpool bn relu res16 res16s2 gap",
    "conv4k3-same sigmoid flatten fc32-nobias gelu drop0.5",
    "init=glorot conv6k5-valid tanh pool flatten dense softmax",
]


def test_the_articles_two_models_are_one_line_each():
    assert count_parameters(cnnlab.build("conv32k5-same maxpool dropout0.2 dense128")) == 805_066
    assert count_parameters(cnnlab.build("dense784")) == 623_290


@pytest.mark.parametrize("name", list(MODELS))
def test_the_registry_keeps_its_parameter_counts(name):
    assert count_parameters(build_model(name)) == KNOWN_PARAMETERS[name]


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.spec])
def test_registry_specs_are_specs(name):
    assert resolve_model(MODELS[name].spec) == MODELS[name].spec


@pytest.mark.parametrize("spec", EVERY_KIND + [m.spec for m in MODELS.values() if m.spec])
@pytest.mark.parametrize("channels, size, classes", [(1, 28, 10), (3, 32, 7)])
def test_the_plan_is_what_the_network_computes(spec, channels, size, classes):
    steps = plan(spec, classes, channels, size)
    x = torch.zeros(2, channels, size, size)
    for step in steps:  # each step's modules turn its input into the shape it planned, with its parameters
        modules = torch.nn.Sequential(*step.make()).eval()
        x = modules(x)
        assert (tuple(x.shape[1:]), count_parameters(modules)) == (step.shape, step.parameters), step.layer
    model = build_spec(spec, classes, channels, size).eval()
    assert count_parameters(model) == sum(s.parameters for s in steps)
    assert model(torch.zeros(2, channels, size, size)).shape == (2, classes)


def test_every_kind_is_covered_by_a_test_spec():
    used = {layer.kind for spec in EVERY_KIND for layer in parse(spec).layers}
    assert used == set(KINDS)


def test_a_spec_file_with_comments_builds(tmp_path):
    path = tmp_path / "net.txt"
    path.write_text("# the article's CNN\nconv32k5-same   # 32 filters\nmaxpool dropout0.2\n\ndense128\n")
    assert resolve_model(str(path)) == "conv32k5-same maxpool dropout0.2 dense128"
    assert count_parameters(build_model(str(path))) == 805_066


@pytest.mark.parametrize("spec, message", [
    ("", "the spec is empty"),
    ("conv32 blob7 dense", "layer 2 'blob7': unknown kind 'blob'"),
    ("conv32k0", "layer 1 'conv32k0': kernel and stride must be at least 1"),
    ("conv2.5", "layer 1 'conv2.5': its filters must be a whole number"),
    ("dropout1.5", "layer 1 'dropout1.5': the dropout rate must be in"),
    ("conv", "layer 1 'conv': give its filters"),
    ("gap3", "layer 1 'gap3': gap takes no number"),
    ("conv8-fast", "layer 1 'conv8-fast': '-fast' is not a flag of conv"),
    ("conv8k7s4 pool pool pool", "layer 4 'pool': its input is 1x1, smaller than its 2x2 window; remove a pool "
                                 "or use padding"),
    ("conv8k31", "layer 1 'conv8k31': its input is 28x28, smaller than its 31x31 window; use padding"),
    ("dense64 conv8", "layer 2 'conv8': conv needs a map, but its input is a vector of 64"),
    ("dense dense10", "layer 1 'dense': only the last dense layer may leave out its units"),
    ("conv500000k15", "reaches 113,000,000 parameters at layer 1 'conv500000k15', over cnnlab's budget"),
    ("dense100000 dense100000", "over cnnlab's budget of 100,000,000"),
    ("conv100000-same", "holds 78,400,000 values per image"),
    (" ".join(["relu"] * 10_000), f"the spec has 10,000 layers; cnnlab builds at most {MAX_LAYERS}"),
    ("init=he conv8", "'init=he' is not a setting"),
    ("conv32 maxpol dense", "layer 2 'maxpol': unknown kind 'maxpol'; did you mean 'maxpool'?"),
    ("conv8 softmax dense", "layer 2 'softmax': softmax may only be the last word, after the output layer"),
    ("conv8 dense5 softmax", "layer 3 'softmax': softmax must follow the output layer: dense10"),
    ("conv8 dense10-relu softmax", "layer 3 'softmax': softmax must follow the output layer"),
])
def test_bad_specs_say_which_layer_and_what_to_do(spec, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        plan(spec)


def test_a_keras_sequential_written_as_words_is_that_network():
    """keras.Sequential([Conv2D(32, 3), Activation('relu'), MaxPooling2D(), Flatten(), Dense(128),
    Activation('relu'), Dense(10), Activation('softmax')]) on MNIST: 693,962 parameters, one ReLU
    per activation word, the last Dense the output (its softmax is the loss's and the answers')."""
    model = build_spec("conv32k3 relu maxpool flatten dense128 relu dense10 softmax")
    assert count_parameters(model) == 693_962
    assert [type(m).__name__ for m in model] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert [type(m).__name__ for m in build_spec("conv8k3 tanh dense16")][:2] == ["Conv2d", "Tanh"]


@pytest.mark.parametrize("spec", ["conv32k3 maxpool dense10", "conv32k3 maxpool dense10 softmax",
                                  "conv32k3 maxpool dense"])
def test_a_last_dense_of_the_class_count_is_the_output_layer(spec):
    model = build_spec(spec)
    assert count_parameters(model) == 320 + 5408 * 10 + 10 and isinstance(model[-1], torch.nn.Linear)
    assert count_parameters(build_spec("conv32k3 maxpool dense10-relu")) == 320 + 5408 * 10 + 10 + 110  # hidden


def test_an_unknown_single_word_is_neither_a_name_nor_a_spec():
    with pytest.raises(CnnlabError, match=r"unknown model 'conv64x2': not a model name \(cnn, .*nor a layer spec"):
        build_model("conv64x2")


def test_a_spec_over_budget_allocates_nothing(monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("a layer was allocated")

    monkeypatch.setattr(torch.nn.Conv2d, "__init__", no_allocation)
    with pytest.raises(SpecError, match="budget"):
        build_spec("conv64 conv100000 conv100000")


VALID = [m.spec for m in MODELS.values() if m.spec] + EVERY_KIND


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from("convdensepoolgapresbrelu0123456789.-=ks \n#"), max_size=60))
def test_random_text_is_a_spec_or_a_one_line_error(text):
    try:
        steps = plan(text)
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert steps[-1].shape == (10,)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_specs_are_specs_or_one_line_errors(spec, data):
    tokens = spec.split()
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(tokens) - 1), st.text(
        alphabet=st.sampled_from("convdensepoolk0123456789.-"), max_size=8)), max_size=3))
    for index, replacement in edits:
        tokens[index] = replacement or tokens[index]
    try:
        steps = plan(" ".join(tokens), 10, 1, 28)
    except SpecError as exc:
        assert "\n" not in str(exc)
    else:
        if sum(s.parameters for s in steps) < 3_000_000:
            model = build_spec(" ".join(tokens))
            assert model.eval()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("spec", ["conv" + "9" * 400, "conv8s99999999999999999999", "conv8k3p" + "9" * 5000,
                                  "dropout" + "9" * 400])
def test_numbers_of_any_length_are_one_short_line(spec):
    """Digits past Python's int conversion (4,300) or past any real layer are refused in the parser."""
    with pytest.raises(SpecError, match="a number is too large; a layer's numbers are at most 1,000,000") as info:
        plan(spec)
    assert len(str(info.value)) < 120
