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


def test_cnnlab_report_on_a_run_a_training_is_writing_is_refused(tmp_path, capsys):
    """Rebuilding the pictures writes into the run: it takes the run's lock like a training."""
    from cnnlab.models.files import ModelInfo, save_model
    from cnnlab.models.registry import build_model
    from cnnlab.training.run_folder import claim
    from tests.helpers import assert_one_line_error

    run = tmp_path / "run"
    save_model(run, build_model("mlp"), ModelInfo("mlp", [str(i) for i in range(10)], dataset="mnist"))
    (run / "metrics.json").write_text("{}")
    (run / "cnnlab.lock").touch()  # a run: a training holds its lock
    with claim(run, resuming=True):
        assert_one_line_error(capsys, "report", run, match="is being written by another training")
