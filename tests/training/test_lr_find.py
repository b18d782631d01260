"""lr-find (cnnlab.training.lr_find): the range test sweeps, suggests, plots; --lr auto trains with it."""

import json

import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.training.loop import train
from cnnlab.training.lr_find import lr_find, valley


def test_the_sweep_grows_exponentially_and_suggests_a_tenth_of_the_lowest(toy_dataset):
    found = lr_find(model="cnn", dataset=toy_dataset, batch_size=16, steps=60, progress=False)
    ratios = [b / a for a, b in zip(found.lrs, found.lrs[1:], strict=False)]
    assert found.lrs[0] == pytest.approx(1e-7) and max(ratios) == pytest.approx(min(ratios))
    assert found.suggestion == pytest.approx(found.lrs[found.losses.index(min(found.losses))] / 10)
    assert found.lrs[0] <= found.valley <= found.lrs[-1]


def test_valley_is_two_thirds_down_the_longest_fall():
    lrs = [float(i) for i in range(10)]
    # The fall from 9 (index 1) to 3 (index 7): 7 long, so fastai takes index 7 - 7 + int(7 / 3) + int(7 / 6).
    assert valley(lrs, [5, 9, 8, 7, 6, 5, 4, 3, 9, 9]) == 3.0


def test_the_command_prints_and_plots_a_suggestion(capsys, idx_folder, tmp_path):
    code = main(["lr-find", "--model", "cnn", "--dataset", str(idx_folder), "--batch-size", "16", "--steps", "40",
                 "--out", str(tmp_path / "lr")])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("Suggested peak learning rate for cnn: ")
    assert (tmp_path / "lr" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert set(json.loads((tmp_path / "lr" / "lr_find.json").read_text())) >= {"lrs", "losses", "suggestion"}
    assert main(["lr-find", "--steps", "3"]) == 2 and "--steps must be at least 10" in capsys.readouterr().err


def test_lr_auto_trains_with_the_suggestion(toy_dataset, capsys):
    result = train(model="cnn", lr="auto", epochs=1, batch_size=16, dataset=toy_dataset, progress=False)
    assert "lr-find suggests a peak learning rate of" in capsys.readouterr().out
    assert 0 < result.metrics["test_accuracy"] <= 1
    with pytest.raises(CnnlabError, match="--lr must be a positive number or 'auto'"):
        train(model="cnn", lr="fast", dataset=toy_dataset)
    assert main(["train", "--lr", "quick"]) == 2
