"""cnnlab compare (cnnlab.reporting.compare): runs side by side in a table, a picture and a page."""

import json

import pytest

from cnnlab.cli import main
from cnnlab.reporting.compare import compare_runs, format_table
from cnnlab.training.loop import train


@pytest.fixture
def two_runs(toy_dataset, tmp_path):
    train(model="mlp", epochs=1, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "mlp"), progress=False)
    train(model="conv8k3 maxpool dense16", epochs=4, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "cnn"),
          progress=False)
    return tmp_path / "mlp", tmp_path / "cnn"


def test_compare_writes_its_table_picture_and_page(two_runs, tmp_path):
    runs, folder = compare_runs(list(two_runs))
    assert folder == tmp_path / "compare-mlp-vs-cnn"
    assert [(r.name, r.model, r.epochs) for r in runs] == [("mlp", "mlp", 1), ("cnn", "conv8k3 maxpool dense16", 4)]
    assert runs[0].parameters == 623_290 - 7 * 785  # the mlp for 3 classes
    table = format_table(runs).splitlines()
    assert table[0].split() == ["run", "model", "parameters", "epochs", "test", "acc", "train", "s"]
    assert table[1].startswith("mlp ") and "623" not in table[1]
    assert (folder / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "conv8k3 maxpool dense16" in (folder / "compare.html").read_text()


def test_a_folder_that_is_not_a_run_is_reported_and_left_out(two_runs, tmp_path, capsys):
    code = main(["compare", str(two_runs[0]), str(tmp_path / "nothing"), "--out", str(tmp_path / "c"), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and [r["run"] for r in json.loads(out)] == ["mlp"]
    assert "nothing: not a run directory" in err and "1 of 2 runs were left out" in err
    assert (tmp_path / "c" / "compare.html").is_file()
    assert main(["compare", str(tmp_path / "nothing")]) == 2


def test_the_compared_curves_name_validation_only_where_a_run_has_it():
    from cnnlab.reporting.plots import compared_title

    trained_only = [{"epoch": 1, "loss": 0.5, "accuracy": 0.9}]
    validated = [{"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.91}]
    assert compared_title([("mlp", trained_only, []), ("cnn", trained_only, [])]) == (
        "Training (no validation images were held out)")
    assert compared_title([("mlp", trained_only, []), ("fast", validated, [])]) == (
        "Training (dashed) and validation (solid)")
