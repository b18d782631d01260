"""Files written atomically: a temp file in the same folder, then a rename, so a crash or Ctrl-C
never leaves a half-written file where a good one was."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once, at import, before any thread could create files meanwhile


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask: usually
    rw-r--r--), not the temp file's private 0600, so a run can be shared and served like any file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise



def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())



def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")



def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def free_folder(base: Path, suffix: str = "") -> Path:
    """``base``, or ``base-2``, ``base-3``... (each followed by ``suffix``, such as ``.png``): the
    first that does not exist yet, so nothing is overwritten."""
    candidate, n = base.with_name(base.name + suffix), 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}{suffix}")
    return candidate
