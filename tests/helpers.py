"""Helpers shared by several test modules: hostile image headers, runs stopped mid-epoch, a server's port."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnlab.training.checkpoint import CHECKPOINT_FILE
from cnnlab.using.predict import png_bytes

# Every tier, the slow one included (conftest.py): on CI (CI set) and with make test-all (CNNLAB_TESTS=all).
EVERY_TIER = os.environ.get("CNNLAB_TESTS") == "all" or bool(os.environ.get("CI"))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (its CRC fixed, its data not):
    a decompression bomb's header, or a damaged file's."""
    data = bytearray(png_bytes(np.zeros((4, 4), np.uint8)))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


def wait_until_mid_epoch(process: subprocess.Popen, run: Path, seconds_into_next: float) -> None:
    """Wait until the training ``process`` has written its first checkpoint in ``run`` (an epoch
    done), then ``seconds_into_next`` more, so the next epoch is under way; it must still run."""
    deadline = time.monotonic() + 300
    while not (run / CHECKPOINT_FILE).exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(seconds_into_next)
    assert process.poll() is None, "the run finished before it could be stopped"


def docs_scratch_folder(folder: Path) -> Path:
    """``folder`` made ready for the docs' examples, which read ``docs/examples/`` as a reader's
    clone has it (linked, not copied) and write their runs beside it."""
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "examples").symlink_to(Path(__file__).resolve().parents[1] / "docs" / "examples")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until ``url`` answers 200, failing the test if ``process`` (the server) exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"cnnlab serve exited early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"cnnlab serve did not answer {url} within {seconds} s")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``cnnlab ARGS`` in this process: its exit code, stdout and stderr."""
    from cnnlab.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, *args, match: str) -> None:
    """``cnnlab ARGS`` fails with one line on stderr, naming ``match``, and no traceback."""
    code, _, err = run_cli(capsys, *args)
    assert code != 0
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and match in err, err
