"""The fuzz suite's ledger: every generated input, what it was (its target and case) and what it got.

Each fuzz test hands its inputs to :func:`attempt` (a library call), :func:`attempt_cli` (a
``cnnlab`` command in this process) or :func:`record_response` (an API answer). An input gets one
of these outcomes:

- ``answer``: a right answer (the caller checks it is right before recording it);
- ``clean error``: a :class:`~cnnlab.errors.CnnlabError`, exit status 2 with one ``error:`` line, or
  a 4xx with one JSON ``{"error": ...}`` line;
- ``traceback``, ``5xx``, ``wrong answer``, ``file lost`` or ``over bound``: each a failure, which
  fails the test too.

At the end of the session the counts are written as JSON (``test-artifacts/reliability.json``, or
the path in ``$CNNLAB_RELIABILITY_RESULTS``), from which docs/reliability.md is rendered.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import sys
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, settings

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text
from tests.helpers import EVERY_TIER

FAILURES = ("traceback", "5xx", "wrong answer", "file lost", "over bound")
# No input may take the test process's peak memory more than this many MB above where it stood
# before that input: every file, spec and body is bounded well below it before anything is allocated.
MEMORY_BOUND_MB = 1024
RESULTS = Path(os.environ.get("CNNLAB_RELIABILITY_RESULTS", "test-artifacts/reliability.json"))


class Ledger:
    """Counts of outcomes per target and case, and one example message for each."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.examples: dict[tuple[str, str, str], str] = {}
        self.targets: dict[str, str] = {}
        self.base_mb = 0.0
        self.peak_growth_mb: dict[str, float] = defaultdict(float)

    def begin(self) -> None:
        """Before an input: reset the peak of this process's memory, so :meth:`add` sees what it took."""
        self.base_mb = reset_peak_rss_mb()

    def add(self, target: str, case: str, outcome: str, message: str = "") -> None:
        self.counts[target][case][outcome] += 1
        self.examples.setdefault((target, case, outcome), plain(message))
        growth = status_mb("VmHWM") - self.base_mb
        self.peak_growth_mb[target] = max(self.peak_growth_mb[target], growth)
        if growth > MEMORY_BOUND_MB:
            self.counts[target][case]["over bound"] += 1
            raise AssertionError(f"{target} / {case}: one input took {growth:.0f} MB of memory (bound "
                                 f"{MEMORY_BOUND_MB} MB)")

    def to_json(self) -> dict[str, Any]:
        targets = []
        for target, cases in self.counts.items():
            rows = [{"case": case, "tried": sum(outcomes.values()), **{k: outcomes.get(k, 0) for k in
                     ("answer", "clean error", *FAILURES)},
                     "example": next((self.examples[(target, case, o)] for o in ("clean error", *FAILURES)
                                      if self.examples.get((target, case, o))), "")}
                    for case, outcomes in cases.items()]
            targets.append({"target": target, "what": self.targets.get(target, ""), "cases": rows,
                            "peak_growth_mb": round(self.peak_growth_mb[target], 1)})
        totals = Counter()
        for target in targets:
            for row in target["cases"]:
                totals.update({k: row[k] for k in ("tried", "answer", "clean error", *FAILURES)})
        return {"date": datetime.date.today().isoformat(), "machine": machine(),
                "command": command(), "memory_bound_mb": MEMORY_BOUND_MB,
                "totals": dict(totals), "targets": targets}

    def write(self, path: Path = RESULTS) -> None:
        if not self.counts:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


FOLDERS = re.compile(r"(?<![\w.])/(?:[^\s/:;,'\"()]+/)+")  # an absolute path's folders


def plain(message: str) -> str:
    """A message's first line as the reliability page shows it: absolute paths cut to their last
    part (the test's temporary folders mean nothing to a reader), at most 240 characters."""
    lines = message.strip().splitlines()
    return FOLDERS.sub("", lines[0])[:240] if lines else ""


def command() -> str:
    """The command that ran the suite, as typed (the results file's path first, when it was given)."""
    run = shlex.join(["pytest", *sys.argv[1:]])
    given = os.environ.get("CNNLAB_RELIABILITY_RESULTS")
    return f"CNNLAB_RELIABILITY_RESULTS={given} {run}" if given else run


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM: its peak), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak_rss_mb() -> float:
    """Reset this process's peak memory (VmHWM) to what it holds now (Linux: clear_refs 5), and return that."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


LEDGER = Ledger()


def attempt(target: str, case: str, action: Callable[[], Any], check: Callable[[Any], None] | None = None) -> Any:
    """Run ``action``: a CnnlabError of one line is a clean error; any other exception is a
    traceback (recorded, then re-raised so the test fails); a value passes ``check`` (an
    assertion that it is right) and is an answer."""
    LEDGER.begin()
    try:
        value = action()
    except CnnlabError as exc:
        message = str(exc)
        if "\n" in message.strip() or " object at 0x" in message:
            LEDGER.add(target, case, "traceback", f"not one clean line: {message!r}")
            raise AssertionError(f"{target} / {case}: an error of more than one line or with a repr: {message!r}"
                                 ) from None
        LEDGER.add(target, case, "clean error", message)
        return None
    except Exception as exc:
        LEDGER.add(target, case, "traceback", f"{type(exc).__name__}: {exc}")
        raise AssertionError(f"{target} / {case}: a traceback:\n{traceback.format_exc()}") from None
    if check is not None:
        try:
            check(value)
        except AssertionError as exc:
            LEDGER.add(target, case, "wrong answer", str(exc))
            raise
    LEDGER.add(target, case, "answer")
    return value


def attempt_cli(target: str, case: str, capsys, *args: str) -> tuple[int, str]:
    """``cnnlab ARGS`` in this process: exit 0 is an answer (its stdout returned); exit 2 with
    ``error:`` lines only (one per bad input of a batch) and no traceback is a clean error;
    anything else fails."""
    from cnnlab.cli import main

    LEDGER.begin()
    try:
        code = main([str(a) for a in args])
    except Exception as exc:
        LEDGER.add(target, case, "traceback", f"{type(exc).__name__}: {exc}")
        raise AssertionError(f"{target} / {case}: cnnlab {args}: a traceback:\n{traceback.format_exc()}") from None
    out, err = capsys.readouterr()
    if code == 0:
        LEDGER.add(target, case, "answer")
        return code, out
    # A batch command (compare, predict) reports each bad input on a line of its own, then fails.
    lines = err.splitlines()
    clean = code == 2 and lines and all(line.startswith("error: ") for line in lines) and "Traceback" not in err
    LEDGER.add(target, case, "clean error" if clean else "traceback", err.removeprefix("error: "))
    assert clean, f"{target} / {case}: cnnlab {args} exited {code} with:\n{err}"
    return code, out


def record_response(target: str, case: str, status: int, body: bytes, ok: Callable[[int, bytes], bool]) -> None:
    """An API answer: a 5xx fails; a 4xx must be one JSON ``{"error": one line}``; a 2xx must pass ``ok``."""
    if status >= 500:
        LEDGER.add(target, case, "5xx", body.decode("utf-8", "replace"))
        raise AssertionError(f"{target} / {case}: {status}: {body[:300]!r}")
    if status >= 400:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = None
        clean = isinstance(message, str) and "\n" not in message and " object at 0x" not in message
        LEDGER.add(target, case, "clean error" if clean else "traceback", f"{status}: {message or body[:200]!r}")
        assert clean, f"{target} / {case}: {status} without one clean JSON error line: {body[:300]!r}"
        return
    assert ok(status, body), f"{target} / {case}: {status} but not a right answer: {body[:300]!r}"
    LEDGER.add(target, case, "answer")


def fuzz(examples: int) -> settings:
    """Hypothesis' settings for a fuzz test: ``examples`` inputs when every tier runs (CI, make
    test-all), a quarter as many in the quick tier (make test); the same ones on every run
    (derandomized, no example database), so CI is repeatable."""
    return settings(max_examples=examples if EVERY_TIER else max(10, examples // 4), derandomize=True, deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def describe(target: str, what: str) -> None:
    """Say, for the reliability page, what a target's inputs are."""
    LEDGER.targets[target] = what


def write_at_exit() -> None:
    LEDGER.write()
    print(f"\nfuzz suite: {sum(sum(c.values()) for t in LEDGER.counts.values() for c in t.values())} inputs; "
          f"results in {RESULTS}", file=sys.stderr)
