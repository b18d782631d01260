"""The app's answers other than 200: JSON ``{"error": message}`` with the status that says whose
fault it is (:func:`add_error_handlers`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from cnnlab.data.images import ImageTooLargeError, UnreadableImageError
from cnnlab.errors import CnnlabError


class ApiError(Exception):
    """An answer other than 200: the HTTP status and a message that says what to send instead.
    ``close`` ends the connection after the answer (a body that did not arrive in time may still
    be on its way; nothing more is read from that client); ``headers`` go with it (``Retry-After``)."""

    def __init__(self, status: int, message: str, close: bool = False, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.close, self.headers = status, message, close, headers or {}


def reply(status: int, message: str, close: bool = False, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={**(headers or {}), **({"connection": "close"} if close else {})})


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": message}``: an :class:`ApiError` with its status, an image
    that cannot be read 415, one with too many pixels 413, any other :class:`CnnlabError` 422.
    A client that hung up mid-body is let go without a word; any other exception is a bug: a JSON
    500, and its traceback in the log."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.message, exc.close, exc.headers)

    @app.exception_handler(CnnlabError)
    async def unreadable(_request: Request, exc: CnnlabError) -> JSONResponse:
        status = 415 if isinstance(exc, UnreadableImageError) else 413 if isinstance(exc, ImageTooLargeError) else 422
        return reply(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return reply(400, f"bad request parameters: {where(exc.errors())}")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return reply(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette still raises it after this answer, so uvicorn logs its traceback for the bug report.
        return reply(500, f"the server failed on this request ({type(exc).__name__}): a bug in cnnlab, its log has "
                          "the details; please report it", close=True)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect) -> Response:
        # The client hung up before its body had all arrived: no one is left to answer (uvicorn
        # drops this), and it is no fault of the server's to log.
        return Response(status_code=400, headers={"connection": "close"})


def where(errors: list[dict]) -> str:
    """pydantic's validation errors as ``place: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
