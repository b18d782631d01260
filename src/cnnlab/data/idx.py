"""Reader and writer for the IDX format of MNIST-like datasets.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values. The MNIST files use type 0x08 (uint8):
images are ``0x00000803`` (N, rows, cols) and labels ``0x00000801`` (N,).

Every check happens before anything large is allocated, so a header that claims gigabytes
in a 1 KB file is refused cheaply.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_UINT8 = 0x08
_MAX_DIMS = 4


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, decompressed when it is gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CnnlabError(f"{path}: file not found") from None
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise CnnlabError(
            f"{path}: corrupt gzip file ({exc}); replace it with a good copy "
            "(a built-in dataset's file is downloaded again once deleted)"
        ) from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array of the shape the header gives.

    Args:
        data: the uncompressed file contents.
        source: a name for error messages (usually the path).

    Returns:
        ``np.ndarray`` of dtype uint8 and shape ``(d0, d1, ...)`` from the header.
    """
    if len(data) < 4:
        raise CnnlabError(f"{source}: too short to be an IDX file ({len(data)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code != _UINT8 or not 1 <= ndim <= _MAX_DIMS:
        magic = int.from_bytes(data[:4], "big")
        raise CnnlabError(
            f"{source}: wrong magic number 0x{magic:08x}, not a uint8 IDX file "
            f"(expected 0x{IMAGES_MAGIC:08x} for images or 0x{LABELS_MAGIC:08x} for labels)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CnnlabError(f"{source}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims, dtype=np.uint64))
    actual = len(data) - header_size
    if actual != expected:
        raise CnnlabError(
            f"{source}: header says {'x'.join(map(str, dims))} = {expected} values but the "
            f"file holds {actual}; the file is truncated or corrupt, delete it and download again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, raw or ``.gz``, into a uint8 array (see :func:`parse_idx`)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files.

    Returns:
        ``(images, labels)``: uint8 arrays of shape ``(N, rows, cols)`` and ``(N,)``.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise CnnlabError(f"{images_path}: expected an image file (3 dims), got {images.ndim} dims")
    if labels.ndim != 1:
        raise CnnlabError(f"{labels_path}: expected a label file (1 dim), got {labels.ndim} dims")
    if len(images) != len(labels):
        raise CnnlabError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the two files must come from the same split"
        )
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UINT8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    buffer = io.BytesIO()
    buffer.write(header)
    buffer.write(array.tobytes())
    return buffer.getvalue()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    data = encode_idx(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
