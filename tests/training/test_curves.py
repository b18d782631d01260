"""Learning curves a reader can trust (cnnlab.training.curves): a short run has points within each
epoch, and the printed and plotted training loss says what it is."""

import csv
import itertools

from cnnlab.training.config import TrainConfig
from cnnlab.training.curves import POINTS
from cnnlab.training.lines import loss_note
from cnnlab.training.loop import train


def test_a_one_epoch_run_has_points_within_the_epoch(toy_dataset, tmp_path, capsys):
    result = train(model="cnn", epochs=2, batch_size=8, augment="light", dataset=toy_dataset, out=str(tmp_path / "r"),
                   progress=False)
    epochs = [p["epoch"] for p in result.points]
    assert len(epochs) == 2 * POINTS and epochs[0] == 4 / 30 and epochs[-1] == 2.0  # 30 steps an epoch
    assert all(set(p) == {"epoch", "loss", "train_ce", "accuracy", "val_loss", "val_accuracy"} for p in result.points)
    with open(tmp_path / "r" / "points.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * POINTS
    assert {"loss", "train_ce"} <= set(result.history[0])
    assert result.history[0]["train_ce"] < result.history[0]["loss"]  # label smoothing raises the optimized loss
    assert "(loss is label-smoothed (0.1) and taken on 'light'-augmented batches" in capsys.readouterr().out


def test_long_runs_keep_epoch_rows_only(toy_dataset):
    result = train(model="cnn", epochs=4, batch_size=64, dataset=toy_dataset, progress=False)
    assert result.points == [] and len(result.history) == 4


def test_the_note_is_left_out_when_the_loss_is_plain():
    assert loss_note(TrainConfig(label_smoothing=0.0, augment="none")) is None
    assert "label-smoothed" not in loss_note(TrainConfig(label_smoothing=0.0))


def test_a_watched_run_gets_points_as_they_are_taken(toy_dataset):
    heard = []
    run = train(model="cnn", epochs=5, batch_size=16, dataset=toy_dataset, progress=False, on_point=heard.append)
    assert run.points == heard  # each point is passed on as it is recorded, in runs longer than MAX_EPOCHS too
    assert len(heard) >= 5 * 8 - 5 and heard[-1]["epoch"] == 5
    assert all(a["epoch"] < b["epoch"] for a, b in itertools.pairwise(heard))
