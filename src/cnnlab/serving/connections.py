"""A deadline and a size bound for each request's head (its request line and headers), which uvicorn lacks.

uvicorn closes a connection that stays idle after an answer (``timeout_keep_alive``), but a client
that opens a connection and sends nothing, or sends its headers a byte at a time, is waited for
without end, each such connection held open (slowloris). :class:`HeadDeadlineProtocol` is
a subclass of uvicorn's h11 protocol that gives every request head ``seconds`` to arrive, counted
from the connection's start or the end of the previous answer. A late head gets a JSON 408 and the
connection is closed; a connection that sent nothing is closed without a word.

h11 (under uvicorn) bounds a head only while it is incomplete: one of any size that arrives in a
single read, or whose last piece completes it, was taken whole. :class:`HeadLimitedConnection`
counts the bytes each head took, however it came, and refuses one of more than
:data:`MAX_HEAD_BYTES` with a JSON 431; any request h11 cannot parse gets a JSON 400. The
connection is closed after either.
"""

from __future__ import annotations

import asyncio
import json
import os
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.serving.access import SECURITY_HEADERS

MAX_HEAD_BYTES = 16 * 1024
TOO_LARGE = (f"the request line and headers are over the limit of {MAX_HEAD_BYTES // 1024} KB; send fewer or "
             "shorter headers")
HEAD_SECONDS_ENV = "CNNLAB_HEADER_TIMEOUT"
DEFAULT_HEAD_SECONDS = 10.0
MALFORMED = "the request is not valid HTTP/1.1 (its request line or headers); send a well-formed one"


class HeadLimitedConnection(h11.Connection):
    """h11's server side, refusing a request head of more than :data:`MAX_HEAD_BYTES` however it
    arrived. ``refusal`` is then the (status, message) to answer, as it is for any request that h11
    cannot parse."""

    def __init__(self) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.refusal: tuple[int, str] | None = None

    def next_event(self) -> Any:
        # The bytes a head took are those it left the receive buffer by (h11 keeps no count of them).
        before = len(self._receive_buffer)
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = (431, TOO_LARGE) if exc.error_status_hint == 431 else (400, MALFORMED)
            raise
        if isinstance(event, h11.Request) and before - len(self._receive_buffer) > MAX_HEAD_BYTES:
            self.refusal = (431, TOO_LARGE)
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class JsonRefusalProtocol(H11Protocol):
    """uvicorn's h11 protocol over a :class:`HeadLimitedConnection`, whose refusals are JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = HeadLimitedConnection()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 refused, as JSON with the status that says why."""
        status, message = getattr(self.conn, "refusal", None) or (400, MALFORMED)
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]
        try:
            for event in (h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase),
                          h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # an answer was under way already: nothing more can be said
            pass
        self.transport.close()


class HeadDeadlineProtocol(JsonRefusalProtocol):
    """uvicorn's h11 protocol, with a deadline for each request head and at most
    :data:`MAX_HEAD_BYTES` in it: ``uvicorn.Config(http="cnnlab.serving.connections:HeadDeadlineProtocol")``.
    The deadline is ``$CNNLAB_HEADER_TIMEOUT`` seconds (default 10), read when a connection
    starts, so that worker processes started by uvicorn get it too (:func:`set_head_deadline`)."""

    head_seconds = DEFAULT_HEAD_SECONDS
    head_timer: asyncio.TimerHandle | None = None
    head_started = False  # whether some bytes of the awaited head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.head_seconds = float(os.environ.get(HEAD_SECONDS_ENV, DEFAULT_HEAD_SECONDS))
        super().connection_made(transport)
        self.await_head()

    def data_received(self, data: bytes) -> None:
        self.head_started = self.head_started or self.conn.their_state is h11.IDLE
        awaited = self.cycle
        super().data_received(data)
        if self.cycle is not awaited:  # a head came in: the app has its request
            self.cancel_head_timer()

    def on_response_complete(self) -> None:
        answered = self.cycle
        super().on_response_complete()
        # The next request on this connection, unless a pipelined one has come in already. The
        # rest of a body that was answered without being read is waited for no longer either.
        if not self.transport.is_closing() and self.cycle is answered:
            self.await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_head_timer()
        super().connection_lost(exc)

    def await_head(self) -> None:
        self.cancel_head_timer()
        self.head_started = False
        self.head_timer = self.loop.call_later(self.head_seconds, self.head_too_late)

    def cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_too_late(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.head_started and self.conn.their_state is h11.IDLE:
            message = json.dumps({"error": f"the request's headers did not arrive within {self.head_seconds:g} s "
                                           "(--header-timeout); send them again"}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message))
        self.transport.close()


def set_head_deadline(seconds: float) -> str:
    """Give every request head ``seconds`` to arrive, in this process and the workers it starts;
    returns the protocol's import string for ``uvicorn.Config(http=...)``."""
    os.environ[HEAD_SECONDS_ENV] = repr(float(seconds))
    return "cnnlab.serving.connections:HeadDeadlineProtocol"
