"""Request bodies, read within bounds: at most ``--max-upload-mb`` megabytes, arriving within
``--body-timeout`` seconds (408 after, and the connection is closed), JSON nested at most
:data:`cnnlab.files.MAX_JSON_DEPTH` deep (400)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnlab.errors import CnnlabError
from cnnlab.files import parse_json
from cnnlab.serving.api_error import ApiError

MEGABYTE = 1024 * 1024
IMAGE_JSON = '{"image": "<base64 PNG or JPEG>"}'


@dataclass(frozen=True)
class BodyLimits:
    """How large a request body may be (``megabytes``, as configured) and how long it may take to
    arrive (``seconds``, from the first byte the handler asks for to the last)."""

    megabytes: float = 5.0
    seconds: float = 60.0

    @property
    def bytes(self) -> int:
        return int(self.megabytes * MEGABYTE)

    def said(self) -> str:
        """The limit as it was configured: ``5 MB`` for ``--max-upload-mb 5``."""
        return f"{self.megabytes:g} MB (--max-upload-mb)"


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The request body, refused with 413 as soon as it passes the size limit (declared or not),
    and with 408 when it has not all arrived in time."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.bytes:
        raise ApiError(413, f"the upload is {int(declared) / MEGABYTE:.1f} MB; the limit is {limits.said()}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.bytes:
                    raise ApiError(413, f"the upload is over the limit of {limits.said()}")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the body did not arrive within {limits.seconds:g} s (--body-timeout); send it "
                            "again on a faster connection", close=True) from None
    return b"".join(chunks)


async def read_json_body(request: Request, limits: BodyLimits, expected: str) -> Any:
    """The request body parsed as JSON, bounded in size, time and nesting; 400 names ``expected``."""
    body = await read_body(request, limits)
    try:
        return parse_json(body, "the body")
    except CnnlabError as exc:
        raise ApiError(400, f"{exc}; send {expected}") from None


async def image_bytes(request: Request, limits: BodyLimits) -> bytes:
    """The uploaded image's bytes, from a multipart ``file`` field or JSON ``{"image": base64}``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise ApiError(415, f"send the image as multipart/form-data (field 'file') or JSON {{\"image\": base64}}, "
                            f"not {kind or 'a body without a content type'}")
    body = await read_body(request, limits)
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
    try:
        payload = parse_json(body, "the body")
    except CnnlabError as exc:
        raise ApiError(400, f"{exc}; send {IMAGE_JSON}") from None
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
