"""--patience (cnnlab.training.early_stopping): the run stops when val_loss stops falling, the best
epoch's weights are delivered and marked in history.csv, and a resumed run stops where an unbroken one would."""

import csv

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.training import loop
from cnnlab.training.loop import resume_training, train

VAL_LOSSES = [0.50, 0.40, 0.45, 0.30, 0.20, 0.10]  # epoch 3 is worse than epoch 2: patience 1 stops there


@pytest.fixture
def scripted_validation(monkeypatch):
    """Validation losses as scripted, whatever the network: the stopping rule is what is tested."""
    real = loop.validate

    def scripted(model, x, y):
        row = real(model, x, y)
        scripted.epoch += 1
        return {**row, "val_loss": VAL_LOSSES[scripted.epoch - 1]}

    scripted.epoch = 0
    monkeypatch.setattr(loop, "validate", scripted)
    return scripted


@pytest.fixture
def worse_last_epoch():
    """The scripted losses with the last epoch worse than the fifth."""
    VAL_LOSSES[5] = 0.35
    yield
    VAL_LOSSES[5] = 0.10


def weights_after_each_epoch():
    seen = {}

    def on_epoch(row, model, _):
        seen[row["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    return seen, on_epoch


def test_patience_stops_and_keeps_the_best_epoch(toy_dataset, tmp_path, scripted_validation, capsys):
    seen, on_epoch = weights_after_each_epoch()
    result = train(model="cnn", epochs=6, patience=1, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "r"),
                   progress=False, on_epoch=on_epoch)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert [row["kept"] for row in result.history] == [0, 1, 0]
    assert all(torch.equal(v, seen[2][k]) for k, v in result.model.state_dict().items())
    with open(tmp_path / "r" / "history.csv") as handle:
        assert [row["kept"] for row in csv.DictReader(handle)] == ["0", "1", "0"]
    assert "Stopped early: val_loss did not improve for 1 epoch; keeping epoch 2's weights" in capsys.readouterr().out
    with pytest.raises(CnnlabError, match="stopped early after epoch 3"):
        resume_training(tmp_path / "r")


def test_a_resumed_run_stops_where_an_unbroken_one_does(toy_dataset, tmp_path, scripted_validation):
    # One thread each: the count cnnlab picks follows how busy the machine is, and another count sums in another order.
    unbroken = train(model="cnn", epochs=6, patience=1, batch_size=32, dataset=toy_dataset, progress=False,
                     out=str(tmp_path / "unbroken"), threads=1)

    def stop_after_two(row, model, _):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    scripted_validation.epoch = 0
    with pytest.raises(KeyboardInterrupt):
        train(model="cnn", epochs=6, patience=1, batch_size=32, dataset=toy_dataset, progress=False,
              out=str(tmp_path / "broken"), on_epoch=stop_after_two, threads=1)
    resumed = resume_training(tmp_path / "broken", dataset=toy_dataset, progress=False)
    assert [r["kept"] for r in resumed.history] == [r["kept"] for r in unbroken.history] == [0, 1, 0]
    assert all(torch.equal(v, unbroken.model.state_dict()[k]) for k, v in resumed.model.state_dict().items())


def test_bad_patience_is_one_line(capsys, tmp_path):
    assert main(["train", "--patience", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--patience must be at least 1" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="--patience needs validation images"):
        train(model="cnn", epochs=2, patience=1, val_split=0, dataset=None, limit=100, progress=False)


def test_a_callback_can_stop_the_run_and_it_is_saved(toy_dataset, tmp_path):
    result = train(model="cnn", epochs=3, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "r"), progress=False,
                   on_epoch=lambda row, model, to_input: row["epoch"] == 1)
    assert len(result.history) == 1 and (tmp_path / "r" / "model.safetensors").is_file()


def test_without_patience_the_best_epoch_is_kept_and_the_last_saved_beside_it(toy_dataset, tmp_path,
                                                                              scripted_validation, capsys):
    from cnnlab.models.files import load_model, tensor_shapes

    seen, on_epoch = weights_after_each_epoch()
    run = tmp_path / "r"
    result = train(model="cnn", epochs=6, batch_size=32, dataset=toy_dataset, out=str(run), progress=False,
                   on_epoch=on_epoch, threads=1)
    assert len(result.history) == 6 and [row["kept"] for row in result.history] == [0, 0, 0, 0, 0, 1]
    VAL_LOSSES[5], scripted_validation.epoch = 0.35, 0  # now epoch 5 is the best, and the last is worse
    try:
        seen.clear()
        result = train(model="cnn", epochs=6, batch_size=32, dataset=toy_dataset, out=str(run), progress=False,
                       on_epoch=on_epoch, overwrite=True, threads=1)
    finally:
        VAL_LOSSES[5] = 0.10
    assert [row["kept"] for row in result.history] == [0, 0, 0, 0, 1, 0]
    saved, _ = load_model(run)
    last, _ = load_model(run / "last.safetensors")
    assert all(torch.equal(v, seen[5][k]) for k, v in saved.state_dict().items())
    assert all(torch.equal(v, seen[6][k]) for k, v in last.state_dict().items())
    assert tensor_shapes(run / "last.safetensors") == tensor_shapes(run / "model.safetensors")
    out = capsys.readouterr().out
    assert "Keeping epoch 5's weights, the lowest val_loss (0.2000); the last epoch's are in last.safetensors" in out
    page = (run / "report.html").read_text()
    assert "kept epoch" in page and "epoch 5 of 6, the lowest val_loss (0.2000)" in page


def test_keep_last_delivers_the_last_epoch_and_saves_the_best_beside_it(toy_dataset, tmp_path, scripted_validation,
                                                                        worse_last_epoch):
    from cnnlab.models.files import load_model

    seen, on_epoch = weights_after_each_epoch()
    run = tmp_path / "r"
    assert main(["train", "--model", "cnn", "--keep", "nope", "--out", str(run)]) == 2
    result = train(model="cnn", epochs=6, batch_size=32, dataset=toy_dataset, out=str(run), progress=False,
                   on_epoch=on_epoch, keep="last", threads=1)
    assert [row["kept"] for row in result.history] == [0, 0, 0, 0, 0, 1]
    assert not (run / "last.safetensors").exists()
    best, _ = load_model(run / "best.safetensors")
    assert all(torch.equal(v, seen[5][k]) for k, v in best.state_dict().items())
    assert all(torch.equal(v, seen[6][k]) for k, v in result.model.state_dict().items())


def test_a_resumed_run_keeps_both_epochs(toy_dataset, tmp_path, scripted_validation, worse_last_epoch):
    from cnnlab.models.files import load_model


    def stop_after_three(row, model, _):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    unbroken = train(model="cnn", epochs=6, batch_size=32, dataset=toy_dataset, progress=False,
                     out=str(tmp_path / "unbroken"), threads=1)
    scripted_validation.epoch = 0
    with pytest.raises(KeyboardInterrupt):
        train(model="cnn", epochs=6, batch_size=32, dataset=toy_dataset, progress=False, out=str(tmp_path / "broken"),
              on_epoch=stop_after_three, threads=1)
    resumed = resume_training(tmp_path / "broken", dataset=toy_dataset, progress=False)
    assert [r["kept"] for r in resumed.history] == [r["kept"] for r in unbroken.history] == [0, 0, 0, 0, 1, 0]
    for name in ("model.safetensors", "last.safetensors"):
        a, _ = load_model(tmp_path / "unbroken" / name)
        b, _ = load_model(tmp_path / "broken" / name)
        assert all(torch.equal(v, a.state_dict()[k]) for k, v in b.state_dict().items())


def test_patience_counts_from_the_lowest_loss_and_a_later_epoch_as_good_is_kept():
    from cnnlab.training.early_stopping import BestEpoch

    best, model = BestEpoch(patience=2), torch.nn.Linear(1, 1)
    stops = [best.update({"epoch": e, "val_loss": loss}, model, 10) for e, loss in enumerate([0.10, 0.104, 0.104], 1)]
    assert stops == [False, False, True] and best.epoch == 3 and best.lowest == 0.10
