import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import MODELS, build_model, count_parameters, flops_per_image


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("classes", [10, 3])
def test_output_shape(name, classes):
    model = build_model(name, num_classes=classes).eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, classes)
    assert count_parameters(model) > 0 and flops_per_image(model) > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_channels_last_gives_the_same_output(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, fast, atol=1e-5)


def test_as_printed_matches_keras_parameter_count():
    # Keras' summary of the printed code: conv 22,432 + dense 12,416 + dense 1,290.
    assert count_parameters(build_model("seed-cnn-as-printed")) == 36_138


def test_as_printed_reads_columns_as_channels():
    model = build_model("seed-cnn-as-printed")
    assert model.conv.in_channels == 28 and model.conv.stride == (5, 5)


def test_article_models_have_the_articles_sizes():
    assert count_parameters(build_model("mlp")) == 784 * 784 + 784 + 784 * 10 + 10
    assert count_parameters(build_model("seed-cnn")) == 32 * 25 + 32 + 6272 * 128 + 128 + 1290


def test_unknown_model_lists_choices():
    with pytest.raises(CnnlabError, match=r"unknown model .resnet.*cnn, cnn-fast, cnn-small, cnn-wide, cnn-wide-x3"):
        build_model("resnet")


def test_ensemble_trains_members_apart_and_predicts_their_mean_probability():
    torch.manual_seed(0)
    model = build_model("cnn-wide-x3")
    x = torch.randn(4, 1, 28, 28)
    stacked = model.train()(x)
    assert stacked.shape == (4, 10, 3)  # each member's own logits, for its own loss
    model.eval()
    members = torch.stack([m(x).softmax(1) for m in model.members]).mean(0)
    assert torch.allclose(model(x).exp(), members, atol=1e-6)
    assert not torch.allclose(model.members[0](x), model.members[1](x))  # initialised apart
