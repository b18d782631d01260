"""The app's answers other than 200: JSON ``{"error": message}`` (cnnlab.serving.serve adds the handler)."""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than 200: the HTTP status and a message that says what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
