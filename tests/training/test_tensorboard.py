"""--log tensorboard (cnnlab.training.tensorboard): the event files a run writes, read back as
TensorBoard reads them."""

import pytest

from cnnlab.cli import main
from cnnlab.training.loop import train


def read_events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_a_run_logs_steps_epochs_images_and_hyperparameters(toy_dataset, tmp_path):
    run = tmp_path / "run"
    result = train(model="cnn", epochs=2, batch_size=32, dataset=toy_dataset, out=str(run), progress=False,
                   log="tensorboard", pictures="none", threads=1)
    events = read_events(run)
    tags = events.Tags()
    steps = -(-240 // 32) * 2
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, steps + 1))
    assert {"step/accuracy", "step/lr", "epoch/loss", "epoch/accuracy", "epoch/val_loss", "epoch/val_accuracy",
            "epoch/lr"} <= set(tags["scalars"])
    assert [round(e.value, 5) for e in events.Scalars("epoch/val_loss")] == [
        round(row["val_loss"], 5) for row in result.history]
    assert {"samples/training images", "test/confusion matrix"} <= set(tags["images"])
    confusion = events.Images("test/confusion matrix")[0]
    assert confusion.width > 100 and confusion.height > 100
    assert [e.value for e in events.Scalars("hparam/test_accuracy")] == [result.metrics["test_accuracy"]]
    assert any(events.PluginTagToContent("hparams"))  # the HPARAMS tab's session, with the settings
    settings = b"".join(events.PluginTagToContent("hparams").values())
    assert b"batch_size" in settings and b"label_smoothing" in settings


def test_a_run_with_event_files_is_overwritten_and_a_bad_logger_is_one_line(toy_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    train(model="mlp", epochs=1, batch_size=64, dataset=toy_dataset, out=str(run), progress=False, log="tensorboard",
          pictures="none")
    assert list(run.glob("events.out.tfevents.*"))
    train(model="mlp", epochs=1, batch_size=64, dataset=toy_dataset, out=str(run), progress=False, overwrite=True,
          pictures="none")
    assert not list(run.glob("events.out.tfevents.*"))
    assert main(["train", "--log", "wandb", "--out", str(tmp_path / "b")]) == 2
    assert "--log must be one of none, tensorboard" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--log"])
def test_the_option_is_in_the_help(option, capsys):
    assert main(["train", "--help"]) == 0
    assert option in capsys.readouterr().out
