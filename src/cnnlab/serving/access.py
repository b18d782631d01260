"""Who may do what on the server, checked before any route runs (:class:`AccessMiddleware`).

- Every request must name the server in its ``Host`` header: a loopback name or address, the
  address it listens on, an ``--allowed-host``, or (on a server bound beyond loopback) any IP
  address. A web page on another site whose name was made to point at 127.0.0.1 (DNS rebinding)
  sends its own name, and is refused with 403.
- Predictions are open: ``GET``, ``HEAD`` and ``OPTIONS`` requests change nothing, nor do the
  routes under :data:`OPEN_POSTS`, which only read the image they are sent.
- Every other request changes the server's state (``POST /api/train``, ``POST /api/train/stop``,
  and any route added later, which is guarded unless it is added to :data:`OPEN_POSTS`). It must
  come from the server's own page or a program, not from another site (``Origin``,
  ``Sec-Fetch-Site``: 403), carry the token (``Authorization: Bearer TOKEN``: 401 without it,
  403 with another) and send JSON (415 otherwise: the form bodies a browser sends to another
  site without asking first are refused).

The token is made when the server starts (or given with ``--token`` or ``$CNNLAB_TOKEN``) and
printed in the page's URL, as Jupyter does; the page keeps it and sends it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "CNNLAB_TOKEN"
MIN_TOKEN_LENGTH = 16  # a shorter token could be guessed by a program that tries many
OPEN_POSTS = frozenset({"/api/predict", "/api/explain"})  # they read the image sent and change nothing
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # listening on every address of the machine
JSON_TYPES = frozenset({"application/json"})


def make_token() -> str:
    """A new random token: 32 bytes from the system's secure source, URL-safe."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").rstrip(".").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port and IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class Access:
    """What the middleware checks against.

    Attributes:
        token: the token that state-changing requests must carry.
        bound_host: the address the server listens on (its name is accepted in ``Host``).
        allowed_hosts: more names accepted in ``Host`` (``--allowed-host``).
        page_url: the page's address without the token, named in the refusals.
    """

    token: str
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    page_url: str = "http://127.0.0.1:8000/"

    @property
    def exposed(self) -> bool:
        """Whether the server listens beyond this machine."""
        return not is_loopback(self.bound_host)

    def host_allowed(self, header: str) -> bool:
        name = host_name(header)
        if name in {self.bound_host.strip("[]").lower(), *(h.lower() for h in self.allowed_hosts)}:
            return True
        if name.rstrip(".") in LOOPBACK_NAMES:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        # An address, unlike a name, cannot be pointed elsewhere by another site's DNS: on a server
        # that listens beyond loopback, any of its addresses may be typed into the browser.
        return address.is_loopback or self.exposed

    def token_matches(self, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


class AccessMiddleware:
    """The checks of this module's docstring, as ASGI middleware, answering JSON ``{"error": ...}``."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                status, message, headers = refusal
                await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """Why the request is refused (status, message, headers), or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.access.host_allowed(host):
            return 403, (f"Host '{host}' is not a name this server answers to (a guard against DNS rebinding): "
                         f"open {self.access.page_url}, or start the server with --allowed-host "
                         f"{host_name(host) or 'NAME'}"), {}
        if scope.get("method", "GET") in SAFE_METHODS or scope["path"] in OPEN_POSTS:
            return None
        return self.owner_refusal(headers, host)

    def owner_refusal(self, headers: dict[str, str], host: str) -> tuple[int, str, dict[str, str]] | None:
        """Why a state-changing request is refused: another site, no or a wrong token, not JSON."""
        own_page = f"cannot change this server; use the page at {self.access.page_url} or a program of your own"
        origin, site = headers.get("origin"), headers.get("sec-fetch-site", "same-origin").lower()
        if origin is not None and not same_origin(origin, host):
            return 403, f"a request from another site ({origin}) {own_page}", {}
        if site not in ("same-origin", "none"):  # cross-site, or same-site: another port or subdomain
            return 403, f"a request from another site (Sec-Fetch-Site: {site}) {own_page}", {}
        authorization = headers.get("authorization")
        how = (f"open the URL that cnnlab serve printed ({self.access.page_url}?token=...), or send the header "
               "'Authorization: Bearer TOKEN' with the token it printed, or the one given by --token or $"
               + TOKEN_ENV)
        if authorization is None:
            return 401, f"this request changes the server and needs its token: {how}", {"www-authenticate": "Bearer"}
        if not self.access.token_matches(authorization):
            return 403, f"wrong token: {how}", {}
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in JSON_TYPES:
            return 415, ("requests that change the server take a JSON body: send 'Content-Type: application/json' "
                         f"and JSON (e.g. {{}}), not {kind or 'a body without a content type'}"), {}
        return None


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the site that ``host`` (the request's ``Host``) is."""
    parts = urlsplit(origin.strip().lower())
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host.strip().lower()
