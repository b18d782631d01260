import json

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.files import load_model
from cnnlab.training.config import TrainConfig
from cnnlab.training.lines import epoch_line
from cnnlab.training.loop import train
from cnnlab.training.optim import average_weights
from cnnlab.training.presets import PRESETS


def test_training_learns_toy_data_and_writes_the_run(toy_dataset, tmp_path):
    result = train(model="cnn", epochs=3, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "run"))
    assert result.metrics["test_accuracy"] > 0.9
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "model.json", "history.csv", "metrics.json", "config.json",
            "curves.png", "confusion.png"} <= files
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test_accuracy", "test_error", "per_class_accuracy", "confusion_matrix", "train_seconds",
            "total_seconds"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == 60
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seed"] == 0 and config["versions"]["torch"] == torch.__version__
    _model, info = load_model(tmp_path / "run")
    assert info.class_names == ["a", "b", "c"] and info.architecture == "cnn"
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,loss,train_ce,accuracy,val_loss,val_accuracy,seconds,kept"
    assert "last.safetensors" in files


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adadelta"])
@pytest.mark.parametrize("schedule", ["onecycle", "step", "constant"])
def test_every_optimizer_and_schedule_runs(toy_dataset, optimizer, schedule):
    result = train(model="mlp", epochs=2, batch_size=64, optimizer=optimizer, schedule=schedule,
                   dataset=toy_dataset)
    assert len(result.history) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("epochs", 0, "--epochs"), ("epochs", -1, "--epochs"), ("batch_size", 0, "--batch-size"),
    ("lr", -1.0, "--lr"), ("optimizer", "rmsprop", "--optimizer"), ("model", "vgg", "unknown model"),
    ("threads", 0, "--threads"), ("device", "tpu", "--device"), ("label_smoothing", 1.0, "--label-smoothing"),
    ("preset", "turbo", "unknown preset 'turbo'"),
])
def test_bad_options_are_refused(option, value, message):
    with pytest.raises(CnnlabError, match=message):
        TrainConfig(**{option: value}).validate()


def test_epoch_line_reads_like_keras():
    line = epoch_line({"epoch": 1, "loss": 0.25, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.97,
                       "seconds": 3.2}, 2, 2)
    assert line == ("Epoch 1/2 - loss: 0.2500 - accuracy: 0.9000 - val_loss: 0.1000 - val_accuracy: 0.9700 "
                    "- 3.2s (2 threads)")


@pytest.mark.slow
def test_same_seed_same_history_on_mnist(mnist_dir):
    # The same thread count: it sets the order of float sums (another training running beside this one
    # would otherwise leave the second run fewer threads than the first).
    runs = [train(model="cnn", epochs=1, limit=3000, seed=7, data_dir=str(mnist_dir), progress=False, threads=2)
            for _ in range(2)]
    drop = ("seconds",)
    histories = [[{k: v for k, v in row.items() if k not in drop} for row in r.history] for r in runs]
    assert histories[0] == histories[1]
    assert runs[0].metrics["confusion_matrix"] == runs[1].metrics["confusion_matrix"]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = train(model="cnn", epochs=1, limit=3000, seed=8, data_dir=str(mnist_dir), progress=False, threads=2)
    assert other.history[0]["loss"] != runs[0].history[0]["loss"]


@pytest.mark.slow
def test_fast_preset_reaches_99_percent_on_mnist(mnist):
    result = train(preset="fast", dataset=mnist, progress=False)
    assert result.metrics["test_accuracy"] >= 0.99


def test_defaults_are_the_fast_preset_and_presets_take_overrides():
    assert TrainConfig() == TrainConfig.from_preset("fast")
    accurate = TrainConfig.from_preset("accurate", epochs=2)
    expected = {**PRESETS["accurate"].settings, "epochs": 2}
    assert accurate.preset == "accurate" and all(getattr(accurate, k) == v for k, v in expected.items())
    with pytest.raises(CnnlabError, match="unknown preset 'turbo': use one of fast, accurate"):
        TrainConfig.from_preset("turbo")


def test_train_accepts_a_preset_by_name(toy_dataset):
    result = train(preset="accurate", epochs=1, batch_size=32, dataset=toy_dataset, progress=False)
    assert result.info.architecture == "cnn" and len(result.history) == 1


def test_label_smoothing_changes_the_loss_not_the_data(toy_dataset):
    hard, smooth = (train(model="mlp", epochs=1, label_smoothing=ls, dataset=toy_dataset, progress=False)
                    for ls in (0.0, 0.2))
    assert smooth.history[0]["loss"] != hard.history[0]["loss"]


def test_val_split_applies_to_a_dataset_given_without_one(toy_dataset):
    from dataclasses import replace

    no_val = replace(toy_dataset, val_images=toy_dataset.val_images[:0], val_labels=toy_dataset.val_labels[:0])
    result = train(model="mlp", epochs=1, val_split=0.25, dataset=no_val, progress=False)
    assert "val_accuracy" in result.history[0]
    kept = train(model="mlp", epochs=1, val_split=0.0, dataset=no_val, progress=False)
    assert "val_accuracy" not in kept.history[0]


def test_training_loss_scores_each_ensemble_member_on_its_own():
    from cnnlab.training.optim import predicted_labels, training_loss

    logits = torch.randn(6, 10, 3)
    targets = torch.randint(0, 10, (6,))
    each = [torch.nn.functional.cross_entropy(logits[..., k], targets, label_smoothing=0.1) for k in range(3)]
    assert torch.allclose(training_loss(logits, targets, 0.1), torch.stack(each).mean())
    assert torch.equal(predicted_labels(logits), logits.sum(-1).argmax(1))
    assert torch.equal(predicted_labels(logits[..., 0]), logits[..., 0].argmax(1))


def test_ema_delivers_the_moving_average_of_the_weights(toy_dataset):
    from torch.optim.swa_utils import AveragedModel

    plain = train(model="mlp", epochs=2, batch_size=32, dataset=toy_dataset, progress=False)
    averaged = train(model="mlp", epochs=2, batch_size=32, ema=0.9, dataset=toy_dataset, progress=False)
    assert plain.history[-1]["loss"] == averaged.history[-1]["loss"]  # the optimizer's path is the same
    weights = [p for p in averaged.model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(weights, plain.model.parameters(), strict=True))
    # One step by hand: the average moves 10% of the way towards the new weights.
    net = torch.nn.Linear(2, 1)
    ema = average_weights(net, 0.9)
    assert isinstance(ema, AveragedModel) and average_weights(net, 0.0) is None
    before = ema.module.weight.detach().clone()
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update_parameters(net)
    assert torch.allclose(ema.module.weight, before + 0.1)


def test_bad_ema_is_refused():
    with pytest.raises(CnnlabError, match="--ema must be in"):
        TrainConfig(ema=1.0).validate()


def test_a_diverging_run_stops_with_the_epoch_step_and_the_fix(toy_dataset, tmp_path):
    with pytest.raises(CnnlabError, match=r"diverged: the loss became nan or inf in epoch 1/2, step \d+ of 8; "
                                          r"lower the learning rate"):
        train(model="mlp", epochs=2, batch_size=32, optimizer="sgd", lr=1e8, schedule="constant",
              dataset=toy_dataset, out=str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()  # nothing half-trained is saved


def test_a_run_trained_on_a_folder_in_python_finds_it_again(idx_folder, tmp_path):
    from cnnlab.data import load_dataset
    from cnnlab.reporting.metrics import evaluate

    ds = load_dataset(idx_folder)
    train(model="cnn", epochs=1, batch_size=16, dataset=ds, out=str(tmp_path / "run"), progress=False)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["dataset"] == str(idx_folder.resolve())
    assert 0 <= evaluate(tmp_path / "run")["test_accuracy"] <= 1  # no dataset given: the run's own folder


def test_a_colour_folder_trains_on_three_channels_and_predicts_held_out_images(colour_run):
    import json

    from cnnlab.using.predict import predict_files

    meta = json.loads((colour_run / "model.json").read_text())
    assert meta["input"]["channels"] == 3 and len(meta["normalization"]["mean"]) == 3
    assert meta["test_accuracy"] >= 0.95  # 59 of 60 on one thread, 60 on two; chance is 1 in 3
    answers = predict_files(colour_run, [colour_run.parent / "held-out"], progress=False)
    assert [a.label for a in answers] == [a.path.split("/")[-2] for a in answers] and len(answers) == 6


def test_digits_are_never_mirrored(idx_folder):
    from cnnlab import train

    with pytest.raises(CnnlabError, match=r"--augment crop-flip mirrors images, and mnist holds digits"):
        train(dataset="mnist", augment="crop-flip", limit=100, epochs=1, progress=False)
