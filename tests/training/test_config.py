"""Run settings (cnnlab.training.config): a small folder's batches and epochs, and the memory a
network needs to train, checked against what this machine has free before it is built."""

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.data import Dataset
from cnnlab.errors import CnnlabError
from cnnlab.models.summary import spec_summary
from cnnlab.training import system
from cnnlab.training.config import (
    MIN_STEPS,
    TrainConfig,
    check_memory,
    fit_to_small_data,
    memory_shortfall,
    small_patience,
)
from tests.helpers import assert_one_line_error


def images(count: int, kind: str = "images", channels: int = 1, val: int = 0) -> Dataset:
    """A dataset of ``count`` blank training images (and ``val`` validation ones): only its size and kind count."""
    shape = (8, 8) if channels == 1 else (8, 8, 3)
    blank = torch.zeros(count, *shape, dtype=torch.uint8)
    return Dataset("d", ["a", "b"], blank, torch.arange(count) % 2, blank[:2], torch.arange(2),
                   torch.zeros(val, *shape, dtype=torch.uint8), torch.arange(val) % 2, kind=kind)


def fit(config, count, kind="images", channels=1, val=0, users=True):
    return fit_to_small_data(config, images(count, kind, channels, val), users)


def test_a_small_folder_gets_small_batches_and_enough_steps():
    config = TrainConfig.from_preset("fast", kind="images")
    note = fit(config, 648)
    assert config.batch_size == 32 and -(-648 // 32) * config.epochs >= MIN_STEPS
    assert note.startswith("note: 648 training images are few") and "--batch-size" in note


def test_a_small_folder_gets_augmentation_for_its_images_and_early_stopping():
    colour = TrainConfig.from_preset("fast", kind="images")
    note = fit(colour, 360, channels=3, val=40)
    assert colour.augment == "crop-flip" and colour.patience == small_patience(colour.epochs) >= 5
    assert "'crop-flip' augmentation" in note and f"early stopping (--patience {colour.patience})" in note
    grey = TrainConfig.from_preset("fast", kind="images")
    assert fit(grey, 360, val=40) and grey.augment == "light"
    digits = TrainConfig.from_preset("fast", kind="digits")
    fit(digits, 200, kind="digits", val=20)
    assert digits.augment == "light" and digits.epochs > 1 and digits.patience is not None
    no_validation = TrainConfig.from_preset("fast", kind="images")
    assert fit(no_validation, 360, channels=3) and no_validation.patience is None
    chosen = TrainConfig.from_preset("fast", kind="images", augment="crop-flip", patience=2)
    fit(chosen, 360, channels=3, val=40)
    assert (chosen.augment, chosen.patience) == ("crop-flip", 2)
    large = TrainConfig.from_preset("fast", kind="images")
    fit(large, 5000, channels=3, val=500)
    assert (large.augment, large.patience) == ("none", None)


def test_chosen_settings_and_large_or_builtin_data_are_left_alone():
    chosen = TrainConfig.from_preset("fast", kind="images", batch_size=64)
    assert fit(chosen, 648) and chosen.batch_size == 64
    large = TrainConfig.from_preset("fast", kind="images")
    assert fit(large, 60_000) is None and (large.batch_size, large.epochs) == (256, 3)
    digits = TrainConfig.from_preset("fast")
    assert fit(digits, 500, "digits", users=False) is None and digits.batch_size == 128


def test_settings_the_caller_chose_are_not_fitted(tmp_path):
    from cnnlab.training.config import resolve_config

    chosen, _ = resolve_config(None, {"dataset": str(tmp_path), "epochs": 3})
    assert chosen.fit_small_data is False and fit(chosen, 300) is None
    default, _ = resolve_config(None, {"dataset": str(tmp_path)})
    assert default.fit_small_data is True and fit(default, 300) is not None


# The network: it passes the parameter and map budgets, then wants 54 GB to train at batch 128.
TOO_LARGE = "conv60000k1 maxpool conv8k3 dense10-relu"  # a hidden dense10, then the output layer
FREE = 20 * 10**9


@pytest.fixture
def twenty_gb_free(monkeypatch):
    """This machine has 20 GB free, whatever it has; and no network may be built for training
    (``build_model`` builds through ``registry.build``; summaries build through their own reference)."""
    from cnnlab.models import registry

    monkeypatch.setattr(system, "free_memory", lambda device=None: FREE)

    def refuse_to_build(*args, **kwargs):
        raise AssertionError("a network was built before the memory check")

    monkeypatch.setattr(registry, "build", refuse_to_build)


def test_a_network_too_large_for_free_memory_is_refused_with_the_figure_and_the_fix(twenty_gb_free):
    config = TrainConfig(model=TOO_LARGE)
    with pytest.raises(CnnlabError) as refused:
        check_memory(config, (10, 1, 28))
    message = str(refused.value)
    assert message == (f"the network '{TOO_LARGE}' needs about 54.3 GB to train at batch 128 (weights with gradients "
                       "and Adam's state 71.2 MB, activations 54.2 GB); this machine has 20.0 GB free: lower "
                       "--batch-size to 47 or less, or the filters")
    config.batch_size = 47  # the batch the message names fits; one more does not
    check_memory(config, (10, 1, 28))
    config.batch_size = 48
    with pytest.raises(CnnlabError, match="to train at batch 48"):
        check_memory(config, (10, 1, 28))


def test_weights_alone_past_free_memory_ask_for_fewer_filters(monkeypatch):
    monkeypatch.setattr(system, "free_memory", lambda device=None: 100 * 10**6)
    with pytest.raises(CnnlabError, match=r"has 100.0 MB free: use fewer filters or units"):
        check_memory(TrainConfig(model="dense30000 dense"), (10, 1, 28))  # 24M weights: 94 MB, x4 to train


def test_what_fits_and_what_cannot_be_read_pass(monkeypatch, twenty_gb_free):
    for name in ("cnn-fast", "cnn-wide-x3", "seed-cnn-as-printed", "conv32k3 res32 gap"):
        check_memory(TrainConfig(model=name), (10, 1, 28))
    check_memory(TrainConfig(model="python:mine.Net"), (10, 1, 28))  # the caller's own network is built already
    monkeypatch.setattr(system, "free_memory", lambda device=None: None)  # a system cnnlab cannot read
    check_memory(TrainConfig(model=TOO_LARGE), (10, 1, 28))


def test_the_figure_is_cnnlab_summarys(twenty_gb_free, capsys):
    assert main(["summary", TOO_LARGE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "Memory: weights 17.81 MB; training at batch 128 keeps about 54191.86 MB of activations"
    table = spec_summary(TOO_LARGE, 10, 1, 28, 128)
    assert table.activation_bytes == 54_191_864_832 and table.weight_bytes == 17_806_592
    assert lines[-1] == f"Too large to train on this machine: it {memory_shortfall(table, FREE)}"
    assert main(["summary", TOO_LARGE, "--batch-size", "4"]) == 0
    assert "Too large" not in capsys.readouterr().out


def test_cnnlab_train_refuses_it_in_one_line_before_building_it(twenty_gb_free, capsys, idx_folder, tmp_path):
    assert_one_line_error(capsys, "train", "--model", TOO_LARGE, "--dataset", idx_folder, "--batch-size", "128",
                          "--out", tmp_path / "run", match="needs about 54.3 GB to train at batch 128")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert_one_line_error(capsys, "lr-find", "--model", TOO_LARGE, "--dataset", idx_folder, "--batch-size", "64",
                          "--out", tmp_path / "lr", match="to train at batch 64")


def test_cnnlab_train_in_python_refuses_it(twenty_gb_free, toy_dataset):
    with pytest.raises(CnnlabError, match=r"^the network 'conv60000k1 maxpool conv8k3 dense10-relu' needs about "
                                          r"54\.3 GB"):
        cnnlab.train(model=TOO_LARGE, dataset=toy_dataset, batch_size=128, progress=False)
    with pytest.raises(CnnlabError, match="lower --batch-size to 47 or less"):  # before lr-find's sweep
        cnnlab.train(model=TOO_LARGE, dataset=toy_dataset, batch_size=128, lr="auto", progress=False)


def test_the_train_tab_refuses_it_and_takes_what_fits(twenty_gb_free):
    from cnnlab.serving.training_job import TrainRequest

    with pytest.raises(CnnlabError, match=r"needs about 54\.3 GB .* lower --batch-size to 47 or less, or the filters"):
        TrainRequest(model=TOO_LARGE).settings("mnist", (10, 1, 28))
    assert TrainRequest(model="cnn-fast", epochs=1).settings("mnist")["model"] == "cnn-fast"


def test_the_train_tab_asks_no_gpu_for_its_free_memory(monkeypatch):
    """Asking a CUDA GPU for its free memory starts CUDA in the asking process: the server leaves
    that to the training's own process, and checks the machine's memory only for a CPU training."""
    from cnnlab.serving.training_job import TrainRequest
    from cnnlab.training import system

    asked = []
    monkeypatch.setattr(system, "select_device", lambda _choice: torch.device("cuda"))
    monkeypatch.setattr(system, "free_memory", lambda device=None: asked.append(device) or 20 * 10**9)
    TrainRequest(model="conv60000k1 maxpool conv8k3 dense10").settings("mnist")  # not refused here
    assert asked == []
    monkeypatch.setattr(system, "select_device", lambda _choice: torch.device("cpu"))
    with pytest.raises(CnnlabError, match=r"needs about 54\.3 GB"):
        TrainRequest(model="conv60000k1 maxpool conv8k3 dense10").settings("mnist")
    assert asked == [torch.device("cpu")]
