"""A deadline for each request's head (its request line and headers), which uvicorn lacks.

uvicorn closes a connection that stays idle after an answer (``timeout_keep_alive``), but a client
that opens a connection and sends nothing, or sends its headers a byte at a time, is waited for
without end, each such connection held open (slowloris). :func:`protocol_with_head_deadline` makes
a subclass of uvicorn's h11 protocol that gives every request head ``seconds`` to arrive, counted
from the connection's start or the end of the previous answer. A late head gets a JSON 408 and the
connection is closed; a connection that sent nothing is closed without a word.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def protocol_with_head_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, with ``seconds`` for each request head (``uvicorn.Config(http=...)``)."""

    class HeadDeadlineProtocol(H11Protocol):
        head_seconds = seconds
        head_timer: asyncio.TimerHandle | None = None
        head_started = False  # whether some bytes of the awaited head have arrived

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
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

    return HeadDeadlineProtocol
