import re

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models.attribution import conv_activations
from cnnlab.reporting.report import PICTURES, rebuild
from cnnlab.training.loop import train


@pytest.fixture
def toy_run(toy_dataset, tmp_path):
    train(model="cnn", epochs=2, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "run"), progress=False)
    return tmp_path / "run"


def test_training_writes_every_picture_into_a_self_contained_report(toy_run):
    for name in PICTURES:
        assert (toy_run / name).stat().st_size > 1000, name
    page = (toy_run / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(PICTURES)
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert "test accuracy" in page


def test_report_is_rebuilt_from_the_saved_model(toy_run, toy_dataset):
    for name in ("report.html", "mistakes.png", "feature_maps.png"):
        (toy_run / name).unlink()
    rebuild(toy_run, dataset=toy_dataset)
    assert all((toy_run / name).is_file() for name in ("report.html", "mistakes.png", "feature_maps.png"))


def test_not_a_run_directory(tmp_path):
    with pytest.raises(CnnlabError, match="not a run directory"):
        rebuild(tmp_path)


def test_feature_maps_come_from_each_conv_layer_in_order():
    import torch

    from cnnlab.models.registry import build_model

    maps = conv_activations(build_model("cnn-wide-x3"), torch.zeros(1, 1, 28, 28))
    assert [out.shape[1] for _, out in maps] == [32, 64, 64]  # the first member's three convs
