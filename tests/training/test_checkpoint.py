"""Checkpoints and --resume (cnnlab.training.loop, cnnlab.training.checkpoint): a run killed mid-epoch and resumed ends
exactly as an uninterrupted one; checkpoints load without running code."""

import json
import os
import pickle
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from cnnlab.training.loop import resume_training, train
from tests.helpers import wait_until_mid_epoch

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
    history = [(run / "history.csv").read_text().splitlines() for run in (whole, broken)]
    assert [line.rsplit(",", 1)[0] for line in history[0]] == [line.rsplit(",", 1)[0] for line in history[1]]


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
    with pytest.raises(CnnlabError, match="refused as unsafe"):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_an_unfinished_run_is_not_overwritten_and_ctrl_c_says_how_to_resume(toy_dataset, tmp_path, capsys,
                                                                            monkeypatch):
    import importlib

    train_module = importlib.import_module("cnnlab.training.loop")  # the module, not the function cnnlab.train
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT_FILE).write_bytes(b"x")
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert f"continue it with 'cnnlab train --resume {tmp_path / 'run'}'" in capsys.readouterr().err

    def interrupted(config, **_):
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / CHECKPOINT_FILE).write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    assert main(["train", "--out", str(tmp_path / "new")]) == 2
    assert f"Resume with: cnnlab train --resume {tmp_path / 'new'}" in capsys.readouterr().err


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
