"""Finding the data directory and downloading the built-in datasets into it, verified."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm  # a bar in a terminal, a widget in Jupyter

from cnnlab.data.registry import DatasetSpec
from cnnlab.errors import CnnlabError

DATA_ENV = "CNNLAB_DATA"
OFFLINE_ENV = "CNNLAB_OFFLINE"
_CHUNK = 1 << 16
_TIMEOUT_S = 30


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$CNNLAB_DATA``, else ``~/.cache/cnnlab``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path.home() / ".cache" / "cnnlab"


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, expected_md5: str) -> None:
    """Download ``url`` to ``target`` through a temp file; rename only if the MD5 matches."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        if md5_of(tmp) != expected_md5:
            raise OSError(f"checksum mismatch for {url}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in {"1", "true", "yes"}


def _how_to_fix(spec: DatasetSpec, folder: Path) -> str:
    return (
        f"put the files {', '.join(spec.md5)} from {spec.mirrors[0]} into {folder}, "
        f"or point --data-dir / ${DATA_ENV} at a folder that has a '{spec.name}' subfolder"
    )


def ensure_files(spec: DatasetSpec, data_dir: Path, download: bool | None = None) -> Path:
    """Make sure the files of ``spec`` are in ``data_dir/<name>/`` with the right checksums.

    Missing files, and cached files whose MD5 is wrong (a broken earlier download), are
    fetched from the mirrors unless ``download`` is False (default: on, off when
    ``$CNNLAB_OFFLINE`` is set). Returns the dataset folder.
    """
    download = not _offline() if download is None else download
    folder = data_dir / spec.name
    for name in spec.md5:  # its files: MNIST-style datasets have four
        path = folder / name
        if path.is_file() and md5_of(path) == spec.md5[name]:
            continue
        problem = (
            f"{path} has the wrong checksum (truncated or corrupt)"
            if path.exists()
            else f"dataset '{spec.name}' is missing {path}"
        )
        if not download:
            raise CnnlabError(f"{problem} and downloads are off: {_how_to_fix(spec, folder)}")
        _download_one(spec, folder, name, problem)
    return folder


def _download_one(spec: DatasetSpec, folder: Path, name: str, problem: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot create {folder} ({exc.strerror}): use --data-dir") from None
    errors = []
    for mirror in spec.mirrors:
        try:
            _fetch(mirror + name, folder / name, spec.md5[name])
            return
        except (OSError, urllib.error.URLError) as exc:
            errors.append(f"{mirror}{name}: {getattr(exc, 'reason', exc)}")
    raise CnnlabError(
        f"{problem} and no mirror could be reached (last: {errors[-1]}): {_how_to_fix(spec, folder)}"
    )
