"""Figures measured against targets, printed as they come and written as a results file
(``--results FILE``) that the docs render as a table (docs/hooks.py, ``<!-- targets: FILE -->``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnlab.bench import results_file
from cnnlab.files import atomic_write_bytes


class Targets:
    """Collects ``(what, measured, target, met)`` rows."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def check(self, what: str, measured: str, target: str, met: bool) -> bool:
        """Print one figure with its target and whether it is met, and keep it."""
        print(f"{what}: {measured}  (target {target}: {'met' if met else 'NOT MET'})", flush=True)
        self.rows.append({"what": what, "measured": measured, "target": target, "met": met})
        return met

    def note(self, what: str, measured: str) -> None:
        """Print and keep a figure that has no target of its own (where the time goes)."""
        print(f"    {what}: {measured}", flush=True)
        self.rows.append({"what": what, "measured": measured, "target": None, "met": None})

    def finish(self, results: str | None) -> None:
        """Print how many targets were met; write the results file if asked."""
        checked = [row for row in self.rows if row["target"] is not None]
        met = sum(row["met"] for row in checked)
        missed = len(checked) - met
        print(f"{met} of {len(checked)} targets met" + (f"; {missed} NOT MET" if missed else ""))
        if results:
            command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
            data = results_file(command, self.rows, dataset="mnist")
            atomic_write_bytes(results, (json.dumps(data, indent=2) + "\n").encode())
