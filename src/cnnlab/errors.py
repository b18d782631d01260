"""The one exception type users see.

Every error a person can fix (a bad option, a missing file, a corrupt download) is raised as
:class:`CnnlabError` with a message that says what was wrong and what to do. The CLI prints
that message on one line and exits non-zero; library callers can catch it like any exception.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """A problem with the user's input or environment, with a message that says the fix."""

    exit_code = 2


def require(condition: bool, message: str) -> None:
    """Raise :class:`CnnlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CnnlabError(message)


def first_line(exc: BaseException, most: int = 200) -> str:
    """The first line of ``exc``'s message (at most ``most`` characters) for a one-line error, or
    its type's name when it says nothing (``EOFError()``)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:most] if lines else type(exc).__name__
