"""Request bodies and the budget that all of them under way share (cnnlab.serving.bodies,
cnnlab.serving.uploads.BodyBudget): each byte is held as it arrives and given back when the
request ends, however it ends; a body the budget has no room for is a 503 that says when to retry."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import ClientDisconnect, Request

from cnnlab.serving.api_error import ApiError
from cnnlab.serving.bodies import Bodies, BodyLimits
from cnnlab.serving.uploads import MAX_BODIES

LIMITS = BodyLimits(megabytes=1, seconds=0.5)


def request(*messages: dict, declared: int | None = None) -> Request:
    """A request whose body arrives as ``messages``; after them the client waits (or has gone)."""
    pending = list(messages)

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}, receive)


def part(data: bytes, more: bool = True) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


async def read(bodies: Bodies, incoming: Request, held_meanwhile: list[int]) -> bytes:
    async with bodies.held(incoming) as body:
        held_meanwhile.append(bodies.budget.held)
        return body


def test_a_body_is_held_in_the_budget_until_its_request_ends():
    bodies, held = Bodies(LIMITS), []
    assert bodies.budget.total == MAX_BODIES * 2**20
    body = asyncio.run(read(bodies, request(part(b"abc"), part(b"de", more=False)), held))
    assert body == b"abcde" and held == [5] and bodies.budget.held == 0


def test_a_body_the_budget_has_no_room_for_is_503_with_retry_after():
    bodies = Bodies(LIMITS)
    assert bodies.budget.take(bodies.budget.total - 4)  # the others' bodies, all but 4 bytes
    with pytest.raises(ApiError) as refused:
        asyncio.run(read(bodies, request(part(b"abc"), part(b"de", more=False)), []))
    error = refused.value
    assert (error.status, error.headers, error.close) == (503, {"retry-after": "5"}, True)
    assert error.message == "the server holds as many uploads as it may at once (16 MB in all); send it again in 5 s"
    assert bodies.budget.held == bodies.budget.total - 4  # what it had taken is given back


@pytest.mark.parametrize(("incoming", "status"), [
    (request(part(b"x" * 1000)), 408),  # then nothing more
    (request(part(b"x" * 700_000), part(b"x" * 400_000, more=False)), 413),  # over 1 MB, undeclared
    (request(part(b"x"), declared=2 * 2**20), 413),  # declared over 1 MB: nothing is read
])
def test_a_body_refused_gives_back_what_it_held(incoming, status):
    bodies = Bodies(LIMITS)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read(bodies, incoming, []))
    assert refused.value.status == status and bodies.budget.held == 0


def test_a_client_that_hangs_up_gives_back_what_it_held():
    bodies = Bodies(LIMITS)
    with pytest.raises(ClientDisconnect):
        asyncio.run(read(bodies, request(part(b"x" * 1000), {"type": "http.disconnect"}), []))
    assert bodies.budget.held == 0
