"""Atomic writes: the whole file or the old one, never a temp file left, and ordinary permissions."""

import os
import stat

import pytest

from cnnlab import files
from cnnlab.files import atomic_write_bytes


def test_a_written_file_has_the_permissions_open_would_give(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "UMASK", 0o022)
    atomic_write_bytes(tmp_path / "a.png", b"picture")
    assert stat.S_IMODE(os.stat(tmp_path / "a.png").st_mode) == 0o644  # not mkstemp's private 0600
    monkeypatch.setattr(files, "UMASK", 0o077)
    atomic_write_bytes(tmp_path / "b.png", b"picture")
    assert stat.S_IMODE(os.stat(tmp_path / "b.png").st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "model.json"
    atomic_write_bytes(target, b"old")

    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]
