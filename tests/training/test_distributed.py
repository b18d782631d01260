"""Data-parallel training under torchrun (cnnlab.training.distributed): 2 CPU processes with gloo."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.models.registry import MODELS
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.distributed import SINGLE, World, shard
from tests.helpers import wait_until_mid_epoch


def test_each_rank_takes_an_equal_disjoint_shard():
    order = torch.randperm(11)
    parts = [shard(order, World(rank, 3, rank, 3)) for rank in range(3)]
    assert all(len(p) == 3 for p in parts) and len(set(torch.cat(parts).tolist())) == 9
    assert torch.equal(shard(order, SINGLE), order)


def launch(*args: str, processes: int = 2) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node=N -m cnnlab ...`` in a session of its own (killed as a
    group). --standalone: each launch rendezvouses on a free port of its own, so a launch never meets
    a port an earlier one (or another test's) still holds."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "cnnlab", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "CNNLAB_OFFLINE": "1"})


def workers_of(launcher: int) -> list[int]:
    """The processes torchrun ``launcher`` started: each leads a session of its own, so killing the
    launcher's process group leaves them running."""
    workers = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            stat = (process / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == launcher:  # field 4, after the name: the parent
            workers.append(int(process.name))
    return workers


def kill_run(process: subprocess.Popen) -> int:
    """SIGKILL a torchrun launch, its workers too, and wait until none of them is left; how many workers."""
    groups = [process.pid, *workers_of(process.pid)]
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait()
    for group in groups:
        wait_until_gone(group)
    return len(groups) - 1


def wait_until_gone(group: int, seconds: float = 30) -> None:
    """Wait until no process of the process group ``group`` is left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {group} outlived SIGKILL for {seconds} s")


def finish(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_two_processes_reach_the_single_process_accuracy_band(mnist_dir, tmp_path):
    common = ["--model", "cnn-fast", "--epochs", "2", "--limit", "12000", "--data-dir", str(mnist_dir)]
    output = finish(launch("train", *common, "--batch-size", "64", "--out", str(tmp_path / "ddp")))
    single = subprocess.run([sys.executable, "-m", "cnnlab", "train", *common, "--batch-size", "128", "--out",
                             str(tmp_path / "one")], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    assert output.count("Training cnn-fast") == 1 and output.count("Test error") == 1  # rank 0 speaks alone
    assert "in each of 2 processes (batch 64 each)" in output
    ddp, one = (json.loads((tmp_path / run / "metrics.json").read_text())["test_accuracy"] for run in ("ddp", "one"))
    assert ddp > 0.97 and one > 0.97 and abs(ddp - one) < 0.01


@pytest.mark.slow
def test_resume_works_under_torchrun(mnist_dir, tmp_path):
    args = ["--model", MODELS["cnn"].spec, "--epochs", "3", "--limit", "20000", "--augment", "light", "--seed", "2",
            "--data-dir", str(mnist_dir)]  # a layer spec, as a user would give it
    finish(launch("train", *args, "--out", str(tmp_path / "whole")))
    victim = launch("train", *args, "--out", str(tmp_path / "broken"))
    wait_until_mid_epoch(victim, tmp_path / "broken", 1.0)
    # Both workers too: left running, they wrote the next epoch's checkpoint while the resumed run's
    # ranks were reading it, and the two ranks resumed from different epochs.
    assert kill_run(victim) == 2
    assert len(load_checkpoint(tmp_path / "broken")["generators"]) == 2  # each rank's own random state
    assert "Resuming" in finish(launch("train", "--resume", str(tmp_path / "broken")))
    expected, got = (load_file(tmp_path / run / "model.safetensors") for run in ("whole", "broken"))
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert json.loads((tmp_path / "broken" / "model.json").read_text())["architecture"] == "spec"
