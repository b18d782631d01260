import json

import pytest
import torch

from cnnlab import bench
from cnnlab.bench import Curve, PerSampleMNIST, format_bench, inference_speed, run_bench
from cnnlab.cli import main


def test_curve_seconds_to_target_and_cap():
    curve = Curve("x", "", planned_epochs=4)
    for seconds, accuracy in [(2.0, 0.97), (2.0, 0.991), (2.0, 0.989)]:
        curve.add(seconds, accuracy)
    assert curve.seconds == [2.0, 4.0, 6.0] and curve.seconds_to(0.99) == 4.0
    assert curve.seconds_to(0.995) is None and curve.capped
    assert curve.to_json()["epochs_run"] == 3


def test_table_ratios_and_capped_rows():
    ours = Curve("cnnlab", "", 1, [5.0], [0.991])
    peer = Curve("pytorch-examples", "", 14, [50.0, 100.0], [0.990, 0.992])  # 99% at 50 s, ends at 100 s
    table = format_bench([ours, peer])
    row = next(line for line in table.splitlines() if line.startswith("pytorch-examples"))
    assert "2/14*" in row and "20.0x" in row and "10.0x" in row
    assert "not extrapolated" in table


def test_per_sample_dataset_matches_whole_tensor_normalisation(toy_dataset):
    item, label = PerSampleMNIST(toy_dataset.train_images, toy_dataset.train_labels)[3]
    expected = (toy_dataset.train_images[3].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(item[0], expected) and label == int(toy_dataset.train_labels[3])


def test_every_recipe_runs_and_peers_are_capped(toy_dataset):
    curves = run_bench(toy_dataset, peer_epochs=1)
    assert [c.recipe for c in curves] == list(bench.RECIPES)
    by_name = {c.recipe: c for c in curves}
    assert len(by_name["cnnlab"].seconds) == bench.RECIPES["cnnlab"].epochs and not by_name["cnnlab"].capped
    assert all(len(c.seconds) == 1 and c.capped for n, c in by_name.items() if n != "cnnlab")
    assert all(0 <= a <= 1 for c in curves for a in c.accuracy)


def test_inference_speed_reports_positive_rates():
    (row,) = inference_speed(["mlp"], repeats=1)
    assert row["images_per_second_batch_1000"] > 0 and row["ms_per_image_batch_1"] > 0


@pytest.mark.slow
def test_bench_cli_on_mnist_writes_table_json_and_png(capsys, mnist_dir, tmp_path):
    code = main(["bench", "--recipes", "cnnlab,keras-convnet", "--peer-epochs", "1", "--data-dir", str(mnist_dir),
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "keras-convnet" in out and "1/15*" in out
    records = json.loads((tmp_path / "bench.json").read_text())
    assert records[0]["recipe"] == "cnnlab" and records[0]["test_accuracy"][-1] > 0.99
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_cli_errors(capsys):
    assert main(["bench", "--recipes", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert main(["bench", "--peer-epochs", "0"]) == 2
