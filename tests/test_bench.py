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
    fast = [Curve("fast", "", 1, seed, [s], [a]) for seed, s, a in [(1, 4.0, 0.991), (2, 5.0, 0.992), (3, 6.0, 0.993)]]
    peer = Curve("pytorch-examples", "", 14, 1, [50.0, 100.0], [0.990, 0.992])  # 99% at 50 s, ends at 100 s
    table = format_bench([*fast, peer])
    row = next(line for line in table.splitlines() if line.startswith("pytorch-examples"))
    assert "2/14*" in row and "20.0x" in row and "10.0x" in row  # ratios to fast's median, 5 s
    assert "not extrapolated" in table
    fast_row = next(line for line in table.splitlines() if line.startswith("fast"))
    assert "99.10-99.30%" in fast_row and "5.0" in fast_row and "met: every seed >= 99.00%" in fast_row


def test_a_preset_below_its_target_is_marked_missed():
    slow = [Curve("fast", "", 1, seed, [6.0], [0.995]) for seed in (1, 2)]
    wrong = [Curve("accurate", "", 5, 1, [10.0], [0.994]), Curve("accurate", "", 5, 2, [10.0], [0.996])]
    lines = format_bench([*slow, *wrong]).splitlines()
    assert "MISSED" in lines[1] and "MISSED" in lines[2]  # fast too slow; accurate: one seed too low


def test_fashion_mnist_is_held_to_its_own_targets_and_time_column():
    fast = [Curve("fast", "", 3, seed, [8.0], [0.91]) for seed in (1, 2)]
    accurate = [Curve("accurate", "", 5, seed, [80.0], [0.934]) for seed in (1, 2)]
    lines = format_bench([*fast, *accurate], "clothing").splitlines()
    assert "s to 90%" in lines[0] and "x fast to 90%" in lines[0]
    assert "met: every seed >= 90.50%, median <= 10 s" in lines[1]
    assert "MISSED: every seed >= 93.50%, median <= 90 s" in lines[2]
    assert bench.RECIPES["fast"].epochs_for("clothing") == 3 and bench.RECIPES["fast"].epochs_for("digits") == 1


def test_bench_refuses_a_dataset_it_has_no_targets_for(capsys):
    assert main(["bench", "--dataset", "kmnist"]) == 2
    assert "--dataset must be one of mnist, fashion-mnist, got 'kmnist'" in capsys.readouterr().err


def test_per_sample_dataset_matches_whole_tensor_normalisation(toy_dataset):
    item, label = PerSampleMNIST(toy_dataset.train_images, toy_dataset.train_labels)[3]
    expected = (toy_dataset.train_images[3].float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(item[0], expected) and label == int(toy_dataset.train_labels[3])


def test_every_recipe_runs_and_peers_are_capped(toy_dataset):
    curves = run_bench(toy_dataset, peer_epochs=1, seeds=2)
    presets = [name for name, r in bench.RECIPES.items() if r.preset]
    assert [c.recipe for c in curves] == [n for n in bench.RECIPES for _ in range(2 if n in presets else 1)]
    assert [c.seed for c in curves if c.recipe == "fast"] == [1, 2]
    for c in curves:
        if c.recipe in presets:
            assert len(c.seconds) == bench.RECIPES[c.recipe].epochs_for(toy_dataset.kind) and not c.capped
        else:
            assert len(c.seconds) == 1 and c.capped
    assert all(0 <= a <= 1 for c in curves for a in c.accuracy)


def test_peers_train_without_our_augmentation_or_label_smoothing(toy_dataset, monkeypatch):
    configs = []
    monkeypatch.setattr(bench, "_train_recording", lambda ds, config, curve: configs.append(config))
    for name, recipe in bench.RECIPES.items():
        if not recipe.preset and name != "pytorch-examples":  # that one has its own loop
            recipe.run(toy_dataset, 1, bench.Curve(name, recipe.description, 1), 1, 1)
    assert len(configs) == 3
    assert all(c.augment == "none" and c.label_smoothing == 0 for c in configs)


def test_inference_speed_reports_positive_rates():
    (row,) = inference_speed(["mlp"], repeats=1)
    assert row["images_per_second_batch_1000"] > 0 and row["ms_per_image_batch_1"] > 0


def test_inference_bench_of_a_spec(capsys, tmp_path):
    assert main(["bench", "--inference", "--model", "conv8k3 maxpool dense32", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "inference.json").read_text())
    assert results["command"] == "cnnlab bench --inference --model 'conv8k3 maxpool dense32'"
    assert [r["model"] for r in results["results"]] == ["conv8k3 maxpool dense32"]


@pytest.mark.slow
def test_bench_cli_on_mnist_writes_table_json_and_png(capsys, mnist_dir, tmp_path):
    code = main(["bench", "--recipes", "fast,keras-convnet", "--peer-epochs", "1", "--seeds", "1",
                 "--data-dir", str(mnist_dir), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "keras-convnet" in out and "1/15*" in out
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["command"] == "cnnlab bench --recipes fast,keras-convnet --peer-epochs 1 --seeds 1"
    assert "cores" in results["machine"] and results["date"].startswith("20")
    records = results["results"]
    assert records[0]["recipe"] == "fast" and records[0]["test_accuracy"][-1] > 0.985
    # the docs render their table from this file: the same table the run printed
    assert bench.format_bench(bench.curves_from_results(results)) in out
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_cli_errors(capsys):
    assert main(["bench", "--recipes", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert main(["bench", "--peer-epochs", "0"]) == 2
