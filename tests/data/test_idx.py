import contextlib
import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import encode_idx, parse_idx, read_idx, read_idx_pair, write_idx
from cnnlab.errors import CnnlabError


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_round_trip(shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    assert np.array_equal(parse_idx(encode_idx(array)), array)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_file_round_trip_raw_and_gz(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    assert np.array_equal(read_idx(tmp_path / name), array)


def test_truncated_file_is_refused():
    data = encode_idx(np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(CnnlabError, match="truncated"):
        parse_idx(data[:-3], "t")


def test_extra_bytes_are_refused():
    with pytest.raises(CnnlabError, match="holds"):
        parse_idx(encode_idx(np.zeros((2, 2), np.uint8)) + b"\x00", "t")


@pytest.mark.parametrize("magic", [0x00000903, 0x01000803, 0x00000D03, 0x00000800, 0x00000805])
def test_wrong_magic_is_refused(magic):
    data = struct.pack(">I", magic) + b"\x00" * 64
    with pytest.raises(CnnlabError, match="wrong magic number"):
        parse_idx(data, "t")


def test_header_claiming_gigabytes_is_refused_without_allocating():
    # 60000 x 28 x 28 x 100 would be 4.7 GB; the check compares sizes before touching data.
    data = struct.pack(">HBB4I", 0, 8, 4, 60000, 28, 28, 100) + b"\x00" * 10
    with pytest.raises(CnnlabError, match="truncated or corrupt"):
        parse_idx(data, "t")


def test_corrupt_gzip_is_refused(tmp_path):
    blob = gzip.compress(encode_idx(np.zeros((3, 3), np.uint8)))
    path = tmp_path / "bad.gz"
    path.write_bytes(blob[:10] + b"garbage" + blob[17:])
    with pytest.raises(CnnlabError, match="corrupt gzip"):
        read_idx(path)


def test_pair_counts_must_match(tmp_path):
    write_idx(tmp_path / "i.gz", np.zeros((4, 2, 2), np.uint8))
    write_idx(tmp_path / "l.gz", np.zeros(3, np.uint8))
    with pytest.raises(CnnlabError, match=r"4 images but .* 3 labels"):
        read_idx_pair(tmp_path / "i.gz", tmp_path / "l.gz")


def test_missing_file(tmp_path):
    with pytest.raises(CnnlabError, match="not found"):
        read_idx(tmp_path / "nope.gz")


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_random_bytes_give_clean_errors(data):
    with contextlib.suppress(CnnlabError):
        parse_idx(data, "fuzz")
