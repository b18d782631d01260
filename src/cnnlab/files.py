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

from cnnlab.errors import CnnlabError, first_line

MAX_JSON_DEPTH = 32  # cnnlab's own files nest 4 deep; anything much deeper is damaged or hostile
MAX_JSON_FILE_BYTES = 16 * 1024 * 1024  # a model.json or config.json is a few KB

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
    except OSError as exc:  # a full disk, a read-only folder: named by the file meant, not by its temp file (or none)
        Path(tmp).unlink(missing_ok=True)
        exc.filename, exc.filename2 = str(path), None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def parse_json(text: str | bytes, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``text`` parsed as JSON, nested at most ``max_depth`` arrays and objects deep, or a
    :class:`CnnlabError` naming ``source`` and the fault. Python's parser refuses nesting past its
    recursion limit with a ``RecursionError``; that, and any depth past ``max_depth``, is one line here."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise CnnlabError(f"{source}: JSON nested too deeply (the limit is {max_depth} levels)") from None
    except ValueError as exc:  # not JSON, not UTF-8, or a number of more digits than Python converts
        raise CnnlabError(f"{source}: not valid JSON ({first_line(exc)})") from None
    if json_depth(value) > max_depth:
        raise CnnlabError(f"{source}: JSON nested too deeply (the limit is {max_depth} levels)")
    return value


def json_depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` nests (0 for a number or a string), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def read_json(path: str | Path, max_bytes: int = MAX_JSON_FILE_BYTES) -> Any:
    """A JSON file cnnlab reads (``model.json``, ``config.json``...), bounded in size and depth:
    a :class:`CnnlabError` that names the file says what is wrong with it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise CnnlabError(f"{path}: {size:,} bytes, too large for one of cnnlab's JSON files "
                              f"(the limit is {max_bytes:,}); it was changed or is not cnnlab's")
        text = path.read_bytes()
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_json(text, str(path))


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def names_a_file(text: str) -> bool:
    """Whether ``text`` is the path of an existing file, False for text no path can be (a layer spec
    longer than a file name may be raises ``OSError`` in ``Path.is_file``)."""
    try:
        return "\n" not in text and "\0" not in text and Path(text).is_file()
    except (OSError, ValueError):
        return False


def names_a_path(text: str) -> bool:
    """Whether ``text`` is the path of an existing file or folder (False where it cannot be a path)."""
    try:
        return "\n" not in text and "\0" not in text and Path(text).exists()
    except (OSError, ValueError):
        return False


def free_folder(base: Path, suffix: str = "") -> Path:
    """``base``, or ``base-2``, ``base-3``... (each followed by ``suffix``, such as ``.png``): the
    first that does not exist yet, so nothing is overwritten."""
    candidate, n = base.with_name(base.name + suffix), 1
    while names_a_path(str(candidate)):  # a name too long for a path is free: making it says why it fails
        n += 1
        candidate = base.with_name(f"{base.name}-{n}{suffix}")
    return candidate
