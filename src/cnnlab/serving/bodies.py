"""Request bodies, read within bounds (:class:`Bodies`): at most ``--max-upload-mb`` megabytes,
arriving within ``--body-timeout`` seconds of the request (408 after, and the connection is
closed), all bodies under way at once holding at most the bytes of cnnlab.serving.uploads'
:class:`~cnnlab.serving.uploads.BodyBudget` (503 past it), JSON nested at most
:data:`cnnlab.files.MAX_JSON_DEPTH` deep (400).

A body is read as soon as its request arrives, waiting on nothing: a client that sends it slowly
holds only the bytes it has sent, and keeps no other request waiting."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnlab.errors import CnnlabError
from cnnlab.files import parse_json
from cnnlab.serving.access import media_type
from cnnlab.serving.api_error import ApiError
from cnnlab.serving.uploads import BodyBudget

MEGABYTE = 1024 * 1024
IMAGE_JSON = '{"image": "<base64 PNG or JPEG>"}'
RETRY_SECONDS = 5  # Retry-After for a body refused while the budget is full


@dataclass(frozen=True)
class BodyLimits:
    """How large a request body may be (``megabytes``, as configured) and how long it may take to
    arrive (``seconds``, from when the app starts reading the body to its last byte)."""

    megabytes: float = 5.0
    seconds: float = 60.0

    @property
    def bytes(self) -> int:
        return int(self.megabytes * MEGABYTE)

    def said(self) -> str:
        """The limit as it was configured: ``5 MB`` for ``--max-upload-mb 5``."""
        return f"{self.megabytes:g} MB (--max-upload-mb)"


class Bodies:
    """Reads request bodies within ``limits``, all of them under way at once within one
    :class:`BodyBudget` (as many bytes as cnnlab.serving.uploads.MAX_BODIES full bodies)."""

    def __init__(self, limits: BodyLimits) -> None:
        self.limits, self.budget = limits, BodyBudget(limits.bytes)

    @asynccontextmanager
    async def held(self, request: Request) -> AsyncIterator[bytes]:
        """The request body, its bytes held in the budget until the ``async with`` ends. Refused
        with 413 as soon as it passes the size limit (declared or not), with 503 when the budget
        has no room for its bytes, and with 408 when it has not all arrived in time."""
        limits, taken = self.limits, 0
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.bytes:
            raise ApiError(413, f"the upload is {int(declared) / MEGABYTE:.1f} MB; the limit is {limits.said()}",
                           close=True)  # its body is not read: nothing more comes from this client
        try:
            chunks = []
            try:
                async with asyncio.timeout(limits.seconds):
                    async for chunk in request.stream():
                        if taken + len(chunk) > limits.bytes:
                            raise ApiError(413, f"the upload is over the limit of {limits.said()}")
                        if not self.budget.take(len(chunk)):
                            raise self.full()
                        taken += len(chunk)
                        chunks.append(chunk)
            except TimeoutError:
                raise ApiError(408, f"the body did not arrive within {limits.seconds:g} s (--body-timeout); send "
                                    "it again on a faster connection", close=True) from None
            body = b"".join(chunks)
            chunks.clear()  # one copy of the bytes, not two, while the request is answered
            yield body
        finally:
            self.budget.give(taken)

    def full(self) -> ApiError:
        megabytes = self.budget.total / MEGABYTE
        return ApiError(503, f"the server holds as many uploads as it may at once ({megabytes:g} MB in all); send "
                             f"it again in {RETRY_SECONDS} s", close=True, headers={"retry-after": str(RETRY_SECONDS)})

    async def json(self, request: Request, expected: str) -> Any:
        """The request body parsed as JSON, bounded in size, time and nesting; 400 names ``expected``."""
        async with self.held(request) as body:
            return json_body(body, expected)


def json_body(body: bytes, expected: str) -> Any:
    """``body`` parsed as JSON, bounded in nesting; a 400 that names ``expected`` when it is not."""
    try:
        return parse_json(body, "the body")
    except CnnlabError as exc:
        raise ApiError(400, f"{exc}; send {expected}") from None


def image_kind(request: Request) -> str:
    """The upload's content type, before anything is read: multipart or JSON, else 415."""
    kind = media_type(request.headers.get("content-type", ""))
    if kind not in ("multipart/form-data", "application/json"):
        raise ApiError(415, f"send the image as multipart/form-data (field 'file') or JSON {{\"image\": base64}}, "
                            f"not {kind or 'a body without a content type'}")
    return kind


async def image_bytes(request: Request, kind: str, body: bytes) -> bytes:
    """The uploaded image's bytes, from a multipart ``file`` field or JSON ``{"image": base64}``."""
    if kind == "multipart/form-data":
        return await multipart_file(request, body)
    return json_image(body)


async def multipart_file(request: Request, body: bytes) -> bytes:
    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body ({exc}); send the image in a field named 'file'") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "the multipart body has no file field named 'file'")
        return await upload.read()
    finally:
        await form.close()  # the parser may have spooled a large part to a temporary file


def json_image(body: bytes) -> bytes:
    payload = json_body(body, IMAGE_JSON)
    encoded = payload.get("image") if isinstance(payload, dict) else None
    if not isinstance(encoded, str):
        raise ApiError(400, f'the JSON has no "image" string; send {IMAGE_JSON}')
    if encoded.startswith("data:"):
        _, comma, encoded = encoded.partition(",")
        if not comma:
            raise ApiError(400, f'"image" is a data: URL without its data (nothing after a comma); send {IMAGE_JSON}')
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, '"image" is not valid base64') from None
