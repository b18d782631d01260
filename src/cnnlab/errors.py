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
