"""Presets that fit the data (cnnlab.training.presets): fast keeps cnn-fast's border crop for digits
and trains cnn-small, on the whole frame, for clothing and a user's images."""

from cnnlab.data.registry import dataset_kind
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import train


def test_the_kind_of_each_dataset():
    assert [dataset_kind(d) for d in ("mnist", "kmnist", "fashion-mnist", "/any/folder")] == [
        "digits", "characters", "clothing", "images"]


def test_fast_fits_the_kind_and_options_still_win(tmp_path):
    assert TrainConfig.from_preset("fast").model == "cnn-fast"
    clothing = TrainConfig.from_preset("fast", dataset="fashion-mnist")
    assert (clothing.model, clothing.epochs, clothing.augment, clothing.batch_size) == ("cnn-small", 3, "none", 256)
    assert TrainConfig.from_preset("fast", dataset=str(tmp_path)).model == "cnn-small"
    assert TrainConfig.from_preset("fast", dataset="fashion-mnist", model="cnn").model == "cnn"
    accurate = TrainConfig.from_preset("accurate", dataset="fashion-mnist")
    assert (accurate.model, accurate.epochs, accurate.batch_size, accurate.augment) == ("cnn-wide", 6, 128, "none")
    assert TrainConfig.from_preset("best", dataset="fashion-mnist").model == "cnn-wide-x3"  # no clothing recipe yet


def test_python_gets_the_presets_for_a_loaded_dataset(toy_dataset):
    toy_dataset.source = "fashion-mnist"  # as cnnlab.load_dataset("fashion-mnist") marks it
    result = train(dataset=toy_dataset, batch_size=64, progress=False)
    assert result.info.architecture == "cnn-small" and len(result.history) == 3
