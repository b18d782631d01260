"""Checkpoints and --resume (cnnlab.training.loop, cnnlab.training.checkpoint): a run killed mid-epoch and resumed ends
exactly as an uninterrupted one; checkpoints load without running code."""

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from cnnlab.training.loop import resume_training, train
from tests.helpers import assert_one_line_error, wait_until_mid_epoch

# Long enough epochs (about 4 s on one thread here) to be killed in the middle of one.
ARGS = ["--model", "cnn", "--epochs", "3", "--limit", "20000", "--augment", "light", "--ema", "0.99",
        "--threads", "1", "--seed", "5"]


def cnnlab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "CNNLAB_OFFLINE": "1"})


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_identical_result(mnist_dir, tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    reference = cnnlab("train", *ARGS, "--data-dir", str(mnist_dir), "--out", str(whole))
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    victim = cnnlab("train", *ARGS, "--data-dir", str(mnist_dir), "--out", str(broken))
    wait_until_mid_epoch(victim, broken, 1.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert load_checkpoint(broken)["history"][-1]["epoch"] == 1 and not (broken / "model.safetensors").exists()

    resumed = cnnlab("train", "--resume", str(broken))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "Resuming" in output and "Epoch 2/3" in output and "Epoch 1/3" not in output
    expected, got = load_file(whole / "model.safetensors"), load_file(broken / "model.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, broken)]
    for key in ("test_accuracy", "test_loss", "confusion_matrix"):
        assert metrics[0][key] == metrics[1][key]
    history = [[{k: v for k, v in row.items() if k != "seconds"}  # every figure but the seconds: the machine's
                for row in csv.DictReader((run / "history.csv").read_text().splitlines())] for run in (whole, broken)]
    assert history[0] == history[1] and "kept" in history[0][0]


def test_resume_in_process_matches_and_refuses_finished_or_missing_runs(toy_dataset, tmp_path):
    settings = dict(model="cnn", epochs=3, batch_size=32, augment="light", ema=0.9, seed=3, threads=1,
                    progress=False)
    whole = train(dataset=toy_dataset, out=str(tmp_path / "whole"), **settings)

    def stop_after_first_epoch(row, *_):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(dataset=toy_dataset, out=str(tmp_path / "part"), on_epoch=stop_after_first_epoch, **settings)
    resumed = resume_training(tmp_path / "part", dataset=toy_dataset, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.metrics["test_loss"] == whole.metrics["test_loss"]
    with pytest.raises(CnnlabError, match="all 3 epochs are done already"):
        resume_training(tmp_path / "whole")
    with pytest.raises(CnnlabError, match="no checkpoint here"):
        resume_training(tmp_path / "nowhere")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / CHECKPOINT_FILE).write_bytes(pickle.dumps({"model": Exploit()}, protocol=2))
    with pytest.raises(CnnlabError, match="refused: loading it could run code") as refused:
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()
    assert "posix.system" in str(refused.value) and "cnnlab wrote" in str(refused.value)
    assert "weights_only" not in str(refused.value)  # PyTorch's advice to load it anyway is not repeated


@pytest.mark.parametrize("data", [b"hello, not a pickle", pickle.dumps({"model": [1, 2]})])
def test_a_file_that_is_no_checkpoint_is_called_damaged_not_dangerous(tmp_path, data):
    (tmp_path / CHECKPOINT_FILE).write_bytes(data)
    with pytest.raises(CnnlabError, match="damaged, or not a cnnlab checkpoint") as damaged:
        load_checkpoint(tmp_path)
    assert "could run code" not in str(damaged.value) and "weights_only" not in str(damaged.value)


def edit(**changes):
    """A change to a checkpoint: ``key=value`` sets a field (``None``: deletes it), ``config_key=value`` a config
    option, ``generator_key`` a generator's state; a callable value is applied to the old one."""
    def apply(state: dict) -> None:
        for key, value in changes.items():
            where, key = (state["config"], key[7:]) if key.startswith("config_") else (
                state["generators"][0], key[10:]) if key.startswith("generator_") else (state, key)
            if value is None:
                del where[key]
            else:
                where[key] = value(where[key]) if callable(value) else value
    return apply


def without_validation(row: dict) -> dict:
    return {key: value for key, value in row.items() if not key.startswith("val_")}


def first_tensor_resized(weights: dict) -> dict:
    name = next(iter(weights))
    return {**weights, name: torch.zeros(weights[name].numel() + 1)}


DAMAGES = {
    "epochs 'abc'": (edit(config_epochs="abc"), "its config's epochs is 'abc', not int"),
    "epochs 0": (edit(config_epochs=0), "--epochs must be at least 1"),
    "an unknown model": (edit(config_model="vgg"), "unknown model 'vgg'"),
    "an unknown option": (edit(config_speed=2), "unknown field 'speed'"),
    "no model option": (edit(config_model=None), "its config has no 'model'"),
    "no history": (edit(history=None), "no 'history'"),
    "no weights": (edit(model=None), "no 'model'"),
    "no generators": (edit(generators=None), "no 'generators'"),
    "no optimizer": (edit(optimizer=None), "no 'optimizer'"),
    "history text": (edit(history="abc"), "'history' is a str"),
    "history of text": (edit(history=[{"epoch": "1", "seconds": 1.0}]), "a row of its history is not the numbers"),
    "history from epoch 2": (edit(history=lambda rows: [{**rows[0], "epoch": 2}]), "epochs are not 1, 2, 3"),
    "a point of other fields": (edit(points=[{}]), "a row of its points is not the numbers cnnlab writes"),
    "validation in some rows": (edit(points=lambda rows: [without_validation(rows[0])]), "some of its rows have"),
    "validation in no row": (edit(history=lambda rows: list(map(without_validation, rows)),
                                  points=lambda rows: list(map(without_validation, rows))), "lack validation"),
    "a weight resized": (edit(model=first_tensor_resized), "does not fit the run's network"),
    "a weight more": (edit(model=lambda w: {**w, "extra.weight": torch.zeros(2)}), "does not fit"),
    "no optimizer groups": (edit(optimizer=lambda o: {**o, "param_groups": []}), "does not fit"),
    "a schedule step of text": (edit(scheduler=lambda d: {**d, "last_epoch": "abc"}), "schedule is not this run's"),
    "optimizer state resized": (edit(optimizer=lambda o: {**o, "state": {0: {
        k: torch.zeros(3) if v.dim() else v for k, v in o["state"][0].items()}}}), "optimizer's state does not fit"),
    "best weights resized": (edit(best=lambda b: {**b, "weights": first_tensor_resized(b["weights"])}),
                             "best epoch's weights do not fit"),
    "a position past the images": (edit(ongoing={"order": torch.tensor([0, 10**6]), "next": 0, "loss_sum": torch.zeros(
        ()), "hits": torch.zeros((), dtype=torch.long)}), "where its epoch stood does not fit"),
    "history emptied": (edit(history=[], points=[]), "schedule has taken 4 of its 8 steps, and the epochs left take 8"),
    "a generator of text": (edit(generator_torch="abc"), "a random generator is not as cnnlab writes it"),
    "a generator cut short": (edit(generator_shuffle=lambda g: g[:3]), "does not fit"),
    "no generator at all": (edit(generators=[]), "a random generator is not as cnnlab writes it"),
    "early stopping half there": (edit(best={"patience": 1}), "best is not as cnnlab writes it"),
    "another format": (edit(format="other-2"), "not a cnnlab-checkpoint-1"),
}


@pytest.fixture(scope="module")
def stopped(data, tmp_path_factory) -> Path:
    """A run of 2 epochs stopped after the first, with a weight average and early stopping: its checkpoint to edit."""
    run = tmp_path_factory.mktemp("stopped") / "run"

    def stop_after_first_epoch(row, *_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(dataset=data, out=run, model="conv8k3 maxpool dense16", epochs=2, batch_size=32, ema=0.9, patience=2,
              threads=1, progress=False, on_epoch=stop_after_first_epoch)
    return run


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_hand_edited_checkpoint_is_one_line_saying_to_train_again(stopped, tmp_path, capsys, damage):
    change, expected = DAMAGES[damage]
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    state = torch.load(run / CHECKPOINT_FILE, weights_only=True)
    change(state)
    torch.save(state, run / CHECKPOINT_FILE)
    assert_one_line_error(capsys, "train", "--resume", run, match=expected)
    assert_one_line_error(capsys, "train", "--resume", run, match="damaged checkpoint")
    assert_one_line_error(capsys, "train", "--resume", run, match="train again into that folder with --overwrite")
    assert not (run / "model.safetensors").exists()


def test_the_unedited_checkpoint_resumes(stopped, tmp_path, capsys):
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    assert main(["train", "--resume", str(run)]) == 0
    assert "Resuming" in capsys.readouterr().out and (run / "report.html").is_file()


def test_an_unfinished_run_is_not_overwritten_and_ctrl_c_says_how_to_resume(data, tmp_path, capsys, monkeypatch):
    import importlib

    train_module = importlib.import_module("cnnlab.training.loop")  # the module, not the function cnnlab.train
    real_train, run = train_module.train, tmp_path / "run"
    args = ["train", "--dataset", str(data), "--model", "mlp", "--epochs", "2", "--threads", "1", "--out", str(run)]

    def stop_after_first_epoch(row, *_):
        raise KeyboardInterrupt  # as a Ctrl-C after the first epoch's checkpoint would

    monkeypatch.setattr(train_module, "train", lambda config=None, **options: real_train(
        config, on_epoch=stop_after_first_epoch, **options))
    assert main(args) == 2
    assert f"Resume with: cnnlab train --resume {run}" in capsys.readouterr().err
    monkeypatch.setattr(train_module, "train", real_train)
    assert main(args) == 2
    assert f"continue it with 'cnnlab train --resume {run}'" in capsys.readouterr().err


def test_ctrl_c_mid_epoch_checkpoints_where_the_epoch_stood(toy_dataset, tmp_path, monkeypatch):
    import importlib

    train_module = importlib.import_module("cnnlab.training.loop")
    settings = dict(model="cnn", epochs=3, batch_size=16, augment="light", seed=4, threads=1, progress=False)
    whole = train(dataset=toy_dataset, out=str(tmp_path / "whole"), **settings)
    real_loss, calls = train_module.training_loss, []

    def loss_then_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 20:  # epoch 2 (15 steps an epoch), 5th step: as if the user pressed Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "training_loss", loss_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(dataset=toy_dataset, out=str(tmp_path / "part"), **settings)
    monkeypatch.setattr(train_module, "training_loss", real_loss)
    state = load_checkpoint(tmp_path / "part")
    assert len(state["history"]) == 1 and state["ongoing"]["next"] == 5 * 16  # stopped after step 5 of epoch 2
    resumed = resume_training(tmp_path / "part", dataset=toy_dataset, progress=False)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_prints_the_resume_command(mnist_dir, tmp_path):
    run = tmp_path / "run"
    victim = cnnlab("train", *ARGS, "--data-dir", str(mnist_dir), "--out", str(run))
    wait_until_mid_epoch(victim, run, 1.5)
    victim.send_signal(signal.SIGINT)
    output = victim.communicate(timeout=60)[0]
    assert victim.returncode == 2 and f"Resume with: cnnlab train --resume {run}" in output
    assert load_checkpoint(run)["ongoing"]["next"] > 0  # saved in the middle of epoch 2
    assert cnnlab("train", "--resume", str(run)).wait(timeout=300) == 0
    assert (run / "model.safetensors").exists()
