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


def test_json_nested_past_the_bound_is_one_line_not_a_recursion_error(tmp_path):
    from cnnlab.errors import CnnlabError
    from cnnlab.files import MAX_JSON_DEPTH, json_depth, parse_json, read_json

    for depth in (MAX_JSON_DEPTH + 1, 10_000):  # under and over Python's own recursion limit
        path = tmp_path / "model.json"
        path.write_text("[" * depth + "]" * depth)
        with pytest.raises(CnnlabError, match=f"model.json: JSON nested too deeply .*{MAX_JSON_DEPTH} levels"):
            read_json(path)
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_depth(parse_json(nested, "body")) == MAX_JSON_DEPTH  # at the bound: accepted
    with pytest.raises(CnnlabError, match="body: not valid JSON"):
        parse_json(b"{", "body")
    with pytest.raises(CnnlabError, match=r"body: not valid JSON .*digits"):
        parse_json('{"image": ' + "1" * 5000 + "}", "body")  # past Python's int conversion limit
    with pytest.raises(CnnlabError, match="too large"):
        read_json(path, max_bytes=10)
